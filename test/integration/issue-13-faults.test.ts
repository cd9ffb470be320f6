// Issue 13, item 5: faults leave correct exits and nothing behind. A fault strikes at a step of
// a container's life (create, start, exec, delete) through the OCI CLI (`moat create/start/
// exec/delete`, with a subreaper playing conmon) and through containerd (`ctr`): SIGKILL of
// QEMU, of the guest agent (from a container that shares the guest's pid namespace), of the
// per-task relay, of a stand-in, of moatd, of containerd; a guest that stops answering (QEMU
// stopped with SIGSTOP); the state root's file system full; a share's source removed under a
// running container. Each case checks what the caller sees (137, or an error naming what
// failed) and then the census (harness/state-root.ts): no process, mount, tap, network
// namespace, cgroup, state file or socket directory left, and moatd's descriptors back to
// their count with no container.
//
// Within a step (harness/within-step.ts): moatd runs with MOAT_TRACE=sandbox, which logs
// "step: <call> <id>" as each container call goes to the guest; withinStep stops QEMU (SIGSTOP)
// first, so the call cannot be answered, and once the line is in moatd's log, the call is in
// flight, and the fault strikes there. No sleeps decide anything: every wait is for a line, a
// process, or an exit.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { busyboxBundle } from "./harness/bundle.js";
import { createAsConmon, underSubreaper } from "./harness/oci-runtime.js";
import { helperBinary } from "./harness/c-helper.js";
import { containerdForTestFile } from "./harness/containerd.js";
import { runMoat, type CliResult } from "./harness/moat-cli.js";
import { BUSYBOX_IMAGE } from "./harness/oci-image.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";
import { withinStep, type StepTarget } from "./harness/within-step.js";

const workspace = new TestWorkspace();
const subreaper = helperBinary(workspace.dir, "subreaper");
// Every moatd of this file (started by the CLI or by containerd's shim) inherits it: its log marks each step.
process.env.MOAT_TRACE = "sandbox,daemon";
const moat = (args: string[]) => runMoat(["--root", workspace.stateRoot, ...args]);
/** The cgroup parent every container of this file goes under (cgroupsPath), which the census checks in each hierarchy. */
const cgroupParent = `moat-faults-${process.pid}`;
let baselineDescriptors: number | undefined;

before(async () => {
  // moatd started with no container: its descriptor count is the baseline every census compares with.
  const list = await moat(["list"]);
  assert.equal(list.code, 0, list.stderr);
  baselineDescriptors = workspace.census().daemon?.descriptors;
  assert.notEqual(baselineDescriptors, undefined, "moatd runs after moat list");
});
after(async () => {
  await workspace.stopDaemon();
  for (const hierarchy of ["/sys/fs/cgroup/unified", ...["cpu", "memory", "pids", "freezer", "cpuset", "devices", "blkio", "systemd"].map((name) => `/sys/fs/cgroup/${name}`)]) rmSync(join(hierarchy, cgroupParent), { recursive: false, force: true });
  workspace.remove();
});

/** Asserts the census finds nothing of the containers `ids` left, and moatd at its baseline. */
async function assertCensus(ids: string[]): Promise<void> {
  // moatd removes a stopped sandbox's pieces once its exit has gone out; wait for the VM and state to be gone first.
  await workspace.assertNothingLeftWithin(30_000, DAEMON_FILES);
  workspace.assertCensusClean({ ids, cgroupParents: [cgroupParent], daemonDescriptors: baselineDescriptors });
}

function bundleFor(id: string, args: string[], change: Parameters<typeof busyboxBundle>[2] = () => undefined): string {
  return busyboxBundle(join(workspace.dir, "bundles", id), args, (spec) => {
    const linux = spec.linux as Record<string, unknown>; // the default spec's linux object
    spec.linux = { ...linux, cgroupsPath: `/${cgroupParent}/${id}` };
    change(spec);
  });
}

function pidOf(line: string | undefined): number {
  assert.ok(line, "a process");
  return Number(line.split(" ")[0]);
}

/** The one QEMU of this workspace (one container runs at a time here). */
function qemuPid(): number {
  const lines = workspace.qemuProcesses();
  assert.equal(lines.length, 1, `one QEMU: ${lines.join("; ")}`);
  return pidOf(lines[0]);
}

