// Issue 10, item 9: a sandbox's VM is sized for its container's resources, as Kata sizes
// them (default + ceil(quota/period) vCPUs, default + limit memory, up to default_maxvcpus and
// default_maxmemory), through podman and through containerd; a limit over the ceiling is
// refused, saying which limit and why, with nothing left behind.
import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { test } from "node:test";
import { BUSYBOX_IMAGE } from "./harness/oci-image.js";
import { containerdForTestFile } from "./harness/containerd.js";
import { podmanForTestFile } from "./harness/podman.js";

const { podman, runtimeWith, workspace: podmanWorkspace } = podmanForTestFile();
const { workspace, containerd } = containerdForTestFile();

const GIB = 1024 * 1024 * 1024;
/** What the guest reports: MemTotal (kB) and its CPU count. */
const PROBE = "grep MemTotal /proc/meminfo; nproc";

/** default_vcpus (1) + the container's 2 CPUs, capped at the host's count (default_maxvcpus = 0). */
const expectedVcpus = Math.min(1 + 2, availableParallelism());

function guestSize(output: string): { memTotalKiB: number; cpus: number } {
  const memTotalKiB = Number(/MemTotal:\s+(\d+) kB/.exec(output)?.[1]);
  const cpus = Number(/^(\d+)\s*$/m.exec(output)?.[1]);
  return { memTotalKiB, cpus };
}

/** Default 512 MiB + the 2 GiB limit: more guest memory than the limit, which a 512 MiB VM never shows. */
function assertSizedFor2g(output: string): void {
  const { memTotalKiB, cpus } = guestSize(output);
  assert.ok(memTotalKiB > (2048 + 256) * 1024, `the guest has the default plus the 2 GiB limit: ${output}`);
  assert.equal(cpus, expectedVcpus, `the guest has default_vcpus + the container's CPUs: ${output}`);
}

test("podman run --memory 2g --cpus 2: the guest has the default size plus the container's limits", async () => {
  const result = await podman(["run", "--network", "none", "--rm", "--memory", "2g", "--cpus", "2", "localhost/busybox", "sh", "-c", PROBE]);
  assert.equal(result.code, 0, `${result.stderr}\n--- moatd.log\n${podmanWorkspace.daemonLog()}`);
  assertSizedFor2g(result.stdout);
});

test("podman run without limits: the default VM", async () => {
  const result = await podman(["run", "--network", "none", "--rm", "localhost/busybox", "sh", "-c", PROBE]);
  assert.equal(result.code, 0, result.stderr);
  const { memTotalKiB, cpus } = guestSize(result.stdout);
  assert.ok(memTotalKiB < 512 * 1024, result.stdout);
  assert.equal(cpus, 1);
});

test("podman run --memory over default_maxmemory is refused, naming the limit and the ceiling", async () => {
  const config = podmanWorkspace.configFile("max-1g", "[hypervisor.qemu]\ndefault_maxmemory = 1024\n");
  const result = await podman(["--runtime", runtimeWith("moat-max-1g", ["--config", config]), "run", "--network", "none", "--rm", "--memory", "2g", "localhost/busybox", "true"]);
  assert.notEqual(result.code, 0);
  assert.match(
    result.stderr,
    /config\.json: linux\.resources\.memory\.limit: 2147483648 bytes asks for 2048 MiB; a sandbox VM may have at most 1024 MiB \(\[hypervisor\.qemu\] default_maxmemory in .*max-1g\.toml\)/,
  );
  assert.deepEqual(podmanWorkspace.qemuProcesses(), []);
  // podman leaves its storage's overlay home mounted after any runtime's create failed (runc's,
  // or /bin/false's, as well); its next command unmounts it.
  await podman(["ps", "--all"]);
});

test("ctr run --memory-limit 2 GiB --cpus 2: the guest has the default size plus the task's limits", async () => {
  const result = await containerd.run(["--rm", "--memory-limit", String(2 * GIB), "--cpus", "2", BUSYBOX_IMAGE, "sized-1", "sh", "-c", PROBE]);
  assert.equal(result.code, 0, `${result.stderr}\n--- moatd.log\n${workspace.daemonLog()}`);
  assertSizedFor2g(result.stdout);
  await containerd.assertNothingLeft();
});

test("ctr run with a memory limit over the task's default_maxmemory is refused by name, leaving nothing", async () => {
  const config = workspace.configFile("max-1g", "[hypervisor.qemu]\ndefault_maxmemory = 1024\n");
  const result = await containerd.run(["--rm", "--runtime-config-path", config, "--memory-limit", String(2 * GIB), BUSYBOX_IMAGE, "too-big-1", "true"]);
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /linux\.resources\.memory\.limit: 2147483648 bytes asks for 2048 MiB; a sandbox VM may have at most 1024 MiB \(\[hypervisor\.qemu\] default_maxmemory in .*max-1g\.toml\)/);
  await containerd.ctr(["containers", "rm", "too-big-1"]); // ctr run --rm leaves the container when its task cannot be created
  await containerd.assertNothingLeft();
});
