// Issue 12's pods through containerd's CRI (harness/cri.ts), each through the `runc` handler
// (the baseline: it proves the harness and the test) and the `kata` handler (moat, with the
// seeds' snippet): a two-container pod whose containers share the pod's network and hostname,
// in ONE VM, with a host directory that is one directory for both and follows a host-side
// atomic rename, whose IP answers from the host and whose interface has the network's MTU;
// a pod sized by its limits; a container over its memory limit OOMKilled while its neighbour
// runs on. Nothing is left after each.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { get } from "node:http";
import { join } from "node:path";
import { test } from "node:test";
import { criNodeForTestFile, eventually, POD_MTU, POD_VM_BASE } from "./harness/cri.js";

const node = criNodeForTestFile();
const MiB = 1024n * 1024n;
const HANDLERS = ["runc", "kata"];
/** The pod's published port on the host's loopback (CNI's portmap), one per handler, apart from other test files'. */
const HOST_PORTS: Record<string, number> = { runc: 21000 + (process.pid % 4000), kata: 25000 + (process.pid % 4000) };

/** GET http://ADDRESS:PORT/ from the host; the body, or the error's message. */
function httpGet(address: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const request = get({ host: address, port, path: "/", timeout: 10_000 }, (response) => {
      let body = "";
      response.on("data", (chunk: Buffer) => (body += chunk.toString()));
      response.on("end", () => resolve(body));
    });
    request.on("timeout", () => request.destroy(new Error("timed out")));
    request.on("error", (error) => resolve(`error: ${error.message}`));
  });
}

