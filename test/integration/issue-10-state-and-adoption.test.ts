// Issue 10, item 7: running state must not be lost silently. A write of a container's state
// that fails is the error of the request that needed it (it used to be only traced, and the
// next moatd took the running container for an unfinished create). A restarting moatd listens
// first and adopts its sandboxes all at once: one unresponsive guest delays only requests for
// itself (it used to hold up every request while it was adopted, one sandbox at a time).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { busyboxBundle } from "./harness/bundle.js";
import { createAsConmon, ociWorkspace } from "./harness/oci-runtime.js";
import { TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const { subreaper, moat } = ociWorkspace(workspace);

/** Creates and starts a container whose process waits to be killed. */
async function started(id: string) {
  const container = createAsConmon(subreaper, workspace.stateRoot, busyboxBundle(join(workspace.dir, id), ["sleep", "1000"]), id, "");
  assert.equal(await container.created, 0, container.stderr());
  const start = await moat(["start", id]);
  assert.equal(start.code, 0, start.stderr);
  return container;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("a state write that fails is the request's error: start answers it, and the container can still be deleted", async () => {
  const bundle = busyboxBundle(join(workspace.dir, "unsaved"), ["sleep", "1000"]);
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, "unsaved", "");
  assert.equal(await container.created, 0, container.stderr());
  // The sandbox's state directory becomes read-only (a bind mount of itself): the next write of container.json fails.
  const stateDir = join(workspace.stateRoot, "unsaved");
  execFileSync("mount", ["--bind", stateDir, stateDir]);
  try {
    execFileSync("mount", ["-o", "remount,bind,ro", stateDir]);
    const start = await moat(["start", "unsaved"]);
    assert.equal(start.code, 1, start.stdout);
    assert.match(start.stderr, /^moat: container unsaved: cannot save its state to .*\/unsaved\/container\.json: EROFS/);
    assert.match(readFileSync(join(stateDir, "container.json"), "utf8"), /"status":"created"/, "the state on disk is the last one written");
  } finally {
    execFileSync("umount", [stateDir]);
  }
  const deleted = await moat(["delete", "--force", "unsaved"]);
  assert.equal(deleted.code, 0, deleted.stderr);
  await container.standIn;
});

test("a restarted moatd answers for one sandbox while another's guest cannot answer, and answers for that one once it is adopted", async () => {
  const stuck = await started("stuck");
  const free = await started("free");
  const daemons = workspace.daemonProcesses();
  assert.equal(daemons.length, 1);
  process.kill(Number(daemons[0]!.split(" ")[0]), "SIGKILL"); // one, checked just above
  // The "stuck" guest's QEMU is stopped while no moatd runs: neither QMP nor its agent can answer.
  const stuckQemu = Number(readFileSync(join(workspace.stateRoot, "stuck", "qemu.pid"), "utf8"));
  process.kill(stuckQemu, "SIGSTOP");
  try {
    const state = await moat(["state", "free"]); // starts a new moatd, which adopts both at once
    assert.equal(state.code, 0, `${state.stderr}\nmoatd.log:\n${workspace.daemonLog()}`);
    assert.equal((JSON.parse(state.stdout) as { status: string }).status, "running");
    // Answered while "stuck" was still being adopted: its QEMU was neither adopted nor given up on (killed).
    assert.ok(alive(stuckQemu), "the stopped QEMU is still there");
    assert.doesNotMatch(workspace.daemonLog(), /container stuck: (adopted|cannot adopt)/);
    const list = await moat(["list", "-q"]);
    assert.deepEqual(list.stdout.trim().split("\n").sort(), ["free", "stuck"], "list names the one still being adopted too");
    // A request for the stuck one waits for its adoption, which ends once its QEMU runs again.
    const stuckState = moat(["state", "stuck"]);
    process.kill(stuckQemu, "SIGCONT");
    const answered = await stuckState;
    assert.equal(answered.code, 0, `${answered.stderr}\nmoatd.log:\n${workspace.daemonLog()}`);
    assert.equal((JSON.parse(answered.stdout) as { status: string }).status, "running");
  } finally {
    if (alive(stuckQemu)) process.kill(stuckQemu, "SIGCONT");
  }
  for (const id of ["stuck", "free"]) assert.equal((await moat(["delete", "--force", id])).code, 0);
  await stuck.standIn;
  await free.standIn;
});
