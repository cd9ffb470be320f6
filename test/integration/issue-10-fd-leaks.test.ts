// Issue 10, item 8: host file descriptors must not leak into what moat starts. A process gets
// every descriptor its parent left open without close-on-exec (conmon leaves its own open for
// the runtime), and Node passes them on to what it spawns: at start-up it marks close-on-exec
// only the run of descriptors from 0 up to the first gap after 15 (libuv's
// uv_disable_stdio_inheritance), so one above that gap reached a moatd started by `moat
// create`, which held it for its whole life and handed it to every QEMU and virtiofsd (the
// CVE-2024-21626 class). Here the caller of moat holds descriptors open on marker files, high
// enough to be past that run; none of them may reach moatd, QEMU, virtiofsd or the stand-in.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { busyboxBundle } from "./harness/bundle.js";
import { moatBinary, runMoat } from "./harness/moat-cli.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
afterEach(() => workspace.assertNothingLeftWithin(30_000, DAEMON_FILES));
after(async () => {
  await workspace.stopDaemon();
  workspace.remove();
});

// virtio-fs, so that a virtiofsd runs beside QEMU.
const config = workspace.configFile("virtio-fs", '[hypervisor.qemu]\nshared_fs = "virtio-fs"\n');
const markers = [join(workspace.dir, "held-for-reading"), join(workspace.dir, "held-for-writing")];
for (const marker of markers) writeFileSync(marker, "");

/** Runs moat ARGS from a shell that holds the markers open on descriptors 7 and 200 (no close-on-exec, as a shell leaves them). */
function moatHoldingMarkers(args: string[], log: string) {
  const script = 'exec 7<"$1" 200>>"$2" >"$3" 2>&1 </dev/null; shift 3; exec "$@"';
  const child = spawn("bash", ["-c", script, "bash", markers[0]!, markers[1]!, log, moatBinary, "--config", config, ...args], { stdio: "ignore" }); // two markers, made above
  return new Promise<number | null>((resolve) => child.once("close", resolve));
}

/** Each descriptor of process `pid` and what it refers to. */
function descriptors(pid: number): Array<{ fd: number; target: string }> {
  return readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return { fd: Number(fd), target: readlinkSync(`/proc/${pid}/fd/${fd}`) };
    } catch {
      return { fd: Number(fd), target: "(closed meanwhile)" };
    }
  });
}

function assertNoMarker(what: string, pid: number): void {
  const held = descriptors(pid).filter(({ target }) => markers.includes(target));
  assert.deepEqual(held, [], `${what} (pid ${pid}) holds the caller's descriptors:\n${descriptors(pid).map(({ fd, target }) => `${fd} -> ${target}`).join("\n")}`);
}

function pids(lines: string[]): number[] {
  return lines.map((line) => Number(line.split(" ")[0]));
}

/** moatd, its QEMU and virtiofsd: none holds a marker; moatd has stdin on /dev/null and its output in its log. */
function assertOnlyTheirOwn(): void {
  const [daemon, ...others] = pids(workspace.daemonProcesses());
  assert.ok(daemon !== undefined && others.length === 0, `one moatd: ${workspace.daemonProcesses().join("; ")}`);
  assertNoMarker("moatd", daemon);
  const stdio = descriptors(daemon).filter(({ fd }) => fd <= 2).map(({ target }) => target);
  assert.deepEqual(stdio, ["/dev/null", join(workspace.stateRoot, "moatd.log"), join(workspace.stateRoot, "moatd.log")]);
  const qemu = pids(workspace.qemuProcesses());
  const virtiofsd = pids(workspace.virtiofsdProcesses());
  assert.equal(qemu.length, 1, workspace.qemuProcesses().join("\n"));
  assert.ok(virtiofsd.length > 0, "virtiofsd runs");
  for (const pid of qemu) assertNoMarker("QEMU", pid);
  for (const pid of virtiofsd) assertNoMarker("virtiofsd", pid);
}

test("moat create from a caller holding extra descriptors: moatd, QEMU, virtiofsd and the stand-in hold none of them", async () => {
  const bundle = busyboxBundle(join(workspace.dir, "created"), ["sleep", "1000"]);
  const pidFile = join(workspace.dir, "created.pid");
  const log = join(workspace.dir, "create.log");
  const code = await moatHoldingMarkers(["create", "--bundle", bundle, "--pid-file", pidFile, "leak-create"], log);
  assert.equal(code, 0, readFileSync(log, "utf8"));
  assertOnlyTheirOwn();
  const standIn = Number(readFileSync(pidFile, "utf8"));
  assertNoMarker("the stand-in", standIn);
  assert.deepEqual(descriptors(standIn).filter(({ fd }) => fd > 2).map(({ target }) => target.replace(/\d+/g, "N")), ["socket:[N]"], "the stand-in holds its stdio and its socket to moatd");
  const deleted = await runMoat(["--config", config, "delete", "--force", "leak-create"]);
  assert.equal(deleted.code, 0, deleted.stderr);
  await workspace.stopDaemon(); // the next test's moat run starts its own
});

test("moat run from a caller holding extra descriptors: the moatd it starts, QEMU and virtiofsd hold none of them", async () => {
  const log = join(workspace.dir, "run.log");
  const running = moatHoldingMarkers(["run", "--name", "leak-run", "busybox", "sleep", "1000"], log);
  while (workspace.qemuProcesses().length === 0 || !/"status":"running"/.test(safeRead(join(workspace.stateRoot, "leak-run", "container.json")))) await sleep(100);
  assertOnlyTheirOwn();
  const killed = await runMoat(["--config", config, "kill", "leak-run", "KILL"]);
  assert.equal(killed.code, 0, killed.stderr);
  assert.equal(await running, 137, readFileSync(log, "utf8"));
});

function safeRead(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}