function daemonPid(): number {
  const lines = workspace.daemonProcesses();
  assert.equal(lines.length, 1, `one moatd: ${lines.join("; ")}`);
  return pidOf(lines[0]);
}

/** This workspace's one sandbox, for withinStep: its QEMU and moatd's log. */
function sandbox(): StepTarget {
  return { qemuPid: qemuPid(), log: () => workspace.daemonLog() };
}

/** Creates a container as conmon does and waits for `moat create` to succeed. */
async function created(id: string, args = ["sleep", "1000"], change?: Parameters<typeof busyboxBundle>[2]) {
  const container = createAsConmon(subreaper, workspace.stateRoot, bundleFor(id, args, change), id, "");
  assert.equal(await container.created, 0, `${container.stderr()}\n${workspace.daemonLog().slice(-3000)}`);
  return container;
}

async function started(id: string, args?: string[], change?: Parameters<typeof busyboxBundle>[2]) {
  const container = await created(id, args, change);
  const start = await moat(["start", id]);
  assert.equal(start.code, 0, start.stderr);
  return container;
}

async function deleteForce(id: string): Promise<void> {
  const deleted = await moat(["delete", "--force", id]);
  assert.equal(deleted.code, 0, `${deleted.stderr}\n${workspace.daemonLog().slice(-3000)}`);
}

// ---- QEMU killed ----

test("QEMU SIGKILLed between create and start: start fails naming the container, the stand-in ends 137, delete leaves nothing", async () => {
  const id = "qemu-after-create";
  const container = await created(id);
  process.kill(qemuPid(), "SIGKILL");
  assert.equal((await container.standIn).exitStatus, 137, workspace.daemonLog().slice(-3000));
  const start = await moat(["start", id]);
  assert.notEqual(start.code, 0);
  assert.match(start.stderr, new RegExp(`container ${id}`));
  await deleteForce(id);
  await assertCensus([id]);
});

test("QEMU SIGKILLed within start (its call to the guest in flight): start fails naming the guest, the stand-in ends 137", async () => {
  const id = "qemu-in-start";
  const container = await created(id);
  const target = sandbox();
  const result = await withinStep(target, `step: startContainer ${id}`, () => moat(["start", id]), () => void process.kill(target.qemuPid, "SIGKILL"));
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, new RegExp(`${id}`));
  assert.equal((await container.standIn).exitStatus, 137, workspace.daemonLog().slice(-3000));
  await deleteForce(id);
  await assertCensus([id]);
});

test("QEMU SIGKILLed within exec: the exec fails or ends 137, the container ends 137", async () => {
  const id = "qemu-in-exec";
  const container = await started(id);
  const target = sandbox();
  const result = await withinStep(target, `step: execProcess ${id}`, () => moat(["exec", id, "echo", "never"]), () => void process.kill(target.qemuPid, "SIGKILL"));
  assert.ok(result.code === 137 || (result.code !== 0 && new RegExp(id).test(result.stderr)), `exec: ${result.code} ${result.stderr}`);
  assert.equal(result.stdout, "");
  assert.equal((await container.standIn).exitStatus, 137, workspace.daemonLog().slice(-3000));
  await deleteForce(id);
  await assertCensus([id]);
});

test("QEMU SIGKILLed within delete --force (its kill in flight): delete succeeds and leaves nothing", async () => {
  const id = "qemu-in-delete";
  const container = await started(id);
  const target = sandbox();
  const result = await withinStep(target, `step: signalProcess ${id}`, () => moat(["delete", "--force", id]), () => void process.kill(target.qemuPid, "SIGKILL"));
  assert.equal(result.code, 0, result.stderr);
  assert.equal((await container.standIn).exitStatus, 137, workspace.daemonLog().slice(-3000));
  await assertCensus([id]);
});

// ---- a guest that stops answering ----

test("a guest that stops answering (QEMU stopped): delete --force still removes it, the stand-in ends 137", async () => {
  const id = "frozen-guest";
  const container = await started(id);
  process.kill(qemuPid(), "SIGSTOP");
  const result = await moat(["delete", "--force", id]);
  assert.equal(result.code, 0, `${result.stderr}\n${workspace.daemonLog().slice(-3000)}`);
  assert.equal((await container.standIn).exitStatus, 137, workspace.daemonLog().slice(-3000));
  await assertCensus([id]);
});

// ---- the guest agent killed from inside the guest ----

