// moatd is one process for every sandbox, so its failure must not be theirs (issue 3): VMs
// outlive a killed daemon, and the next daemon re-adopts them and carries on.
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { busyboxBundle } from "./harness/bundle.js";
import { createAsConmon, ociWorkspace } from "./harness/oci-runtime.js";
import { TestWorkspace } from "./harness/state-root.js";
import { TerminalSession } from "./harness/terminal.js";

const workspace = new TestWorkspace();
const { subreaper, moat } = ociWorkspace(workspace);

function killDaemon(): void {
  const daemons = workspace.daemonProcesses();
  assert.equal(daemons.length, 1, `one moatd: ${daemons.join("; ")}`);
  process.kill(Number(daemons[0]!.split(" ")[0]), "SIGKILL"); // length checked just above
}

test("a running container survives moatd being killed; the next moatd adopts it", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/survivor`, ["sh", "-c", "echo before; sleep 6; echo after; exit 5"]);
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, "survivor", "");
  assert.equal(await container.created, 0, container.stderr());
  assert.equal((await moat(["start", "survivor"])).code, 0);
  const qemu = workspace.qemuProcesses();
  assert.equal(qemu.length, 1);

  killDaemon();
  await sleep(200);
  assert.deepEqual(workspace.qemuProcesses(), qemu, "the VM outlives the daemon");

  const state = await moat(["state", "survivor"]); // starts a new daemon, which adopts the VM
  assert.equal(state.code, 0, `${state.stderr}\nmoatd.log:\n${workspace.daemonLog()}`);
  assert.equal((JSON.parse(state.stdout) as { status: string }).status, "running");
  const standIn = await container.standIn;
  assert.equal(standIn.exitStatus, 5, `the stand-in reconnected and got the exit status; moatd.log:\n${workspace.daemonLog()}`);
  assert.match(container.stdout(), /after\n$/);
  assert.equal((await moat(["delete", "survivor"])).code, 0);
});

test("a daemon killed mid-create: create fails, and the next daemon removes the half-made sandbox", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/halfmade`, ["true"]);
  const creating = moat(["create", "--bundle", bundle, "halfmade"]);
  while (workspace.qemuProcesses().length === 0) await sleep(20);
  killDaemon();
  const result = await creating;
  assert.equal(result.code, 1);
  assert.match(result.stderr, /connection closed/);
  const list = await moat(["list", "-q"]);
  assert.equal(list.code, 0, list.stderr);
  assert.equal(list.stdout, "");
  // The new daemon answers at once and removes the half-made sandbox meanwhile; a request for that id waits until it has.
  const state = await moat(["state", "halfmade"]);
  assert.equal(state.code, 1);
  assert.match(state.stderr, /container halfmade: does not exist/);
  assert.deepEqual(workspace.qemuProcesses(), []);
});

test("a daemon killed while it builds the VM template: the next daemon kills the builder's QEMU", async () => {
  assert.equal((await moat(["factory", "destroy"])).code, 0);
  const bundle = busyboxBundle(`${workspace.dir}/first`, ["true"]);
  const creating = moat(["create", "--bundle", bundle, "first"]);
  while (!workspace.qemuProcesses().some((line) => line.includes("moat-template-"))) await sleep(20);
  killDaemon();
  assert.equal((await creating).code, 1);
  const list = await moat(["list", "-q"]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(workspace.daemonLog(), /template build [0-9a-f]{16}\.building-[0-9a-f]{8}: its builder is gone; removed and its QEMU \d+ killed/);
  assert.deepEqual(workspace.qemuProcesses(), []);
});

test("a container's terminal survives moatd being killed: input, resizes and the exit status keep flowing", async () => {
  const socket = `${workspace.dir}/restart-console.sock`;
  const terminal = await TerminalSession.console(workspace.dir, socket);
  const script = `echo ready; read line; echo "got $line"; trap 'stty size; exit 3' WINCH; echo armed; while :; do sleep 1; done`;
  const bundle = busyboxBundle(`${workspace.dir}/tty-survivor`, ["sh", "-c", script], (spec) => (spec.process.terminal = true));
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, "tty-survivor", "", ["--console-socket", socket]);
  assert.equal(await container.created, 0, container.stderr());
  assert.equal((await moat(["start", "tty-survivor"])).code, 0);
  await terminal.waitFor("ready\r\n");

  killDaemon();
  const state = await moat(["state", "tty-survivor"]); // starts a new daemon, which adopts the VM
  assert.equal(state.code, 0, `${state.stderr}\nmoatd.log:\n${workspace.daemonLog()}`);
  terminal.type("after\r"); // it waits in the host pty while the stand-in reconnects
  await terminal.waitFor("got after\r\n");
  await terminal.waitFor("armed\r\n");
  terminal.resize(44, 111);
  await terminal.waitFor("44 111\r\n");
  assert.equal((await container.standIn).exitStatus, 3, `moatd.log:\n${workspace.daemonLog()}`);
  assert.equal(await terminal.exit, 0);
  assert.equal((await moat(["delete", "tty-survivor"])).code, 0);
});