for (const handler of HANDLERS) {
  test(`a two-container pod through ${handler}: localhost between them, one hostname, one VM, one shared directory that follows a host-side rename, the pod IP and its hostPort from the host, the network's MTU`, async () => {
    const hostPort = HOST_PORTS[handler] ?? 0;
    const shared = join(node.workspace.dir, `shared-${handler}`);
    // kubelet's layout for a ConfigMap volume: files are links through ..data, a link to a
    // timestamped directory, and an update swaps ..data by renaming a new link over it.
    mkdirSync(join(shared, "..v1"), { recursive: true });
    writeFileSync(join(shared, "..v1", "key"), "first\n");
    symlinkSync("..v1", join(shared, "..data"));
    symlinkSync("..data/key", join(shared, "key"));
    const pod = await node.runPod(handler, { name: `two-${handler}`, hostname: `two-${handler}-host`, portMappings: [{ containerPort: 8080, hostPort }] });
    try {
      const mounts = [{ containerPath: "/shared", hostPath: shared }];
      const server = await node.startContainer(pod, {
        name: "server",
        command: ["sh", "-c", "mkdir -p /www && echo served-by-server > /www/index.html && exec httpd -f -p 8080 -h /www"],
        mounts,
      });
      const client = await node.startContainer(pod, { name: "client", command: ["sleep", "3600"], mounts });

      const fetched = await eventually(
        () => node.exec(client, ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]),
        (result) => result.exitCode === 0,
      );
      assert.equal(fetched.stdout, "served-by-server\n", `the client reaches the server on localhost: ${fetched.stderr}`);

      for (const id of [server, client]) {
        const hostname = await node.exec(id, ["hostname"]);
        assert.equal(hostname.stdout.trim(), `two-${handler}-host`, "the pod's hostname");
      }
      assert.equal(node.workspace.qemuProcesses().length, handler === "runc" ? 0 : 1, `one VM for the whole pod:\n${node.workspace.qemuProcesses().join("\n")}`);

      const written = await node.exec(server, ["sh", "-c", "echo from-server > /shared/from-server"]);
      assert.equal(written.exitCode, 0, written.stderr);
      const read = await node.exec(client, ["cat", "/shared/from-server"]);
      assert.equal(read.stdout, "from-server\n", `the client sees the server's file: ${read.stderr}`);
      // The host sees it too, once the guest has written it back (9p's cache in the guest holds
      // a closed file's data until its flusher writes it, within about 1.5 s: docs/storage.md,
      // "Write-back to the host"; runc's bind mount shows it at once).
      const onHost = await eventually(
        async () => readFileSync(join(shared, "from-server"), "utf8"),
        (text) => text === "from-server\n",
      );
      assert.equal(onHost, "from-server\n", "and so does the host");

      assert.equal((await node.exec(client, ["cat", "/shared/key"])).stdout, "first\n");
      mkdirSync(join(shared, "..v2"));
      writeFileSync(join(shared, "..v2", "key"), "second\n");
      symlinkSync("..v2", join(shared, "..data_tmp"));
      renameSync(join(shared, "..data_tmp"), join(shared, "..data"));
      const updated = await eventually(
        () => node.exec(client, ["cat", "/shared/key"]),
        (result) => result.stdout === "second\n",
      );
      assert.equal(updated.stdout, "second\n", "the host's atomic rename of ..data shows in the container");

      const podIp = await node.podIp(pod.id);
      assert.match(podIp, new RegExp(`^${node.subnet.replaceAll(".", "\\.")}\\.\\d+$`), "an address on the test network");
      assert.equal(await httpGet(podIp, 8080), "served-by-server\n", "the pod IP answers from the host");
      assert.equal(await httpGet("127.0.0.1", hostPort), "served-by-server\n", "the pod's hostPort answers on the host's loopback (CNI's portmap)");

      const mtu = await node.exec(client, ["cat", "/sys/class/net/eth0/mtu"]);
      assert.equal(mtu.stdout.trim(), String(POD_MTU), `the pod's interface has the network's MTU: ${mtu.stderr}`);
    } finally {
      await node.removePod(pod.id);
    }
    await node.assertNothingLeft([hostPort]);
  });

  test(`a pod through ${handler} sized by its limits; a container over its memory limit is OOMKilled while its neighbour runs on`, async () => {
    const pod = await node.runPod(handler, {
      name: `sized-${handler}`,
      resources: { cpuQuota: 100_000n, cpuPeriod: 100_000n, cpuShares: 1024n, memoryBytes: 256n * MiB },
    });
    try {
      const neighbour = await node.startContainer(pod, { name: "neighbour", command: ["sleep", "3600"], resources: { memoryBytes: 64n * MiB } });
      if (handler === "kata") {
        // The VM: moat's base plus the pod's limits (Kata's static sizing).
        const nproc = await node.exec(neighbour, ["nproc"]);
        assert.equal(nproc.stdout.trim(), String(POD_VM_BASE.vcpus + 1), "vCPUs: default_vcpus + ceil(quota / period)");
        const meminfo = await node.exec(neighbour, ["grep", "MemTotal", "/proc/meminfo"]);
        const totalKiB = Number(/MemTotal:\s+(\d+) kB/.exec(meminfo.stdout)?.[1] ?? 0);
        // The guest kernel keeps some of the VM's memory for itself: MemTotal is below the VM's
        // size, but above the base alone, which only a sized VM reaches.
        assert.ok(totalKiB > POD_VM_BASE.memoryMiB * 1024 && totalKiB <= (POD_VM_BASE.memoryMiB + 256) * 1024, `MemTotal ${totalKiB} kB for a VM of ${POD_VM_BASE.memoryMiB} + 256 MiB`);
      }
      // `tail` keeps the last line of its input, and /dev/zero has no line end: it grows until killed.
      const hog = await node.startContainer(pod, { name: "hog", command: ["tail", "/dev/zero"], resources: { memoryBytes: 32n * MiB } });
      const status = await node.waitExited(hog);
      assert.equal(status.state, 2, "the hog exited");
      assert.equal(status.reason, "OOMKilled", `ContainerStatus: exit ${status.exitCode}, reason ${status.reason}, ${status.message}`);
      assert.equal(status.exitCode, 137, "killed by SIGKILL");
      const { status: neighbourStatus } = await node.cri.runtime.containerStatus({ containerId: neighbour });
      assert.equal(neighbourStatus?.state, 1, "the neighbour runs on");
      const alive = await node.exec(neighbour, ["echo", "alive"]);
      assert.equal(alive.stdout, "alive\n");
    } finally {
      await node.removePod(pod.id);
    }
    await node.assertNothingLeft();
  });
}