test("the guest agent SIGKILLed from a container in the guest's pid namespace: the exec and the container end 137", async () => {
  const id = "agent-killed";
  const container = await started(id, ["sleep", "1000"], (spec) => {
    // No pid namespace of its own: the container sees the guest's processes, the agent among them (root in the guest has CAP_KILL).
    const linux = spec.linux as { namespaces: Array<{ type: string }> }; // the default spec has its namespaces
    spec.linux = { ...linux, namespaces: linux.namespaces.filter((namespace) => namespace.type !== "pid") };
  });
  // The agent is node running /moat/agent.js or one of its snapshots (/moat/agent.blob, /moat/agent-tcg.blob).
  const kill = "for p in /proc/[0-9]*; do if grep -q /moat/agent $p/cmdline 2>/dev/null; then kill -9 ${p#/proc/}; fi; done; sleep 1000";
  const exec = await moat(["exec", id, "sh", "-c", kill]);
  assert.ok(exec.code === 137 || (exec.code !== 0 && new RegExp(id).test(exec.stderr)), `exec: ${exec.code} ${exec.stderr}`);
  assert.equal((await container.standIn).exitStatus, 137, workspace.daemonLog().slice(-3000));
  await deleteForce(id);
  await assertCensus([id]);
});

// ---- moatd killed ----

test("moatd SIGKILLed within start: start fails naming moatd; the next moatd adopts the container, delete leaves nothing", async () => {
  const id = "moatd-in-start";
  const container = await created(id);
  const target = sandbox();
  const result = await withinStep(target, `step: startContainer ${id}`, () => moat(["start", id]), () => {
    process.kill(daemonPid(), "SIGKILL");
    process.kill(target.qemuPid, "SIGCONT");
  });
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /moatd/);
  const state = await moat(["state", id]);
  assert.equal(state.code, 0, `${state.stderr}\n${workspace.daemonLog().slice(-3000)}`);
  assert.match((JSON.parse(state.stdout) as { status: string }).status, /^(created|running)$/);
  await deleteForce(id);
  assert.equal((await container.standIn).exitStatus, 137, workspace.daemonLog().slice(-3000));
  await assertCensus([id]);
});

test("moatd SIGKILLed within delete --force: delete fails naming moatd; deleting again leaves nothing", async () => {
  const id = "moatd-in-delete";
  const container = await started(id);
  const target = sandbox();
  const result = await withinStep(target, `step: signalProcess ${id}`, () => moat(["delete", "--force", id]), () => {
    process.kill(daemonPid(), "SIGKILL");
    process.kill(target.qemuPid, "SIGCONT");
  });
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /moatd/);
  await deleteForce(id);
  assert.equal((await container.standIn).exitStatus, 137, workspace.daemonLog().slice(-3000));
  await assertCensus([id]);
});

// ---- the stand-in killed ----

test("the stand-in SIGKILLed under a running container: the container is killed with it and delete leaves nothing", async () => {
  const id = "standin-killed";
  const container = await started(id);
  const pid = Number(readFileSync(join(workspace.dir, "bundles", `${id}.pid`), "utf8"));
  process.kill(pid, "SIGKILL");
  assert.equal((await container.standIn).exitStatus, 137, workspace.daemonLog().slice(-3000));
  for (;;) {
    const state = await moat(["state", id]);
    assert.equal(state.code, 0, state.stderr);
    if ((JSON.parse(state.stdout) as { status: string }).status === "stopped") break;
    await sleep(100);
  }
  const deleted = await moat(["delete", id]);
  assert.equal(deleted.code, 0, deleted.stderr);
  await assertCensus([id]);
});

// ---- a share's source removed ----

test("a share's source removed under a running container: the container runs on, its reads fail, delete leaves nothing", async () => {
  const id = "share-removed";
  const source = join(workspace.dir, "share-source");
  mkdirSync(source);
  writeFileSync(join(source, "file"), "there\n");
  await started(id, ["sleep", "1000"], (spec) => {
    spec.mounts = [...(spec.mounts ?? []), { destination: "/data", type: "bind", source, options: ["rbind", "rw"] }];
  });
  const before = await moat(["exec", id, "cat", "/data/file"]);
  assert.equal(before.stdout, "there\n", before.stderr);
  rmSync(source, { recursive: true });
  const afterwards = await moat(["exec", id, "cat", "/data/file"]);
  assert.notEqual(afterwards.code, 0, "the file is gone");
  const alive = await moat(["exec", id, "echo", "alive"]);
  assert.equal(alive.stdout, "alive\n", alive.stderr);
  await deleteForce(id);
  await assertCensus([id]);
});

