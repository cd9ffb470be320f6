// Issue 10, item 5: a guest cannot fill the host's memory through its logs. A real VM whose
// container writes 6 MB to the guest's serial console (the device node made in the container,
// as a privileged container or a hostile guest kernel can) leaves at most 4 MiB of logs on the
// host: the VM's logs/ is a tmpfs of that size. While moatd is down (QEMU and the guest run on
// without it) the bound is the kernel's; with moatd, the log is also trimmed to its newest part.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { LOG_DIR_BYTES, TRIM_ABOVE_BYTES } from "../../src/host/hypervisor/index.js";
import { busyboxBundle } from "./harness/bundle.js";
import { createAsConmon, ociWorkspace } from "./harness/oci-runtime.js";
import { TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const { subreaper, moat } = ociWorkspace(workspace);
// Cold boots (no template to build first), for moat run, moat create and the moatd they start.
process.env.MOAT_CONFIG = workspace.configFile("cold", "[factory]\nenable_template = false\n");

/** After `before`, 6 MB of lines to the serial console, then a last line, then the marker on stdout; then `wait`. */
const flood = (wait: string, before: string) => `${before}; mknod /dev/ttyS0 c 4 64 && yes "a line of the flood to the serial console" | head -c 6000000 > /dev/ttyS0; echo END-OF-FLOOD > /dev/ttyS0; echo flooded; ${wait}`;

function floodBundle(name: string, wait: string, before = "true"): string {
  return busyboxBundle(join(workspace.dir, name), ["sh", "-c", flood(wait, before)], (spec) => {
    const caps = ["CAP_MKNOD"];
    spec.process.capabilities = { bounding: caps, effective: caps, permitted: caps };
    const linux = spec.linux as Record<string, unknown>; // the default spec's linux object
    spec.linux = { ...linux, resources: { devices: [{ allow: true, type: "c", major: 4, minor: 64, access: "rwm" }] } };
  });
}

/** The VM's logs/: its mount's type and size, and the bytes of the files in it. */
function logDir(id: string): { fsType: string; sizeBytes: number; usedBytes: number; consoleBytes: number } {
  const dir = join(workspace.stateRoot, id, "logs");
  const mount = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .find((line) => line.split(" ")[4] === dir);
  const [fsType = "", , superOptions = ""] = (mount ?? "").split(" - ")[1]?.split(" ") ?? [];
  const sizeKiB = Number(/size=(\d+)k/.exec(superOptions)?.[1] ?? 0);
  const usedBytes = readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
  return { fsType, sizeBytes: sizeKiB * 1024, usedBytes, consoleBytes: statSync(join(dir, "console.log")).size };
}

test("with moatd down, 6 MB to the console leave at most 4 MiB of logs, and the guest carries on", async () => {
  // The flood starts a few seconds after the start, by when moatd has been killed: QEMU and the
  // guest run on without it, and nothing trims the log meanwhile; the tmpfs alone bounds it.
  const container = createAsConmon(subreaper, workspace.stateRoot, floodBundle("down-bundle", "sleep 600", "sleep 5"), "logs-down", "");
  assert.equal(await container.created, 0, container.stderr());
  assert.equal((await moat(["start", "logs-down"])).code, 0);
  for (const line of workspace.daemonProcesses()) process.kill(Number(line.split(" ")[0]), "SIGKILL");
  while (workspace.daemonProcesses().length > 0) await sleep(50);
  // Written until the tmpfs is full (the flood is larger than it): wait for the log to stop growing.
  const deadline = Date.now() + 180_000;
  let logs = logDir("logs-down");
  for (let steady = 0; steady < 3 || logs.consoleBytes < LOG_DIR_BYTES / 2; ) {
    assert.ok(Date.now() < deadline, `the flood did not fill the console log: ${logs.consoleBytes} bytes`);
    await sleep(1000);
    const next = logDir("logs-down");
    steady = next.consoleBytes === logs.consoleBytes ? steady + 1 : 0;
    logs = next;
  }
  assert.equal(workspace.daemonProcesses().length, 0, "no moatd trimmed meanwhile");
  assert.equal(logs.fsType, "tmpfs");
  assert.equal(logs.sizeBytes, LOG_DIR_BYTES);
  assert.ok(logs.usedBytes <= LOG_DIR_BYTES, `${logs.usedBytes} bytes of logs`);
  assert.ok(logs.consoleBytes > LOG_DIR_BYTES / 2, `the flood reached the console log (${logs.consoleBytes} bytes)`);
  // The next command starts moatd, which adopts the container: the guest carried on.
  const state = await moat(["state", "logs-down"]);
  assert.equal(state.code, 0, state.stderr);
  assert.equal(JSON.parse(state.stdout).status, "running");
  assert.equal((await moat(["delete", "--force", "logs-down"])).code, 0);
  // Its stand-in waits 30 s for a moatd and may have given up by now: either way it is gone.
  await container.standIn;
});

test("moatd trims a flooded console log to its newest part", async () => {
  const container = createAsConmon(subreaper, workspace.stateRoot, floodBundle("oci-bundle", "sleep 600"), "logs-oci", "");
  assert.equal(await container.created, 0, container.stderr());
  assert.equal((await moat(["start", "logs-oci"])).code, 0);
  const deadline = Date.now() + 120_000;
  while (!container.stdout().includes("flooded")) {
    assert.ok(Date.now() < deadline, `no end of the flood: ${container.stderr()}\n${workspace.daemonLog()}`);
    await sleep(200);
  }
  // Trimmed every 5 s: wait for the next pass after the flood ended.
  let logs = logDir("logs-oci");
  while (logs.consoleBytes > TRIM_ABOVE_BYTES) {
    assert.ok(Date.now() < deadline, `console.log still ${logs.consoleBytes} bytes`);
    await sleep(500);
    logs = logDir("logs-oci");
  }
  assert.ok(logs.usedBytes <= LOG_DIR_BYTES);
  const console = readFileSync(join(workspace.stateRoot, "logs-oci", "logs", "console.log"), "utf8");
  assert.match(console.slice(-200), /END-OF-FLOOD/, "the newest lines are the ones kept");
  assert.equal((await moat(["delete", "--force", "logs-oci"])).code, 0);
  assert.equal((await container.standIn).exitStatus, 137, `${container.stderr()}\n${workspace.daemonLog()}`);
});
