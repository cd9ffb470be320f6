// The OCI runtime CLI as conmon and containerd's runc shim drive it (issue 3): create with a
// pid file, state transitions, start, the stand-in's stdio and exit status, kill, delete.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { busyboxBundle } from "./harness/bundle.js";
import { moatBinary } from "./harness/moat-cli.js";
import { createAsConmon, ociWorkspace } from "./harness/oci-runtime.js";
import { TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const { subreaper, moat } = ociWorkspace(workspace);

async function state(id: string): Promise<Record<string, unknown>> {
  const result = await moat(["state", id]);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

async function waitForStatus(id: string, status: string): Promise<Record<string, unknown>> {
  for (;;) {
    const current = await state(id);
    if (current.status === status) return current;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test("create, state, start, exit status through the stand-in, delete", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/lifecycle`, ["sh", "-c", "read line; echo got $line; echo to-err >&2; exit 3"]);
  const pidFile = `${workspace.dir}/life-1.pid`; // where createAsConmon asks for it
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, "life-1", "hello\n");
  assert.equal(await container.created, 0, container.stderr());
  const pid = Number(readFileSync(pidFile, "utf8"));
  const created = await state("life-1");
  assert.equal(created.status, "created");
  assert.equal(created.pid, pid, "state's pid is the stand-in's, the one in the pid file");
  assert.equal(created.bundle, bundle);
  assert.equal(created.ociVersion, "1.0.2");

  const started = await moat(["start", "life-1"]);
  assert.equal(started.code, 0, started.stderr);
  const standIn = await container.standIn;
  assert.deepEqual(standIn, { pid, exitStatus: 3 }, "the stand-in exits with the container's status");
  assert.equal(container.stdout(), "got hello\n");
  assert.equal(container.stderr(), "to-err\n");
  assert.equal((await waitForStatus("life-1", "stopped")).pid, 0);

  const deleted = await moat(["delete", "life-1"]);
  assert.equal(deleted.code, 0, deleted.stderr);
  const gone = await moat(["state", "life-1"]);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /container life-1: does not exist/);
});

test("kill sends the signal; the exit status is 128 + its number", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/killed`, ["sleep", "1000"]);
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, "kill-1", "");
  assert.equal(await container.created, 0, container.stderr());
  assert.equal((await moat(["start", "kill-1"])).code, 0);
  assert.equal((await state("kill-1")).status, "running");
  const running = await moat(["delete", "kill-1"]);
  assert.equal(running.code, 1);
  assert.match(running.stderr, /container kill-1: cannot delete a running container/);
  const killed = await moat(["kill", "kill-1", "KILL"]);
  assert.equal(killed.code, 0, killed.stderr);
  assert.equal((await container.standIn).exitStatus, 137);
  await waitForStatus("kill-1", "stopped");
  const again = await moat(["kill", "kill-1"]);
  assert.match(again.stderr, /cannot kill a stopped container/);
  assert.equal((await moat(["delete", "kill-1"])).code, 0);
});

test("delete --force of a running container, and delete of a created one, leave nothing", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/forced`, ["sleep", "1000"]);
  const running = createAsConmon(subreaper, workspace.stateRoot, bundle, "force-1", "");
  const created = createAsConmon(subreaper, workspace.stateRoot, bundle, "force-2", "");
  assert.equal(await running.created, 0, running.stderr());
  assert.equal(await created.created, 0, created.stderr());
  assert.equal((await moat(["start", "force-1"])).code, 0);
  const list = await moat(["list", "--format", "json"]);
  assert.deepEqual((JSON.parse(list.stdout) as Array<{ id: string; status: string }>).map(({ id, status }) => `${id}:${status}`).sort(), ["force-1:running", "force-2:created"]);
  assert.equal((await moat(["delete", "--force", "force-1"])).code, 0);
  assert.equal((await moat(["delete", "force-2"])).code, 0);
  assert.equal((await running.standIn).exitStatus, 137);
  assert.equal((await created.standIn).exitStatus, 137);
});

test("bad input: an id in use, a bundle that does not exist, an unknown signal, a missing container", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/dup`, ["sleep", "1000"]);
  const first = createAsConmon(subreaper, workspace.stateRoot, bundle, "dup-1", "");
  assert.equal(await first.created, 0, first.stderr());
  const second = await moat(["create", "--bundle", bundle, "dup-1"]);
  assert.equal(second.code, 1);
  assert.match(second.stderr, /container dup-1: already exists/);
  const nobundle = await moat(["create", "--bundle", `${workspace.dir}/nowhere`, "nob-1"]);
  assert.equal(nobundle.code, 1);
  assert.match(nobundle.stderr, /nowhere\/config.json: cannot read/);
  const badSignal = await moat(["kill", "dup-1", "SIGNOPE"]);
  assert.equal(badSignal.code, 1);
  assert.match(badSignal.stderr, /unknown signal "SIGNOPE"/);
  const missing = await moat(["start", "nobody"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /container nobody: does not exist/);
  assert.equal((await moat(["delete", "dup-1"])).code, 0);
  await first.standIn;
});

test("errors also go to --log in runc's JSON format", async () => {
  const log = `${workspace.dir}/runtime.log`;
  const result = await moat(["--log", log, "--log-format", "json", "start", "nobody"]);
  assert.equal(result.code, 1);
  const line = JSON.parse(readFileSync(log, "utf8").trim().split("\n").pop() ?? "{}") as Record<string, string>;
  assert.equal(line.level, "error");
  assert.match(line.msg ?? "", /container nobody: does not exist/);
  assert.ok(!Number.isNaN(Date.parse(line.time ?? "")));
});