// ---- the state root's file system full ----

test("the state root's file system full: create fails naming what could not be written, and nothing is left", async (t) => {
  const small = new TestWorkspace();
  t.after(async () => {
    await small.stopDaemon();
    try {
      execFileSync("umount", [small.stateRoot]);
    } catch {
      // not mounted
    }
    small.remove();
  });
  mkdirSync(small.stateRoot, { recursive: true });
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "moat-faults-full", small.stateRoot]);
  const list = await runMoat(["--root", small.stateRoot, "list"]);
  assert.equal(list.code, 0, list.stderr);
  // Fill what is left: the file system refuses the next write.
  const filler = join(small.stateRoot, "filler");
  try {
    execFileSync("dd", ["if=/dev/zero", `of=${filler}`, "bs=64k"], { stdio: "ignore" });
  } catch {
    // dd ends with ENOSPC: the file system is full
  }
  const id = "state-full";
  const bundle = bundleFor(id, ["true"]);
  const pidFile = join(small.dir, `${id}.pid`);
  const container = underSubreaper(subreaper, ["--root", small.stateRoot, "create", "--bundle", bundle, "--pid-file", pidFile, id], pidFile, "");
  void container.standIn.catch(() => undefined); // no stand-in: the create failed
  const code = await container.created;
  assert.notEqual(code, 0);
  assert.match(container.stderr(), new RegExp(`${id}[\\s\\S]*(ENOSPC|no space left)`, "i"));
  rmSync(filler);
  // The census, less the test's own tmpfs (the state root itself): checked while it is still mounted, where the files would be.
  const census = small.census({ ids: [id], cgroupParents: [cgroupParent] });
  assert.deepEqual({ ...census, mounts: census.mounts.filter((point) => point !== small.stateRoot), daemon: undefined }, { processes: [], mounts: [], taps: [], netns: [], cgroups: [], stateRoot: [], socketDirs: [], daemon: undefined }, small.daemonLog());
  assert.deepEqual(small.qemuProcesses(), []);
});

// ---- through containerd ----

const cd = containerdForTestFile();

function explain(result: { stderr: string }): string {
  return `${result.stderr}\n--- moatd.log (tail)\n${cd.workspace.daemonLog().slice(-4000)}\n--- containerd.log (tail)\n${cd.containerd.log().slice(-4000)}`;
}

async function ctrOk(result: Promise<CliResult>): Promise<string> {
  const done = await result;
  assert.equal(done.code, 0, explain(done));
  return done.stdout;
}

async function taskStatus(id: string): Promise<string | undefined> {
  return new RegExp(`^${id}\\s+\\d+\\s+(\\w+)`, "m").exec(await ctrOk(cd.containerd.ctr(["tasks", "ls"])))?.[1];
}

/** `ctr tasks delete`: Debian's ctr (1.6) warns with the task's exit status and exits 0. */
async function deleteTask137(id: string): Promise<void> {
  const removed = await cd.containerd.ctr(["tasks", "delete", id]);
  assert.equal(removed.code, 0, explain(removed));
  assert.match(removed.stderr, /exit code 137/, explain(removed));
}

async function waitForTask(id: string, status: string): Promise<void> {
  while ((await taskStatus(id)) !== status) await sleep(100);
}

/**
 * ctr's own FIFO sets (made by ctr under --fifo-dir, removed by the ctr that deletes the task
 * through containerd): when the task went through containerd's cleanup of a dead shim instead,
 * no ctr removes them. Known (docs/security.md): they are the client's, not moat's; removed
 * here, at most `most` of them, so that the census checks the rest.
 */
function removeCtrFifos(most: number): void {
  const fifos = readdirSync(cd.containerd.fifoDir);
  assert.ok(fifos.length <= most, `at most ${most} FIFO sets of ctr's: ${fifos.join(", ")}`);
  for (const name of fifos) rmSync(join(cd.containerd.fifoDir, name), { recursive: true, force: true });
}

/** The census for the containerd workspace: containerd's tasks, containers, FIFOs, then everything else. */
async function assertContainerdCensus(ids: string[]): Promise<void> {
  await cd.workspace.assertNothingLeftWithin(30_000, DAEMON_FILES);
  await cd.containerd.assertNothingLeft();
  cd.workspace.assertCensusClean({ ids });
}

