// Issue 12 item 3's memory volumes through containerd's CRI (harness/cri.ts), through the
// `runc` handler (the baseline: it proves the test) and the `kata` handler (moat): a pod with
// an emptyDir of `medium: Memory` (a tmpfs the test mounts where kubelet would, with the size
// kubelet would give it) mounted in two containers, one writing and the other reading; the
// pod's /dev/shm (containerd's tmpfs for the sandbox) shared by both; a container's
// terminationMessagePath, a host file, holding what the container wrote once it has exited.
// Through moat the two tmpfs are tmpfs in the guest of the host's size, and the host
// directories stay empty (docs/storage.md, "Memory volumes"). Nothing is left after each.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { criNodeForTestFile, eventually, POD_VM_BASE } from "./harness/cri.js";

const node = criNodeForTestFile();
const HANDLERS = ["runc", "kata"];
/** The emptyDir's size: what kubelet gives a memory emptyDir's tmpfs (its sizeLimit, here). */
const EMPTY_DIR_KIB = 16 * 1024;

/** The size of the file system at `path` in KiB, from `df -P -k` run in a container (one line per file system: Filesystem, 1024-blocks, …; without -P busybox puts a long name on a line of its own). */
async function containerDfKiB(containerId: string, path: string): Promise<number> {
  const df = await node.exec(containerId, ["df", "-P", "-k", path]);
  assert.equal(df.exitCode, 0, `df -P -k ${path}: ${df.stderr}`);
  const fields = df.stdout.trim().split("\n").at(-1)?.trim().split(/\s+/) ?? [];
  return Number(fields[1]);
}

/** The file system type of the mount at `path` in a container, from its /proc/mounts (the last mount there is the one seen). */
async function containerFsType(containerId: string, path: string): Promise<string> {
  const mounts = await node.exec(containerId, ["cat", "/proc/mounts"]);
  const line = mounts.stdout.split("\n").filter((entry) => entry.split(" ")[1] === path).at(-1) ?? "";
  return line.split(" ")[2] ?? `no mount at ${path}:\n${mounts.stdout}`;
}

for (const handler of HANDLERS) {
  test(`a pod through ${handler}: a memory emptyDir shared by two containers and the pod's /dev/shm are tmpfs of their host size; the termination log reaches the host`, async () => {
    const uid = `volumes-${handler}-${node.suffix}`;
    // The harness's configuration, with a longer wait for a cold guest's agent: on the shared
    // machine, under other suites' VMs, it took more than the default 30 s to start (twice). A
    // deadline for failing, not a measurement; moatd reads it when the first kata pod starts it.
    node.containerd.useMoatConfig(`[hypervisor.qemu]\ndefault_vcpus = ${POD_VM_BASE.vcpus}\ndefault_memory = ${POD_VM_BASE.memoryMiB}\n[agent.moat]\ndial_timeout = 90\n`);
    // kubelet's layout: <pods dir>/<uid>/volumes/kubernetes.io~empty-dir/<volume>, a tmpfs
    // for `medium: Memory` with size= its limit, mode 0777; the termination log a file of
    // mode 0666 under <uid>/containers/<container>/.
    const podDir = join(node.workspace.dir, "kubelet", "pods", uid);
    const emptyDir = join(podDir, "volumes", "kubernetes.io~empty-dir", "cache");
    mkdirSync(emptyDir, { recursive: true });
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${EMPTY_DIR_KIB}k`, "tmpfs", emptyDir]);
    chmodSync(emptyDir, 0o777);
    const terminationLog = join(podDir, "containers", "finisher", "termination-log");
    mkdirSync(join(podDir, "containers", "finisher"), { recursive: true });
    writeFileSync(terminationLog, "");
    chmodSync(terminationLog, 0o666);
    try {
      const pod = await node.runPod(handler, { name: `volumes-${handler}` });
      try {
        const cache = [{ containerPath: "/cache", hostPath: emptyDir }];
        const writer = await node.startContainer(pod, { name: "writer", command: ["sh", "-c", "echo from-writer > /cache/note && echo in-shm > /dev/shm/segment && exec sleep 3600"], mounts: cache });
        const reader = await node.startContainer(pod, { name: "reader", command: ["sleep", "3600"], mounts: cache });

        const note = await eventually(
          () => node.exec(reader, ["cat", "/cache/note"]),
          (result) => result.exitCode === 0,
        );
        assert.equal(note.stdout, "from-writer\n", `the reader sees the writer's file in the emptyDir: ${note.stderr}`);
        const segment = await node.exec(reader, ["cat", "/dev/shm/segment"]);
        assert.equal(segment.stdout, "in-shm\n", `the reader sees the writer's file in the pod's /dev/shm: ${segment.stderr}`);

        // containerd 1.6 mounts the sandbox's shm (a tmpfs of its default size) in its state
        // directory and binds it to every container of the pod at /dev/shm.
        const hostShm = join(node.containerd.dir, "state", "io.containerd.grpc.v1.cri", "sandboxes", pod.id, "shm");
        assert.ok(existsSync(hostShm), `containerd's shm for the pod at ${hostShm}`);
        const hostShmStat = statfsSync(hostShm);
        const shmKiB = (hostShmStat.blocks * hostShmStat.bsize) / 1024;
        for (const id of [writer, reader]) {
          assert.equal(await containerFsType(id, "/cache"), "tmpfs", "the emptyDir is a tmpfs in the container");
          assert.equal(await containerDfKiB(id, "/cache"), EMPTY_DIR_KIB, "of the size kubelet gave it");
          assert.equal(await containerFsType(id, "/dev/shm"), "tmpfs", "/dev/shm is a tmpfs in the container");
          assert.equal(await containerDfKiB(id, "/dev/shm"), shmKiB, "of the size containerd gave the pod's");
        }
        if (handler === "kata") {
          // The tmpfs are the guest's: what the containers write stays in the VM's memory.
          assert.deepEqual(readdirSync(emptyDir), [], "the host's emptyDir stays empty");
          assert.deepEqual(readdirSync(hostShm), [], "the host's shm for the pod stays empty");
        } else {
          assert.deepEqual(readdirSync(emptyDir), ["note"], "runc binds the host's tmpfs itself");
        }

        const finisher = await node.startContainer(pod, {
          name: "finisher",
          command: ["sh", "-c", "echo finished-with-a-message > /dev/termination-log; exit 3"],
          mounts: [{ containerPath: "/dev/termination-log", hostPath: terminationLog }],
        });
        const status = await node.waitExited(finisher);
        assert.equal(status.exitCode, 3, `the finisher exited with its status: ${status.reason} ${status.message}`);
        // kubelet reads the file when it sees the container exited: it must hold the message then.
        assert.equal(readFileSync(terminationLog, "utf8"), "finished-with-a-message\n", "the termination log reached the host file by the container's exit");
      } finally {
        await node.removePod(pod.id);
      }
    } finally {
      execFileSync("umount", [emptyDir]);
      rmSync(podDir, { recursive: true, force: true });
    }
    await node.assertNothingLeft();
  });
}
