// Issue 2, bad input: a missing kernel or image, a missing QEMU, a QEMU that dies during
// boot. Each gives one clear line and leaves no process, socket or state directory behind.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { after, afterEach, test } from "node:test";
import { startSandboxVm } from "../../src/host/sandbox/index.js";
import { MoatError } from "../../src/shared/errors.js";
import { runMoat } from "./harness/moat-cli.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
afterEach(() => workspace.assertNothingLeft(DAEMON_FILES));
after(() => workspace.remove());

/** The user sees exactly one error line and one hint line. */
function assertOneClearError(stderr: string, message: RegExp): void {
  const lines = stderr.trimEnd().split("\n").filter((line) => !line.startsWith("note: "));
  assert.match(lines[0] ?? "", message);
  assert.ok(lines.length <= 2, `expected an error and at most a hint, got:\n${stderr}`);
}

test("a missing guest kernel names the file and the command that builds it", async () => {
  const config = workspace.configFile("no-kernel", '[hypervisor.qemu]\nkernel = "/nonexistent/vmlinux"\n');
  const result = await runMoat(["--config", config, "boot"]);
  assert.equal(result.code, 1);
  assertOneClearError(result.stderr, /^moat: .*no-kernel.toml: guest kernel \/nonexistent\/vmlinux does not exist$/);
  assert.match(result.stderr, /Hint: build them with `make guest`/);
});

test("a missing guest image names the file", async () => {
  const config = workspace.configFile("no-image", '[hypervisor.qemu]\nimage = "/nonexistent/rootfs.erofs"\n');
  const result = await runMoat(["--config", config, "boot"]);
  assert.equal(result.code, 1);
  assertOneClearError(result.stderr, /guest image \/nonexistent\/rootfs.erofs does not exist/);
});

test("a missing QEMU says how to install it", async () => {
  const config = workspace.configFile("no-qemu", '[hypervisor.qemu]\npath = "/nonexistent/qemu-system-x86_64"\n');
  const result = await runMoat(["--config", config, "boot", "--id", "no-qemu"]);
  assert.equal(result.code, 1);
  assertOneClearError(result.stderr, /sandbox no-qemu: QEMU not found at \/nonexistent\/qemu-system-x86_64/);
  assert.match(result.stderr, /Hint: apt-get install qemu-system-x86/);
});

test("a QEMU that refuses the kernel is reported with what QEMU said", async () => {
  const bogusKernel = `${workspace.dir}/not-a-kernel`;
  writeFileSync(bogusKernel, "this is not a kernel\n");
  const config = workspace.configFile("bogus-kernel", `[hypervisor.qemu]\nkernel = "${bogusKernel}"\n`);
  const result = await runMoat(["--config", config, "boot", "--id", "bogus"]);
  assert.equal(result.code, 1);
  assertOneClearError(result.stderr, /sandbox bogus: QEMU exited while starting \(exit status 1\): .*invalid kernel header/);
});

test("a QEMU killed mid-boot is reported and cleaned up", async () => {
  const config = workspace.config();
  const booting = startSandboxVm(config, "killed");
  const pidFile = `${workspace.stateRoot}/killed/qemu.pid`;
  let pid = 0;
  while (pid === 0) {
    await sleep(20);
    try {
      pid = Number(readFileSync(pidFile, "utf8"));
    } catch {
      // Not written yet.
    }
  }
  process.kill(pid, "SIGKILL");
  const error = await booting.then(
    () => assert.fail("boot should fail"),
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof MoatError);
  assert.equal(error.code, "MOAT_QEMU_EXITED");
  assert.match(error.message, /sandbox killed: QEMU exited (while starting|while restoring from the template|during boot, \d+ ms after start) \(killed by SIGKILL\)/);
});

test("a guest whose agent never answers is reported with what its vCPUs were doing, and cleaned up", async () => {
  // The guest's init is a shell reading a console nobody types on: the agent never starts.
  const config = workspace.configFile("no-agent", '[hypervisor.qemu]\nkernel_params = "init=/bin/sh"\n[agent.moat]\ndial_timeout = 3\n[factory]\nenable_template = false\n');
  const result = await runMoat(["--config", config, "boot", "--id", "no-agent"]);
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    /^moat: sandbox no-agent: agent did not answer on virtio-serial port agent\.0 within 3000 ms \(QEMU up after \d+ ms, (tcg|kvm), cold boot: templates are off \(\[factory\] enable_template\)\); vCPU 0 (halted|running) in (the kernel|user space) at [0-9a-f]+, \d+% of a host CPU; console: /,
  );
});

test("an invalid sandbox id is refused before anything is created", async () => {
  await assert.rejects(startSandboxVm(workspace.config(), "../escape"), /sandbox id "..\/escape": must be/);
});

test("a malformed configuration names the file and the key", async () => {
  const config = workspace.configFile("bad-memory", "[hypervisor.qemu]\ndefault_memory = \"lots\"\n");
  const result = await runMoat(["--config", config, "boot"]);
  assert.equal(result.code, 1);
  assertOneClearError(result.stderr, /bad-memory.toml: hypervisor.qemu.default_memory: must be an integer from 128 to 1048576 \(MiB\), got "lots"/);
});

test("`moat check` passes on this host and fails, with the fix, when the kernel is missing", async () => {
  const good = await runMoat(["--root", workspace.stateRoot, "check"]);
  assert.equal(good.code, 0, good.stdout);
  assert.match(good.stdout, /^ok {3}QEMU /m);
  assert.match(good.stdout, /^(ok|note) accelerator/m);
  assert.match(good.stdout, /sandboxes can run on this host/);
  const config = workspace.configFile("check-no-kernel", '[hypervisor.qemu]\nkernel = "/nonexistent/vmlinux"\n');
  const bad = await runMoat(["--config", config, "check"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /^FAIL guest kernel {3}\/nonexistent\/vmlinux is not built$/m);
  assert.match(bad.stdout, /fix: make guest/);
});
