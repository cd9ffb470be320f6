// Issue 10, item 5: a guest cannot fill the host's memory through its logs. A real VM whose
// container writes 6 MB to the guest's serial console (the device node made in the container,
// as a privileged container or a hostile guest kernel can) leaves at most 4 MiB of logs on the
// host: the VM's logs/ is a tmpfs of that size. Without moatd (`moat run` owns its sandbox) the
// bound is the kernel's; with moatd, the log is also trimmed to its newest part.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { LOG_DIR_BYTES, TRIM_ABOVE_BYTES } from "../../src/host/hypervisor/index.js";
import { busyboxBundle } from "./harness/bundle.js";
import { moatBinary } from "./harness/moat-cli.js";
import { createAsConmon, ociWorkspace } from "./harness/oci-runtime.js";
import { TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const { subreaper, moat } = ociWorkspace(workspace);
// Cold boots (no template to build first), for moat run, moat create and the moatd they start.
process.env.MOAT_CONFIG = workspace.configFile("cold", "[factory]\nenable_template = false\n");

/** 6 MB of lines to the serial console, then a last line, then the marker on stdout; then waits for stdin (`wait`) or to be killed. */
const flood = (wait: string) => `mknod /dev/ttyS0 c 4 64 && yes "a line of the flood to the serial console" | head -c 6000000 > /dev/ttyS0; echo END-OF-FLOOD > /dev/ttyS0; echo flooded; ${wait}`;

function floodBundle(name: string, wait: string): string {
  return busyboxBundle(join(workspace.dir, name), ["sh", "-c", flood(wait)], (spec) => {
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

test("moat run (no moatd): 6 MB to the console leave at most 4 MiB of logs, and the guest carries on", async () => {
  const child = spawn(moatBinary, ["--root", workspace.stateRoot, "run", "-i", "--bundle", floodBundle("run-bundle", "read line"), "logs-run"], { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const flooded = new Promise<void>((resolve) =>
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      if (stdout.includes("flooded\n")) resolve();
    }),
  );
  const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
  await Promise.race([flooded, closed]);
  assert.equal(stdout, "flooded\n", stderr);
  const logs = logDir("logs-run");
  assert.equal(logs.fsType, "tmpfs");
  assert.equal(logs.sizeBytes, LOG_DIR_BYTES);
  assert.ok(logs.usedBytes <= LOG_DIR_BYTES, `${logs.usedBytes} bytes of logs`);
  assert.ok(logs.consoleBytes > LOG_DIR_BYTES / 2, `the flood reached the console log (${logs.consoleBytes} bytes)`);
  child.stdin.end("done\n");
  assert.equal(await closed, 0, stderr);
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
