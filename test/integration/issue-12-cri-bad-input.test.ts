// Issue 12's bad input through containerd's CRI (harness/cri.ts): a sandbox id that does not
// exist, a container for a pod whose VM is gone, a volume source gone from the host before
// the container starts, a pause image that is missing, an annotation outside the allow-list,
// a pod larger than the host: each is a CRI error naming what is wrong, and nothing is left
// (no pod or container in CRI, netns, veth, address, rule, mount, cgroup, QEMU, moat state).
// A netns path that does not exist cannot be given through CRI (containerd makes the pod's
// namespace itself): moat's side of it is issue 11's (issue-11-cni, network-netns).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { buildPauseArchive, CRI_NAMESPACE, criFailure, criNodeForTestFile, PAUSE_IMAGE } from "./harness/cri.js";

const node = criNodeForTestFile();
const TiB = 1024n ** 4n;

test("a sandbox id that does not exist: PodSandboxStatus is NOT_FOUND, CreateContainer names it", async () => {
  const status = await criFailure(node.cri.runtime.podSandboxStatus({ podSandboxId: "no-such-pod" }));
  assert.equal(status.code, "NOT_FOUND", status.message); // containerd's own message does not name the id
  const pod = await node.runPod("runc", { name: "for-config" });
  try {
    const created = await criFailure(node.cri.runtime.createContainer({ podSandboxId: "no-such-pod", config: node.containerConfig({ name: "orphan", command: ["true"] }), sandboxConfig: pod.config }));
    assert.match(created.details, /no-such-pod/, created.message);
  } finally {
    await node.removePod(pod.id);
  }
  await node.assertNothingLeft();
});

test("a container for a pod whose VM is gone: StartContainer fails naming the pod, and removing the pod leaves nothing", async () => {
  const pod = await node.runPod("kata", { name: "vm-gone" });
  try {
    const qemu = node.workspace.qemuProcesses();
    assert.equal(qemu.length, 1, `the pod's VM:\n${qemu.join("\n")}`);
    process.kill(Number(qemu[0]!.split(" ")[0]), "SIGKILL"); // one QEMU, asserted on the line above
    const { containerId } = await node.cri.runtime.createContainer({ podSandboxId: pod.id, config: node.containerConfig({ name: "late", command: ["sleep", "3600"] }), sandboxConfig: pod.config });
    const started = await criFailure(node.cri.runtime.startContainer({ containerId }));
    assert.match(started.details, new RegExp(`${pod.id}|pod|sandbox`, "i"), started.message);
    assert.equal(node.workspace.qemuProcesses().length, 0, "no VM made for the container on its own");
  } finally {
    await node.removePod(pod.id);
  }
  await node.assertNothingLeft();
});

for (const handler of ["runc", "kata"]) {
  test(`a volume source gone from the host before StartContainer (${handler}): the error names it`, async () => {
    const source = join(node.workspace.dir, `volume-${handler}`);
    mkdirSync(source);
    const pod = await node.runPod(handler, { name: `volume-${handler}` });
    try {
      const { containerId } = await node.cri.runtime.createContainer({
        podSandboxId: pod.id,
        config: node.containerConfig({ name: "reader", command: ["ls", "/data"], mounts: [{ containerPath: "/data", hostPath: source }] }),
        sandboxConfig: pod.config,
      });
      rmdirSync(source);
      const started = await criFailure(node.cri.runtime.startContainer({ containerId }));
      assert.match(started.details, new RegExp(source), started.message);
    } finally {
      await node.removePod(pod.id);
    }
    await node.assertNothingLeft();
  });
}

test("a pause image that is missing: RunPodSandbox names it (its pull is refused on 127.0.0.1:1), and nothing is left", async () => {
  const removed = await node.containerd.ctrIn(CRI_NAMESPACE, ["images", "rm", "--sync", PAUSE_IMAGE]);
  assert.equal(removed.code, 0, removed.stderr);
  try {
    const failed = await criFailure(node.runPod("kata", { name: "no-pause" }));
    assert.match(failed.details, /127\.0\.0\.1:1\/moat-test\/pause:1/, failed.message);
    await node.assertNothingLeft();
  } finally {
    const imported = await node.containerd.ctrIn(CRI_NAMESPACE, ["images", "import", buildPauseArchive(join(node.workspace.dir, "pause-again"))]);
    assert.equal(imported.code, 0, imported.stderr);
  }
});

test("an annotation outside the allow-list (moat handler, which passes io.katacontainers.* on): RunPodSandbox names it and the rule", async () => {
  const annotation = "io.katacontainers.config.hypervisor.kernel_params";
  const failed = await criFailure(node.runPod("moat", { name: "bad-annotation", annotations: { [annotation]: "init=/bin/sh" } }));
  assert.match(failed.details, new RegExp(annotation.replaceAll(".", "\\.")), failed.message);
  assert.match(failed.details, /enable_annotations|allow/i, "the rule that refused it");
  await node.assertNothingLeft();
});

test("a pod larger than the host (kata handler): RunPodSandbox says so, and nothing is left", async () => {
  const failed = await criFailure(node.runPod("kata", { name: "too-big", resources: { memoryBytes: 4n * TiB } }));
  assert.match(failed.details, /memory/i, failed.message);
  await node.assertNothingLeft();
  const freeMiB = Number(execFileSync("awk", ["/MemTotal/ { print int($2 / 1024) }", "/proc/meminfo"], { encoding: "utf8" }).trim());
  assert.ok(4 * 1024 * 1024 > freeMiB, "the pod asked for more than the host has");
});
