// containerd-shim-moat-v2 driven by a real containerd and `ctr` (issue 4): tasks in their own
// VMs, their output and exit codes, events in the order containerd requires, and nothing left
// afterwards (no QEMU, mount, task state or FIFO).
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createConnection } from "node:net";
import { test } from "node:test";
import { containerdTask } from "../../src/shared/protocol/index.js";
import { MoatError } from "../../src/shared/errors.js";
import { Code, connectUnix, TtrpcClient } from "../../src/shared/ttrpc/index.js";
import { MisbehavingTaskServer, type Behaviour } from "./failpoint/misbehaving-task-server.js";
import { BUSYBOX_IMAGE } from "./harness/oci-image.js";
import { containerdForTestFile, NAMESPACE } from "./harness/containerd.js";
import { repoRoot, runCommand, runMoat } from "./harness/moat-cli.js";

const { workspace, containerd } = containerdForTestFile();

const assertNothingLeft = () => containerd.assertNothingLeft();

function explain(result: { stderr: string }): string {
  return `${result.stderr}\n--- moatd.log\n${workspace.daemonLog()}\n--- containerd.log (tail)\n${containerd.log().slice(-4000)}`;
}

test("ctr run --rm: the task's output, and its exit code 0", async () => {
  const result = await containerd.run(["--rm", BUSYBOX_IMAGE, "echo-1", "echo", "hello from moat"]);
  assert.equal(result.code, 0, explain(result));
  assert.equal(result.stdout, "hello from moat\n");
  await assertNothingLeft();
});

test("ctr run --rm: stdout and stderr apart, stdin, a non-zero exit code", async () => {
  const result = await containerd.run(["--rm", BUSYBOX_IMAGE, "exit-3", "sh", "-c", "read line; echo got $line; echo to-err >&2; exit 3"], { stdin: "hello\n" });
  assert.equal(result.code, 3, explain(result));
  assert.equal(result.stdout, "got hello\n");
  assert.equal(result.stderr, "to-err\n");
  await assertNothingLeft();
});

async function ok(result: Promise<{ code: number | null; stdout: string; stderr: string }>): Promise<string> {
  const done = await result;
  assert.equal(done.code, 0, explain(done));
  return done.stdout;
}