test("exec runs another process in the running container: stdio, exit status, --detach", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/exec`, ["sleep", "1000"], (spec) => (spec.hostname = "exec-host"));
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, "exec-1", "");
  assert.equal(await container.created, 0, container.stderr());
  const notYet = await moat(["exec", "exec-1", "true"]);
  assert.equal(notYet.code, 1);
  assert.match(notYet.stderr, /cannot exec in a created container/);
  assert.equal((await moat(["start", "exec-1"])).code, 0);

  const exec = await moat(["exec", "-e", "EXTRA=yes", "exec-1", "sh", "-c", "hostname; echo $EXTRA; echo oops >&2; exit 4"]);
  assert.equal(exec.code, 4);
  assert.equal(exec.stdout, "exec-host\nyes\n");
  assert.equal(exec.stderr, "oops\n");

  const pidFile = `${workspace.dir}/exec-detached.pid`;
  const detached = await moat(["exec", "--detach", "--pid-file", pidFile, "exec-1", "sleep", "1"]);
  assert.equal(detached.code, 0, detached.stderr);
  assert.ok(Number(readFileSync(pidFile, "utf8")) > 0);

  const ps = await moat(["exec", "exec-1", "ps", "-o", "comm"]);
  assert.match(ps.stdout, /sleep/, "the exec'd process sees the container's processes");
  assert.equal((await moat(["delete", "--force", "exec-1"])).code, 0);
  assert.equal((await container.standIn).exitStatus, 137);
});

test("pause freezes the container and resume thaws it; illegal transitions name the state", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/frozen`, ["sh", "-c", "while true; do date +%s%N > /tmp/tick; sleep 0.1; done"]);
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, "freeze-1", "");
  assert.equal(await container.created, 0, container.stderr());
  const early = await moat(["pause", "freeze-1"]);
  assert.match(early.stderr, /cannot pause a created container/);
  assert.equal((await moat(["start", "freeze-1"])).code, 0);
  assert.equal((await moat(["pause", "freeze-1"])).code, 0);
  assert.equal((await state("freeze-1")).status, "paused");
  const again = await moat(["pause", "freeze-1"]);
  assert.match(again.stderr, /cannot pause a paused container/);
  const busy = await moat(["delete", "freeze-1"]);
  assert.match(busy.stderr, /cannot delete a paused container/);
  assert.equal((await moat(["resume", "freeze-1"])).code, 0);
  assert.equal((await state("freeze-1")).status, "running");
  const tick = await moat(["exec", "freeze-1", "cat", "/tmp/tick"]);
  assert.equal(tick.code, 0, tick.stderr);
  assert.equal((await moat(["delete", "--force", "freeze-1"])).code, 0);
  assert.equal((await container.standIn).exitStatus, 137);
});

test("run --detach (runc's run -d), ps lists the guest's processes, update changes the guest cgroup", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/detached`, ["sh", "-c", "sleep 1000 & exec sleep 2000"]);
  const pidFile = `${workspace.dir}/detached.pid`;
  // The container keeps the caller's stdio, as runc run -d's does: give it a file, not a pipe
  // that would stay open after moat returned.
  const output = openSync(`${workspace.dir}/detached.out`, "w");
  const run = spawnSync(moatBinary, ["--root", workspace.stateRoot, "run", "--detach", "--pid-file", pidFile, "--bundle", bundle, "run-1"], { stdio: ["ignore", output, output] });
  closeSync(output);
  assert.equal(run.status, 0, readFileSync(`${workspace.dir}/detached.out`, "utf8"));
  assert.equal((await state("run-1")).status, "running");
  assert.equal((await state("run-1")).pid, Number(readFileSync(pidFile, "utf8")));

  const json = await moat(["ps", "--format", "json", "run-1"]);
  assert.equal(json.code, 0, json.stderr);
  // Host pids, as runc's callers read them: the stand-in, not the guest's pids.
  assert.deepEqual(JSON.parse(json.stdout), [Number(readFileSync(pidFile, "utf8"))]);
  const table = await moat(["ps", "run-1"]);
  assert.match(table.stdout, /^\s*PID\s+CMD\n/);
  assert.match(table.stdout, /sleep 1000\n/);
  assert.match(table.stdout, /sleep 2000\n/);

  const update = await moat(["update", "--memory", "64m", "--pids-limit", "32", "run-1"]);
  assert.equal(update.code, 0, update.stderr);
  const limits = await moat(["exec", "run-1", "cat", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max"]);
  assert.equal(limits.stdout, `${64 * 1024 * 1024}\n32\n`, `exit ${limits.code}: ${limits.stderr}`);
  const bad = await moat(["update", "--memory", "lots", "run-1"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--memory: must be a size/);

  assert.equal((await moat(["delete", "--force", "run-1"])).code, 0);
  const gone = await moat(["ps", "run-1"]);
  assert.match(gone.stderr, /container run-1: does not exist/);
});

test("run in the foreground with a bundle and a container id, as runc run does", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/foreground`, ["sh", "-c", "hostname; exit 6"], (spec) => (spec.hostname = "fg-host"));
  const run = await moat(["run", "--bundle", bundle, "fg-1"]);
  assert.equal(run.code, 6, run.stderr);
  assert.equal(run.stdout, "fg-host\n");
  const extra = await moat(["run", "--bundle", bundle, "fg-2", "echo", "hi"]);
  assert.equal(extra.code, 1);
  assert.match(extra.stderr, /takes one argument, the container id/);
});