function cdQemuPid(): number {
  const lines = cd.workspace.qemuProcesses();
  assert.equal(lines.length, 1, `one QEMU: ${lines.join("; ")}`);
  return pidOf(lines[0]);
}

/** The containerd workspace's one sandbox, for withinStep. */
function cdSandbox(): StepTarget {
  return { qemuPid: cdQemuPid(), log: () => cd.workspace.daemonLog() };
}

test("containerd: QEMU SIGKILLed within a task exec: the exec fails or ends 137, the task exits 137, events in order, nothing left", async () => {
  const id = "cd-qemu-in-exec";
  const events = await cd.containerd.watchEvents();
  await ctrOk(cd.containerd.run(["-d", BUSYBOX_IMAGE, id, "sleep", "1000"]));
  const target = cdSandbox();
  const exec = () => cd.containerd.ctr(["tasks", "exec", "--exec-id", "doomed", "--fifo-dir", cd.containerd.fifoDir, id, "echo", "never"]);
  const result = await withinStep(target, `step: execProcess ${id}`, exec, () => void process.kill(target.qemuPid, "SIGKILL"));
  assert.ok(result.code === 137 || (result.code !== 0 && result.stderr.length > 0), `exec: ${result.code} ${explain(result)}`);
  assert.equal(result.stdout, "");

  await waitForTask(id, "STOPPED");
  await deleteTask137(id);
  await ctrOk(cd.containerd.ctr(["containers", "delete", id]));
  const topics = await events.stop();
  assert.deepEqual(topics.filter((topic) => ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"].includes(topic)), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"], topics.join("\n"));
  removeCtrFifos(2); // the task's and the failed exec's
  await assertContainerdCensus([id]);
});