test("a running task: exec, ps, pause and resume, kill --all, delete; events in containerd's order", async () => {
  const events = await containerd.watchEvents();
  await ok(containerd.run(["-d", BUSYBOX_IMAGE, "long-1", "sleep", "1000"]));
  const listed = await ok(containerd.ctr(["tasks", "ls"]));
  assert.match(listed, /long-1\s+\d+\s+RUNNING/);

  const exec = await containerd.ctr(["tasks", "exec", "--exec-id", "e1", "long-1", "sh", "-c", "read line; echo exec got $line; echo exec-err >&2; exit 5"], { stdin: "hi\n" });
  assert.equal(exec.code, 5, explain(exec));
  assert.equal(exec.stdout, "exec got hi\n");
  assert.equal(exec.stderr, "exec-err\n");

  const ps = await ok(containerd.ctr(["tasks", "ps", "long-1"]));
  assert.match(ps, /^PID\s+INFO\n\d+\s/, "the task's host pid (its moat-task-pid holder)");

  await updateTask("long-1", { memory: { limit: 67108864 } });
  const metrics = await ok(containerd.ctr(["tasks", "metrics", "--format", "json", "long-1"]));
  const parsed = JSON.parse(metrics) as { cpu?: { usage_usec?: number }; pids?: { current?: number }; memory?: { usage?: number; usage_limit?: number } };
  assert.ok((parsed.cpu?.usage_usec ?? 0) > 0, `cpu usage from the guest's cgroup: ${metrics}`);
  assert.ok((parsed.pids?.current ?? 0) >= 1, `pids from the guest's cgroup: ${metrics}`);
  assert.equal(parsed.memory?.usage_limit, 67108864, `the updated memory limit, from the guest's cgroup: ${metrics}`);

  await ok(containerd.ctr(["tasks", "pause", "long-1"]));
  assert.match(await ok(containerd.ctr(["tasks", "ls"])), /long-1\s+\d+\s+PAUSED/);
  await ok(containerd.ctr(["tasks", "resume", "long-1"]));
  assert.match(await ok(containerd.ctr(["tasks", "ls"])), /long-1\s+\d+\s+RUNNING/);

  const task = containerdTask.Task.method;
  assert.equal(await failsWith((client) => client.call(task.delete, { id: "long-1" }, { timeoutMs: 10_000 })), Code.FAILED_PRECONDITION, "Delete of a running task");
  assert.equal(await failsWith((client) => client.call(task.checkpoint, { id: "long-1", path: "/tmp/x" }, { timeoutMs: 10_000 })), Code.UNIMPLEMENTED, "Checkpoint");
  await ok(containerd.ctr(["tasks", "kill", "--all", "--signal", "SIGKILL", "long-1"]));
  for (;;) {
    if (/long-1\s+\d+\s+STOPPED/.test(await ok(containerd.ctr(["tasks", "ls"])))) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(await failsWith((client) => client.call(task.kill, { id: "long-1", signal: 9 }, { timeoutMs: 10_000 })), Code.NOT_FOUND, "Kill of a finished process: already finished");
  await ok(containerd.ctr(["tasks", "delete", "long-1"]));
  await ok(containerd.ctr(["containers", "delete", "long-1"]));
  const topics = await events.stop();
  assert.deepEqual(topics, [
    "/tasks/create",
    "/tasks/start",
    "/tasks/exec-added",
    "/tasks/exec-started",
    "/tasks/exit", // the exec's
    "/tasks/paused",
    "/tasks/resumed",
    "/tasks/exit", // init's, 137
    "/tasks/delete",
  ]);
  await assertNothingLeft();
});

test("two tasks at once, each in its own VM", async () => {
  const [first, second] = await Promise.all([
    containerd.run(["--rm", BUSYBOX_IMAGE, "pair-1", "sh", "-c", "echo one; exit 1"]),
    containerd.run(["--rm", BUSYBOX_IMAGE, "pair-2", "sh", "-c", "echo two; exit 2"]),
  ]);
  assert.equal(first.code, 1, explain(first));
  assert.equal(first.stdout, "one\n");
  assert.equal(second.code, 2, explain(second));
  assert.equal(second.stdout, "two\n");
  await assertNothingLeft();
});

/** A ttrpc client on moatd's Task socket, as containerd has one, for calls ctr cannot make. */
async function withTaskClient<T>(use: (client: TtrpcClient) => Promise<T>): Promise<T> {
  const client = new TtrpcClient(await connectUnix(join(workspace.stateRoot, "containerd-task.sock")), "test");
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

/** Task.Update as the CRI plugin sends it (ctr 1.6 has no `tasks update`). */
function updateTask(id: string, resources: object): Promise<unknown> {
  const value = new TextEncoder().encode(JSON.stringify(resources));
  return withTaskClient((client) => client.call(containerdTask.Task.method.update, { id, resources: { typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources", value } }, { timeoutMs: 60_000 }));
}

/** The status code a Task call fails with. */
async function failsWith(call: (client: TtrpcClient) => Promise<unknown>): Promise<Code> {
  return withTaskClient(async (client) => {
    try {
      await call(client);
    } catch (error) {
      if (error instanceof MoatError) return error.status;
      throw error;
    }
    throw new Error("the call succeeded");
  });
}

/** Waits until `ctr tasks ls` shows the task in `status`. */
/** kill(pid, 0), as containerd's clients ask whether a task's pid exists. */
function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitForTask(id: string, status: string): Promise<void> {
  const pattern = new RegExp(`^${id}\\s+\\d+\\s+${status}`, "m");
  while (!pattern.test(await ok(containerd.ctr(["tasks", "ls"])))) await new Promise((resolve) => setTimeout(resolve, 100));
}

async function removeTask(id: string): Promise<void> {
  await ok(containerd.ctr(["tasks", "delete", id]));
  await ok(containerd.ctr(["containers", "delete", id]));
}

test("containerd restarted under a running task: the task is still there, served, and deletable", async () => {
  await ok(containerd.run(["-d", BUSYBOX_IMAGE, "restart-1", "sleep", "1000"]));
  await containerd.stop("SIGKILL");
  await containerd.start();
  await waitForTask("restart-1", "RUNNING");
  const exec = await containerd.ctr(["tasks", "exec", "--exec-id", "after-restart", "restart-1", "echo", "still here"]);
  assert.equal(exec.code, 0, explain(exec));
  assert.equal(exec.stdout, "still here\n");
  await ok(containerd.ctr(["tasks", "kill", "--signal", "SIGKILL", "restart-1"]));
  await waitForTask("restart-1", "STOPPED");
  await removeTask("restart-1");
  await assertNothingLeft();
});

test("QEMU killed under a running task: the task exits 137, /tasks/exit is published, nothing is left", async () => {
  const events = await containerd.watchEvents();
  await ok(containerd.run(["-d", BUSYBOX_IMAGE, "crash-1", "sleep", "1000"]));
  const qemu = workspace.qemuProcesses();
  assert.equal(qemu.length, 1, qemu.join("\n"));
  process.kill(Number(qemu[0]?.split(" ")[0]), "SIGKILL"); // the one QEMU: this task's sandbox
  await waitForTask("crash-1", "STOPPED");
  await removeTask("crash-1");
  const lines = await events.stopLines();
  const exit = lines.find((line) => line.includes("/tasks/exit"));
  assert.match(exit ?? "", /"exit_status":137|ExitStatus:137|exit_status:137/, lines.join("\n"));
  await assertNothingLeft();
});

test("a task over its memory limit is OOM-killed: exit 137, and /tasks/oom comes before its /tasks/exit", async () => {
  const events = await containerd.watchEvents();
  // The shell itself grows (a string doubled until the cgroup's 32 MiB are gone), so the OOM
  // killer's victim is the task's init.
  const result = await containerd.run(["--rm", "--memory-limit", String(32 * 1024 * 1024), BUSYBOX_IMAGE, "oom-1", "sh", "-c", "x=x; while :; do x=$x$x; done"]);
  assert.equal(result.code, 137, explain(result));
  const lines = await events.stopLines();
  const topics = lines.map((line) => line.split(" ").find((word) => word.startsWith("/tasks/")));
  assert.deepEqual(topics, ["/tasks/create", "/tasks/start", "/tasks/oom", "/tasks/exit", "/tasks/delete"], lines.join("\n"));
  assert.match(lines[2] ?? "", /oom-1/, "TaskOOM names the container");
  assert.match(lines[3] ?? "", /"exit_status":137|ExitStatus:137|exit_status:137/, lines.join("\n"));
  await assertNothingLeft();
});

test("moat install --kata-compat: io.containerd.kata.v2 runs on moat", async () => {
  const installed = await runMoat(["install", "--prefix", containerd.installBin, "--kata-compat"]);
  assert.equal(installed.code, 0, installed.stderr);
  assert.match(installed.stdout, /containerd-shim-kata-v2 -> .*containerd-shim-moat-v2/);
  const result = await containerd.ctr(["run", "--rm", "--runtime", "io.containerd.kata.v2", "--fifo-dir", containerd.fifoDir, BUSYBOX_IMAGE, "kata-1", "uname", "-r"]);
  assert.equal(result.code, 0, explain(result));
  assert.match(result.stdout, /-moat\n$/, "the task ran under moat's guest kernel");
  await assertNothingLeft();
});

test("runtime options: ConfigPath (ctr run --runtime-config-path) sizes the task's sandbox", async () => {
  const config = workspace.configFile("small-sandbox", "[hypervisor.qemu]\ndefault_memory = 256\n");
  const result = await containerd.run(["--rm", "--runtime-config-path", config, BUSYBOX_IMAGE, "small-1", "sh", "-c", "grep MemTotal /proc/meminfo"]);
  assert.equal(result.code, 0, explain(result));
  const totalKiB = Number(/MemTotal:\s+(\d+) kB/.exec(result.stdout)?.[1]);
  assert.ok(totalKiB > 128 * 1024 && totalKiB <= 256 * 1024, `guest memory from the task's configuration: ${result.stdout}`);
  await assertNothingLeft();
});

test("ctr run --log-uri file://: the task's output goes to the file", async () => {
  const logFile = join(workspace.dir, "task.log");
  const result = await containerd.run(["--rm", "--log-uri", `file://${logFile}`, BUSYBOX_IMAGE, "logged-1", "sh", "-c", "echo to-log; echo err-to-log >&2"]);
  assert.equal(result.code, 0, explain(result));
  assert.equal(readFileSync(logFile, "utf8").split("\n").sort().join("\n"), ["", "err-to-log", "to-log"].join("\n"));
  await assertNothingLeft();
});

test("ctr run --log-uri binary://: a logging program gets the task's stdout on fd 3 and stderr on fd 4", async () => {
  const logger = join(workspace.dir, "logger.sh");
  const logDir = join(workspace.dir, "binary-logs");
  writeFileSync(logger, '#!/bin/sh\n# $1 $2: dir DIR\nmkdir -p "$2"; echo "$CONTAINER_NAMESPACE/$CONTAINER_ID" > "$2/owner"\nexec 5>&-\ncat <&3 > "$2/out" & cat <&4 > "$2/err" & wait\n');
  chmodSync(logger, 0o755);
  const result = await containerd.run(["--rm", "--log-uri", `binary://${logger}?dir=${logDir}`, BUSYBOX_IMAGE, "binlog-1", "sh", "-c", "echo to-out; echo to-err >&2"]);
  assert.equal(result.code, 0, explain(result));
  assert.equal(readFileSync(join(logDir, "owner"), "utf8"), `${NAMESPACE}/binlog-1\n`);
  // The logger writes on its own time; it has all the output once the task has exited.
  const logged = (name: string) => readFileSync(join(logDir, name), "utf8");
  while (!logged("out") || !logged("err")) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(logged("out"), "to-out\n");
  assert.equal(readFileSync(join(logDir, "err"), "utf8"), "to-err\n");
  await assertNothingLeft();
});

/** The socket containerd dials for a task: the relay's, as `start` wrote it to the bundle. */
function taskAddress(id: string): string {
  const address = readFileSync(join(containerd.dir, "state", "io.containerd.runtime.v2.task", NAMESPACE, id, "address"), "utf8");
  return address.trim().replace(/^unix:\/\//, "");
}

test("moatd killed under a running task: the relay keeps containerd's connection, a restarted moatd serves the task on", async () => {
  const logFile = join(workspace.dir, "ticker.log");
  const ticks = () => (readFileSync(logFile, "utf8").match(/^tick \d+$/gm) ?? []).length;
  await ok(containerd.run(["-d", "--log-uri", `file://${logFile}`, BUSYBOX_IMAGE, "survivor-1", "sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]));
  const relaySocket = taskAddress("survivor-1");
  assert.match(relaySocket, /\/task-[0-9a-f]{16}\.sock$/, "containerd dials the task's relay, not moatd");
  // A Wait in flight when moatd dies: the relay sends it again to the next moatd.
  const waitClient = new TtrpcClient(await connectUnix(relaySocket), "test-wait");
  const task = containerdTask.Task.method;
  const waited = waitClient.call(task.wait, { id: "survivor-1" }, { timeoutMs: 600_000 });
  // An exec running when moatd dies (no stdio): the next moatd adopts it and reports its exit.
  const spec = new TextEncoder().encode(JSON.stringify({ args: ["sh", "-c", "sleep 4; exit 6"], cwd: "/", env: ["PATH=/bin:/usr/bin"], user: { uid: 0, gid: 0 } }));
  await waitClient.call(task.exec, { id: "survivor-1", execId: "across", spec: { typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", value: spec } }, { timeoutMs: 60_000 });
  const execPid = (await waitClient.call(task.start, { id: "survivor-1", execId: "across" }, { timeoutMs: 60_000 })).pid;
  const execWaited = waitClient.call(task.wait, { id: "survivor-1", execId: "across" }, { timeoutMs: 600_000 });
  // Bounded waits: what never comes fails here with the logs, not at the file's timeout.
  const waitFor = async (done: () => Promise<boolean> | boolean, what: string) => {
    const deadline = Date.now() + 120_000;
    while (!(await done())) {
      assert.ok(Date.now() < deadline, `${what} within 120 s\n${explain({ stderr: `moatd: ${workspace.daemonProcesses().join("; ")}` })}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  try {
    await waitFor(() => ticks() >= 2, "the task prints");
    // The task's pid (its moat-task-pid holder) and the exec's outlive moatd, and are the same to the next one.
    const taskPid = Number(/^survivor-1\s+(\d+)/m.exec(await ok(containerd.ctr(["tasks", "ls"])))?.[1]);
    assert.ok(pidExists(taskPid) && pidExists(execPid), "the task's and the exec's pids exist");
    const killed = workspace.daemonProcesses().map((line) => Number(line.split(" ")[0]));
    assert.equal(killed.length, 1, "one moatd serves the workspace");
    for (const pid of killed) process.kill(pid, "SIGKILL");
    const ticksAtKill = ticks();
    // The relay finds moatd gone and starts another, which adopts the sandbox and the task.
    await waitFor(() => workspace.daemonProcesses().some((line) => !killed.includes(Number(line.split(" ")[0]))), "the relay starts moatd again");
    await waitFor(() => ticks() >= ticksAtKill + 3, "the task's output flows on into its log");
    assert.equal((await execWaited).exitStatus, 6, "the exec running across the restart reports its exit");
    assert.equal(pidExists(execPid), false, "the exec's pid, from the moatd before, is gone with its exit");
    await waitClient.call(task.delete, { id: "survivor-1", execId: "across" }, { timeoutMs: 60_000 });
    assert.match(await ok(containerd.ctr(["tasks", "ls"])), new RegExp(`survivor-1\\s+${taskPid}\\s+RUNNING`), "the same pid after the restart");
    assert.match(containerd.log(), /moat task relay survivor-1: moatd closed its connection/, "the relay's lines reach containerd's log (the bundle's log FIFO)");
    const exec = await containerd.ctr(["tasks", "exec", "--exec-id", "after-moatd", "survivor-1", "sh", "-c", "echo exec after restart; exit 4"]);
    assert.equal(exec.code, 4, explain(exec));
    assert.equal(exec.stdout, "exec after restart\n");
    await ok(containerd.ctr(["tasks", "kill", "--signal", "SIGKILL", "survivor-1"]));
    assert.equal((await waited).exitStatus, 137, "the Wait sent before moatd died answers with the exit");
    assert.equal(pidExists(taskPid), false, "the task's pid is gone once Wait has answered");
  } finally {
    waitClient.close();
  }
  await waitForTask("survivor-1", "STOPPED");
  await removeTask("survivor-1");
  await waitFor(() => containerd.strayProcesses().length === 0, "the relay exits after containerd's Shutdown");
  assert.equal(existsSync(relaySocket), false, "the relay removed its socket");
  await assertNothingLeft();
});

test("shim delete stops a relay containerd never shut down and removes its socket", async () => {
  // As after a setup that crashed between start and Create: a relay, and no task in moatd.
  const bundle = join(workspace.dir, "lost-bundle");
  mkdirSync(bundle);
  const shim = join(repoRoot, "dist", "bin", "containerd-shim-moat-v2");
  const args = ["-namespace", NAMESPACE, "-address", containerd.socket, "-id", "lost-1"];
  const started = await runCommand(shim, [...args, "start"], { cwd: bundle, env: { ...containerd.env(), TTRPC_ADDRESS: `${containerd.socket}.ttrpc` } });
  assert.equal(started.code, 0, started.stderr);
  const relaySocket = started.stdout.trim().replace(/^unix:\/\//, "");
  assert.ok(existsSync(relaySocket), `the relay listens on ${relaySocket}`);
  assert.equal(containerd.strayProcesses().length, 1, "the relay runs");
  const deleted = await runCommand(shim, [...args, "-bundle", bundle, "delete"], { cwd: bundle, env: containerd.env() });
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.equal(existsSync(relaySocket), false, "delete removed the relay's socket");
  assert.deepEqual(containerd.strayProcesses(), [], "delete stopped the relay");
  rmSync(bundle, { recursive: true });
  await assertNothingLeft();
});

test("the relay: a request in flight when moatd hangs up is sent again if safe, else answered UNAVAILABLE; garbage from either side closes that side", async () => {
  await workspace.stopDaemon(); // the misbehaving server takes moatd's place on its Task socket
  mkdirSync(workspace.stateRoot, { recursive: true, mode: 0o711 }); // as moatd makes it, when this test runs alone
  // The first Kill and the first Pids are hung up on, the first Stats gets garbage back.
  const misbehaviours = new Map<string, Behaviour>([["Kill", "hang-up"], ["Pids", "hang-up"], ["Stats", "garbage"]]);
  const fake = new MisbehavingTaskServer(join(workspace.stateRoot, "containerd-task.sock"), (method) => {
    const behaviour = misbehaviours.get(method) ?? "answer";
    misbehaviours.delete(method);
    return behaviour;
  });
  /** The connection (counted by the fake) each request of `method` came on. */
  const connectionsOf = (method: string) => fake.received.flatMap((methods, connection) => methods.filter((name) => name === method).map(() => connection));
  await fake.listen();
  const bundle = join(workspace.dir, "relay-bundle");
  mkdirSync(bundle);
  // The task's entry under the state root, as moatd makes it: a relay with containerd gone ends once its task's is gone.
  const taskDir = join(workspace.stateRoot, "relay-1");
  mkdirSync(taskDir);
  const shim = join(repoRoot, "dist", "bin", "containerd-shim-moat-v2");
  try {
    const started = await runCommand(shim, ["-namespace", NAMESPACE, "-address", containerd.socket, "-id", "relay-1", "start"], { cwd: bundle, env: { ...containerd.env(), TTRPC_ADDRESS: `${containerd.socket}.ttrpc` } });
    assert.equal(started.code, 0, started.stderr);
    const relaySocket = started.stdout.trim().replace(/^unix:\/\//, "");
    const task = containerdTask.Task.method;
    const client = new TtrpcClient(await connectUnix(relaySocket), "test");
    const failure = (call: Promise<unknown>) => call.then(() => assert.fail("the call succeeded"), (error: unknown) => error as MoatError); // the client rejects with MoatError only
    try {
      await client.call(task.state, { id: "relay-1" }, { timeoutMs: 30_000 });
      const killed = await failure(client.call(task.kill, { id: "relay-1", signal: 9 }, { timeoutMs: 30_000 }));
      assert.equal(killed.status, Code.UNAVAILABLE, String(killed));
      assert.match(killed.message, /Task\.Kill: moatd went away while serving it; not sent again/);
      await client.call(task.pids, { id: "relay-1" }, { timeoutMs: 30_000 }); // hung up on, then sent again
      const pids = connectionsOf("Pids");
      assert.equal(pids.length, 2, "Pids was sent again");
      assert.ok(pids[1]! > pids[0]!, "on the next connection"); // two, checked above
      const garbled = await failure(client.call(task.stats, { id: "relay-1" }, { timeoutMs: 30_000 }));
      assert.equal(garbled.status, Code.UNAVAILABLE, String(garbled));
      assert.match(garbled.message, /Task\.Stats: moatd sent a malformed frame/);
      await client.call(task.state, { id: "relay-1" }, { timeoutMs: 30_000 }); // the next request dials again
      assert.ok(connectionsOf("State").at(-1)! > connectionsOf("Stats")[0]!, "on a new connection"); // both were sent
    } finally {
      client.close();
    }
    // Garbage from containerd's side: a length over 4 MiB, a request that is not protobuf.
    for (const garbage of [[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0], [0, 0, 0, 2, 0, 0, 0, 1, 1, 0, 0xff, 0xff]]) {
      const socket = createConnection(relaySocket);
      socket.on("error", () => undefined);
      const closed = new Promise((resolve) => socket.once("close", resolve));
      socket.write(Buffer.from(garbage));
      await closed;
    }
    const after = new TtrpcClient(await connectUnix(relaySocket), "test");
    try {
      await after.call(task.state, { id: "relay-1" }, { timeoutMs: 30_000 }); // still serving
      await after.call(task.shutdown, { id: "relay-1" }, { timeoutMs: 30_000 }); // answered by the relay, which then exits
    } finally {
      after.close();
    }
    const deadline = Date.now() + 10_000;
    while ((existsSync(relaySocket) || containerd.strayProcesses().length > 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(existsSync(relaySocket), false, "the relay removed its socket at Shutdown");
    assert.deepEqual(containerd.strayProcesses(), [], "the relay exited at Shutdown");
  } finally {
    await fake.close();
    rmSync(bundle, { recursive: true, force: true });
    rmSync(taskDir, { recursive: true, force: true });
  }
  await assertNothingLeft();
});

test("a systemd-form cgroupsPath on a host without systemd: the sandbox's QEMU in that cgroup made in cgroupfs, one log line, all removed", async () => {
  // What containerd's CRI plugin writes with SystemdCgroup = true (the pod's parent is a slice).
  const cgroupsPath = "moattest-pod1.slice:cri-containerd:cg-1";
  const expanded = "/moattest.slice/moattest-pod1.slice/cri-containerd-cg-1.scope";
  const hierarchies = readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((line) => / - cgroup2? /.test(line)).map((line) => line.split(" ")[4] ?? "");
  await ok(containerd.run(["-d", "--cgroup", cgroupsPath, BUSYBOX_IMAGE, "cg-1", "sleep", "1000"]));
  const pid = Number(/^cg-1\s+(\d+)/m.exec(await ok(containerd.ctr(["tasks", "ls"])))?.[1]);
  const membership = readFileSync(`/proc/${pid}/cgroup`, "utf8");
  for (const line of membership.trim().split("\n")) assert.ok(line.endsWith(`:${expanded}`), `QEMU ${pid} in ${expanded} in every hierarchy:\n${membership}`);
  // In the guest, crun made the same cgroup for the container (cgroupfs: the guest has no systemd).
  const guest = await ok(containerd.ctr(["tasks", "exec", "--exec-id", "cg-look", "cg-1", "cat", "/proc/self/cgroup"]));
  assert.match(guest, new RegExp(`^0::${expanded.replaceAll(".", "\\.")}$`, "m"));
  assert.equal(workspace.daemonLog().split("\n").filter((line) => line.includes("not run by systemd")).length, 1, workspace.daemonLog());
  await ok(containerd.ctr(["tasks", "kill", "--signal", "SIGKILL", "cg-1"]));
  await waitForTask("cg-1", "STOPPED");
  await removeTask("cg-1");
  for (const hierarchy of hierarchies) assert.equal(existsSync(join(hierarchy, "moattest.slice")), false, `${hierarchy}/moattest.slice removed`);
  await assertNothingLeft();
});
