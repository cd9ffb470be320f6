// Issue 12: Kubernetes pods through containerd's CRI, driven as kubelet drives them
// (harness/cri.ts): the seeds' pod through the `kata` handler with the seeds' snippet, and
// the same pod through `runc`, the baseline that proves the harness and shows the difference
// (the guest's kernel, not the host's). Every test leaves nothing: no pod or container in CRI,
// netns, veth, held address, port rule, mount, cgroup, QEMU or moat state.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { release } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { criNodeForTestFile } from "./harness/cri.js";

const node = criNodeForTestFile();
const MiB = 1024n * 1024n;

/** Waits until the file exists and matches `pattern`; returns its text. */
async function waitForText(path: string, pattern: RegExp): Promise<string> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    let text = "";
    try {
      text = readFileSync(path, "utf8");
    } catch {
      // Not written yet.
    }
    if (pattern.test(text) || Date.now() > deadline) return text;
    await sleep(200);
  }
}

test("CRI answers: containerd's CRI plugin serves runtime.v1 and lists the images the suite imported", async () => {
  const version = await node.cri.runtime.version({ version: "v1" });
  assert.equal(version.runtimeName, "containerd");
  const images = await node.cri.image.listImages({});
  const tags = images.images.flatMap((image) => image.repoTags);
  assert.ok(tags.includes("docker.io/library/busybox:latest"), `busybox imported: ${tags.join(", ")}`);
  assert.ok(tags.includes("127.0.0.1:1/moat-test/pause:1"), `pause imported: ${tags.join(", ")}`);
});

for (const handler of ["runc", "kata"]) {
  test(`the seeds' pod through the ${handler} handler: its log holds "Hello from Kata", ExecSync, stats, stop and remove`, async () => {
    const pod = await node.runPod(handler, {
      name: `secure-pod-${handler}`,
      resources: { cpuQuota: 100_000n, cpuPeriod: 100_000n, cpuShares: 1024n, memoryBytes: 256n * MiB },
    });
    try {
      // containerd put the pod's size on the sandbox container as annotations, for the runtime.
      const info = await node.containerd.ctrIn("k8s.io", ["containers", "info", pod.id]);
      assert.equal(info.code, 0, info.stderr);
      const annotations = (JSON.parse(info.stdout) as { Spec: { annotations: Record<string, string> } }).Spec.annotations; // ctr prints the container record as JSON
      assert.equal(annotations["io.kubernetes.cri.container-type"], "sandbox");
      assert.equal(annotations["io.kubernetes.cri.sandbox-memory"], String(256n * MiB));
      assert.equal(annotations["io.kubernetes.cri.sandbox-cpu-quota"], "100000");

      const id = await node.startContainer(pod, { name: "sandboxed-app", command: ["sh", "-c", "echo Hello from Kata && sleep 3600"] });
      const log = await waitForText(join(pod.config.logDirectory, "sandboxed-app.log"), /Hello from Kata/);
      // CRI's log format: RFC 3339 time, stream, F(ull) or P(artial), the line.
      assert.match(log, /^\d{4}-\d\d-\d\dT\S+ stdout F Hello from Kata$/m, `the CRI log:\n${log}`);

      const uname = await node.exec(id, ["uname", "-r"]);
      assert.equal(uname.exitCode, 0, uname.stderr);
      if (handler === "runc") assert.equal(uname.stdout.trim(), release(), "runc: the host's kernel");
      else assert.match(uname.stdout, /-moat\n$/, "kata: the guest's kernel, moat's");
      assert.equal(node.workspace.qemuProcesses().length, handler === "runc" ? 0 : 1, "one VM for a kata pod, none for runc");

      const { stats } = await node.cri.runtime.containerStats({ containerId: id });
      assert.equal(stats?.attributes?.id, id);
      assert.ok((stats?.cpu?.usageCoreNanoSeconds?.value ?? 0n) > 0n, `CPU time counted: ${JSON.stringify(stats?.cpu, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))}`);
      assert.ok((stats?.memory?.workingSetBytes?.value ?? 0n) > 0n, "memory counted");

      const { status } = await node.cri.runtime.containerStatus({ containerId: id });
      assert.equal(status?.state, 1, "CONTAINER_RUNNING");
    } finally {
      await node.removePod(pod.id);
    }
    await node.assertNothingLeft();
  });
}