test("containerd: the task's relay SIGKILLed: containerd cleans the dead shim up, the task exits 137, events in order, nothing left", async () => {
  const id = "cd-relay-killed";
  const events = await cd.containerd.watchEvents();
  await ctrOk(cd.containerd.run(["-d", BUSYBOX_IMAGE, id, "sleep", "1000"]));
  const relays = cd.containerd.strayProcesses().filter((line) => line.includes("containerd-shim-moat-v2") && line.includes(`-id ${id} `));
  assert.equal(relays.length, 1, `one relay: ${cd.containerd.strayProcesses().join("; ")}`);
  process.kill(pidOf(relays[0]), "SIGKILL");
  // containerd sees its shim's connection close, runs `shim delete`, and publishes the exit.
  while ((await cd.containerd.ctr(["tasks", "ls", "-q"])).stdout.includes(id)) await sleep(100);
  await ctrOk(cd.containerd.ctr(["containers", "delete", id]));
  // containerd publishes the exit after its cleanup of the dead shim: wait for it (bounded by the test's timeout).
  while (!events.current().some((line) => line.includes("/tasks/delete"))) await sleep(100);
  const lines = await events.stopLines();
  const topics = lines.map((line) => line.split(" ").find((word) => word.startsWith("/tasks/")) ?? "");
  // In order; the exit comes twice (known, docs/security.md): moatd, which outlives the relay,
  // publishes it, and containerd publishes its own after cleaning up the dead shim.
  assert.deepEqual(topics.filter((topic, index) => topic !== "/tasks/exit" || topics.indexOf(topic) === index), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"], lines.join("\n"));
  for (const line of lines.filter((line) => line.includes("/tasks/exit"))) assert.match(line, /"exit_status":137/, lines.join("\n"));
  removeCtrFifos(1); // the task's
  await assertContainerdCensus([id]);
});

test("containerd: containerd SIGKILLed within a task exec: restarted, it still has the task; delete leaves nothing", async () => {
  const id = "cd-containerd-in-exec";
  await ctrOk(cd.containerd.run(["-d", BUSYBOX_IMAGE, id, "sleep", "1000"]));
  const target = cdSandbox();
  const exec = () => cd.containerd.ctr(["tasks", "exec", "--exec-id", "orphaned", "--fifo-dir", cd.containerd.fifoDir, id, "echo", "orphaned"]);
  const result = await withinStep(target, `step: execProcess ${id}`, exec, async () => {
    await cd.containerd.stop("SIGKILL");
    process.kill(target.qemuPid, "SIGCONT");
  });
  assert.notEqual(result.code, 0, "ctr lost containerd");
  await cd.containerd.start();
  assert.equal(await taskStatus(id), "RUNNING", explain({ stderr: "" }));
  const again = await cd.containerd.ctr(["tasks", "exec", "--exec-id", "again", "--fifo-dir", cd.containerd.fifoDir, id, "echo", "again"]);
  assert.equal(again.stdout, "again\n", explain(again));
  await ctrOk(cd.containerd.ctr(["tasks", "kill", "--signal", "SIGKILL", id]));
  await waitForTask(id, "STOPPED");
  await deleteTask137(id);
  await ctrOk(cd.containerd.ctr(["containers", "delete", id]));
  await assertContainerdCensus([id]);
});

// Found here: the relay outlived its containerd (by an hour, once): only containerd's Shutdown
// ended it. It now stays while its task exists (a restarted containerd reconnects to it) and
// ends once the task is gone with no containerd connected (task-relay.c).
test("containerd: containerd SIGKILLed, then its task deleted: the relay lives while the task does, then ends; restarted, containerd cleans up, nothing left", async () => {
  const id = "cd-containerd-gone";
  await ctrOk(cd.containerd.run(["-d", BUSYBOX_IMAGE, id, "sleep", "1000"]));
  const relays = () => cd.containerd.strayProcesses().filter((line) => line.includes("containerd-shim-moat-v2") && line.includes(`-id ${id} `));
  await cd.containerd.stop("SIGKILL");
  // Nothing has changed for the task: the relay stays for a containerd that comes back.
  assert.equal(relays().length, 1, `one relay once containerd is gone: ${cd.containerd.strayProcesses().join("; ")}`);
  const deleted = await runMoat(["--root", cd.workspace.stateRoot, "delete", "--force", id]);
  assert.equal(deleted.code, 0, explain(deleted));
  // Bounded so that a relay that never ends fails here, with what is left, not at the file's timeout.
  const deadline = Date.now() + 60_000;
  while (relays().length > 0) {
    assert.ok(Date.now() < deadline, `the relay still runs 60 s after its task was deleted with containerd gone: ${relays().join("; ")}`);
    await sleep(100);
  }
  // Restarted, containerd finds the task's shim gone and cleans it up (shim delete).
  await cd.containerd.start();
  while ((await cd.containerd.ctr(["tasks", "ls", "-q"])).stdout.includes(id)) await sleep(100);
  await ctrOk(cd.containerd.ctr(["containers", "delete", id]));
  removeCtrFifos(1); // the task's: its ctr ended with `run -d`, and no ctr deletes the task
  await assertContainerdCensus([id]);
});

// Found here: the exec's pid holder, started by the moatd that died, was left in the task's
// cgroup, and the task delete failed with EBUSY (host-cgroup.ts now ends orphaned holders).
test("containerd: moatd SIGKILLed within a task exec: the exec fails, the relay's next moatd serves the task, delete leaves nothing", async () => {
  const id = "cd-moatd-in-exec";
  await ctrOk(cd.containerd.run(["-d", BUSYBOX_IMAGE, id, "sleep", "1000"]));
  const target = cdSandbox();
  const exec = () => cd.containerd.ctr(["tasks", "exec", "--exec-id", "cut", "--fifo-dir", cd.containerd.fifoDir, id, "echo", "cut"]);
  const result = await withinStep(target, `step: execProcess ${id}`, exec, () => {
    const daemons = cd.workspace.daemonProcesses();
    assert.equal(daemons.length, 1);
    process.kill(pidOf(daemons[0]), "SIGKILL");
    process.kill(target.qemuPid, "SIGCONT");
  });
  // An exec is not safe to send again: the relay answers UNAVAILABLE, or the exec ran and its output came.
  assert.ok(result.code !== 0 || result.stdout === "cut\n", `exec: ${result.code} ${explain(result)}`);
  const after = await cd.containerd.ctr(["tasks", "exec", "--exec-id", "after", "--fifo-dir", cd.containerd.fifoDir, id, "echo", "served"]);
  assert.equal(after.stdout, "served\n", explain(after));
  await ctrOk(cd.containerd.ctr(["tasks", "kill", "--signal", "SIGKILL", id]));
  await waitForTask(id, "STOPPED");
  await deleteTask137(id);
  await ctrOk(cd.containerd.ctr(["containers", "delete", id]));
  await assertContainerdCensus([id]);
});
