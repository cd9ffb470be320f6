// Issue 2: a VM with moat's own kernel, image and agent, driven from the host over ttrpc.
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import { release } from "node:os";
import { after, afterEach, test } from "node:test";
import { startSandboxVm } from "../../src/host/sandbox/index.js";
import { guestKernelRelease } from "../../src/host/cli/guest-kernel-release.js";
import { AGENT_PROTOCOL_VERSION } from "../../src/shared/protocol/index.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";
import { runMoat } from "./harness/moat-cli.js";

const workspace = new TestWorkspace();
afterEach(() => workspace.assertNothingLeft(DAEMON_FILES));
after(() => workspace.remove());

test("boot, health check, version, guest details, shutdown; nothing is left", async () => {
  const config = workspace.config();
  const sandbox = await startSandboxVm(config, "agent-api");
  const stateDir = `${workspace.stateRoot}/agent-api`;
  try {
    assert.ok(existsSync(`${sandbox.vm.paths.socketDir}/agent.sock`));
    assert.equal(Number(readFileSync(`${stateDir}/qemu.pid`, "utf8")), sandbox.vm.pid);

    const check = await sandbox.agent.check();
    assert.ok(check.uptimeSeconds > 0);

    const version = await sandbox.agent.version();
    assert.equal(version.protocolVersion, AGENT_PROTOCOL_VERSION);
    assert.match(version.runtimeVersion, /^v\d+\./);

    const details = await sandbox.agent.details();
    assert.equal(details.kernelRelease, await guestKernelRelease(config.qemu.kernel));
    assert.notEqual(details.kernelRelease, release(), "the guest runs its own kernel");
    assert.equal(details.onlineCpus, config.qemu.defaultVcpus);
    const memoryMiB = Number(details.memoryTotalBytes / 1024n / 1024n);
    assert.ok(memoryMiB > config.qemu.defaultMemoryMiB * 0.8 && memoryMiB <= config.qemu.defaultMemoryMiB, `guest sees ${memoryMiB} MiB`);
    assert.ok(details.memoryAvailableBytes > 0n && details.memoryAvailableBytes < details.memoryTotalBytes);

    // A VM restored from a template has its agent's start in the template's log, not its own.
    const agentLine = sandbox.timings.start.kind === "template" ? /restored from a template: RNG reseeded/ : /moat-agent .* serving on \/run\/moat-agent.sock/;
    assert.match(readFileSync(`${stateDir}/logs/vm.log`, "utf8"), agentLine, "agent log lines reach the VM's log file");
  } finally {
    const exit = await sandbox.shutdown();
    assert.deepEqual(exit, { code: 0, signal: null }, "the guest powered off; QEMU was not killed");
  }
  assert.ok(!existsSync(stateDir));
});

test("`moat boot` prints the host and guest kernel releases side by side", async () => {
  const result = await runMoat(["--root", workspace.stateRoot, "boot", "--json"]);
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as Record<string, unknown>;
  assert.equal(report.hostKernel, release());
  assert.match(String(report.guestKernel), /-moat$/);
  assert.notEqual(report.guestKernel, report.hostKernel);
  assert.ok(Number(report.agentReadyMs) > 0);
});

test("two VMs run side by side with separate state", async () => {
  const config = workspace.config();
  const started = await Promise.allSettled([startSandboxVm(config, "pair-1"), startSandboxVm(config, "pair-2")]);
  const failed = started.find((result) => result.status === "rejected");
  if (failed) {
    // The one that started must not outlive the test (nor fail the next test's leftover check).
    for (const result of started) if (result.status === "fulfilled") await result.value.shutdown();
    throw failed.reason;
  }
  const [first, second] = started.map((result) => (result as PromiseFulfilledResult<Awaited<ReturnType<typeof startSandboxVm>>>).value); // none rejected (checked above)
  try {
    assert.notEqual(first.vm.pid, second.vm.pid);
    const [a, b] = await Promise.all([first.agent.details(), second.agent.details()]);
    assert.equal(a.kernelRelease, b.kernelRelease);
  } finally {
    await Promise.all([first.shutdown(), second.shutdown()]);
  }
});

test("a sandbox id that is taken is refused without touching the running one", async () => {
  const config = workspace.config();
  const sandbox = await startSandboxVm(config, "taken");
  try {
    await assert.rejects(startSandboxVm(config, "taken"), /sandbox taken: already exists/);
    await sandbox.agent.check();
  } finally {
    await sandbox.shutdown();
  }
});
