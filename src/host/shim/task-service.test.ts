import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdirSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { containerdEventService, containerdTask, containerdTypes } from "../../shared/protocol/index.js";
import { Code, TtrpcServer, type CallContext } from "../../shared/ttrpc/index.js";
import { listen } from "../../../test/support/unix-socket.js";
import { rejectsWithCode } from "../../../test/support/assertions.js";
import type { Adopter, ContainerOwner, OomListener, ProcessStdio, StdioFactory, StdioInput } from "../daemon/index.js";
import { taskService, type TaskDaemon } from "./task-service.js";

// containerd's end: an Events/Forward server that records each topic.
const containerd = await listen();
const topics: string[] = [];
const events = new TtrpcServer();
events.register(containerdEventService.Events, {
  async forward(request) {
    topics.push(request.envelope?.topic ?? "");
    return {};
  },
});
const connections: Socket[] = [];
containerd.server.on("connection", (socket: Socket) => {
  connections.push(socket);
  events.serve(socket, "containerd");
});
after(() => {
  for (const socket of connections) socket.destroy();
  containerd.close();
});

/** A bundle as containerd-shim-moat-v2 start leaves it. */
function bundle(id: string): string {
  const dir = join(dirname(containerd.path), id);
  mkdirSync(dir);
  writeFileSync(join(dir, "moat-shim"), `id=${id}\nnamespace=test\nttrpc_address=${containerd.path}\n`);
  return dir;
}

const noInput = { hello: () => undefined, stdin: async () => undefined, stdinEnd: async () => undefined, signal: () => undefined, resize: async () => undefined };

/** A daemon whose container exits during start, before start has answered; it keeps the owner's record as the real one does. */
class ExitsDuringStart implements Partial<TaskDaemon> {
  stdio: ProcessStdio | undefined;
  status: "created" | "running" | "stopped" = "created";
  record: object | undefined;
  adopter: Adopter | undefined;
  registerAdopter(_frontEnd: string, adopter: Adopter): void {
    this.adopter = adopter;
  }
  async setOwnerRecord(_id: string, record: object): Promise<void> {
    this.record = record;
  }
  async exec(): Promise<string> {
    return "";
  }
  async create(_id: string, _bundle: string, stdio?: StdioFactory, _config?: unknown, owner?: ContainerOwner): Promise<string> {
    this.record = owner?.record;
        this.stdio = await stdio?.(noInput, "fake");
    return "";
  }
  async joinHostCgroup(): Promise<void> {}
  async start(): Promise<void> {
    this.status = "stopped";
    await this.stdio?.sendExit(3);
  }
  state() {
    return { id: "", status: this.status, pid: 0, bundle: "", created: "", exitStatus: 3 };
  }
  async delete(): Promise<void> {}
  onOom(): void {}
}

/** kill(pid, 0), as containerd's clients ask whether a task's pid exists. */
function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pid names a moat-task-pid holder (not some other process). */
function isHolder(pid: number): boolean {
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0]?.endsWith("/moat-task-pid") === true;
}

const context: CallContext = { signal: new AbortController().signal, afterResponse: () => undefined };

async function topicsAfter(count: number): Promise<string[]> {
  while (topics.length < count) await new Promise((resolve) => setTimeout(resolve, 10));
  return [...topics];
}

test("an exit that races its start is published after /tasks/start; delete comes last", async () => {
  topics.length = 0;
  const service = taskService(new ExitsDuringStart() as unknown as TaskDaemon, () => undefined); // the fake has every method the calls below reach
  const id = "race-1";
  const { pid = 0 } = await service.create(create(containerdTask.CreateTaskRequestSchema, { id, bundle: bundle(id) }), context);
  assert.ok(exists(pid) && isHolder(pid), "the task's pid is its own host process");
  const waited = service.wait(create(containerdTask.WaitRequestSchema, { id }), context);
  assert.equal((await service.start(create(containerdTask.StartRequestSchema, { id }), context)).pid, pid);
  assert.equal((await waited).exitStatus, 3);
  assert.equal(exists(pid), false, "the task's pid is gone once Wait has told its exit");
  const state = await service.state(create(containerdTask.StateRequestSchema, { id }), context);
  assert.equal(state.status, containerdTypes.Status.STOPPED);
  const killed = await rejectsWithCode(service.kill(create(containerdTask.KillRequestSchema, { id, signal: 9 }), context), "MOAT_SHIM_PROCESS_NOT_FOUND");
  assert.equal(killed.status, Code.NOT_FOUND, "containerd reads NotFound as already finished");
  assert.equal((await service.delete(create(containerdTask.DeleteRequestSchema, { id }), context)).exitStatus, 3);
  assert.deepEqual(await topicsAfter(4), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
});

test("requests moat cannot serve say so; a bundle not started by the shim is refused", async () => {
  const service = taskService(new ExitsDuringStart() as unknown as TaskDaemon, () => undefined); // as above
  const checkpoint = await rejectsWithCode(service.checkpoint(create(containerdTask.CheckpointTaskRequestSchema, { id: "x" }), context), "MOAT_SHIM_UNSUPPORTED", /checkpoint/);
  assert.equal(checkpoint.status, Code.UNIMPLEMENTED);
  const dir = join(dirname(containerd.path), "no-bootstrap");
  mkdirSync(dir);
  await rejectsWithCode(service.create(create(containerdTask.CreateTaskRequestSchema, { id: "no-bootstrap", bundle: dir }), context), "MOAT_SHIM_BOOTSTRAP");
  await rejectsWithCode(service.state(create(containerdTask.StateRequestSchema, { id: "never-created" }), context), "MOAT_CONTAINER_NOT_FOUND");
});

/**
 * A daemon whose processes have terminals: it records the window sizes its input is asked to
 * set and the exec'd process objects, and it can report an OOM kill and an exit.
 */
class TerminalDaemon implements Partial<TaskDaemon> {
  readonly resizes: string[] = [];
  readonly execs: object[] = [];
  stdio: ProcessStdio | undefined;
  oom: OomListener = () => undefined;
  private readonly input: StdioInput = {
    hello: () => undefined,
    stdin: async () => undefined,
    stdinEnd: async () => undefined,
    signal: () => undefined,
    resize: async (rows, columns) => void this.resizes.push(`${rows}x${columns}`),
  };
  async create(_id: string, _bundle: string, stdio?: StdioFactory): Promise<string> {
    this.stdio = await stdio?.(this.input, "fake");
    return "";
  }
  async joinHostCgroup(): Promise<void> {}
  readonly execStdio: ProcessStdio[] = [];
  async start(): Promise<void> {}
  async delete(): Promise<void> {}
  async exec(_id: string, _execId: string, processJson: string, stdio?: StdioFactory): Promise<string> {
    const opened = await stdio?.(this.input, "fake exec");
    if (opened) this.execStdio.push(opened);
    this.execs.push(JSON.parse(processJson) as object); // the service's own JSON.stringify
    return "";
  }
  state() {
    return { id: "", status: "running" as const, pid: 0, bundle: "", created: "", exitStatus: 0 };
  }
  onOom(listener: OomListener): void {
    this.oom = listener;
  }
  registerAdopter(): void {}
  async setOwnerRecord(): Promise<void> {}
}

function execSpec(process: object) {
  return { typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", value: new TextEncoder().encode(JSON.stringify(process)) };
}

test("ResizePty: width is columns, height rows; an exec resized before its start starts at that size; no terminal: nothing to do, no error", async () => {
  const daemon = new TerminalDaemon();
  const service = taskService(daemon as unknown as TaskDaemon, () => undefined); // the fake has every method the calls below reach
  const id = "tty-1";
  await service.create(create(containerdTask.CreateTaskRequestSchema, { id, bundle: bundle(id), terminal: true }), context);
  await service.resizePty(create(containerdTask.ResizePtyRequestSchema, { id, width: 100, height: 30 }), context);
  await service.start(create(containerdTask.StartRequestSchema, { id }), context);
  await service.resizePty(create(containerdTask.ResizePtyRequestSchema, { id, width: 120, height: 50 }), context);
  assert.deepEqual(daemon.resizes, ["30x100", "50x120"], "the init's terminal, before and after its start");

  await service.exec(create(containerdTask.ExecProcessRequestSchema, { id, execId: "e1", terminal: true, spec: execSpec({ args: ["sh"], terminal: true, cwd: "/" }) }), context);
  await service.resizePty(create(containerdTask.ResizePtyRequestSchema, { id, execId: "e1", width: 80, height: 24 }), context);
  await service.start(create(containerdTask.StartRequestSchema, { id, execId: "e1" }), context);
  assert.deepEqual(daemon.execs, [{ args: ["sh"], terminal: true, cwd: "/", consoleSize: { height: 24, width: 80 } }]);
  await service.resizePty(create(containerdTask.ResizePtyRequestSchema, { id, execId: "e1", width: 81, height: 25 }), context);
  assert.deepEqual(daemon.resizes.slice(2), ["25x81"], "a started exec's terminal is resized in the guest");

  await service.exec(create(containerdTask.ExecProcessRequestSchema, { id, execId: "e2", spec: execSpec({ args: ["true"], cwd: "/" }) }), context);
  // As runc's shim: a process without a terminal has no window to size, and clients resize regardless.
  await service.resizePty(create(containerdTask.ResizePtyRequestSchema, { id, execId: "e2", width: 80, height: 24 }), context);
  assert.deepEqual(daemon.resizes.slice(3), [], "nothing resized");
  const huge = await rejectsWithCode(service.resizePty(create(containerdTask.ResizePtyRequestSchema, { id, width: 70_000, height: 24 }), context), "MOAT_TTY_SIZE");
  assert.equal(huge.status, Code.INVALID_ARGUMENT);

  // Pids: the task's pid and the running exec's, host pids both, each gone with its process.
  const pids = ((await service.pids(create(containerdTask.PidsRequestSchema, { id }), context)).processes ?? []).map((info) => ({ pid: info.pid ?? 0, typeUrl: info.info?.typeUrl ?? "" }));
  const execPid = (await service.state(create(containerdTask.StateRequestSchema, { id, execId: "e1" }), context)).pid;
  assert.deepEqual(pids.map((info) => info.pid), [(await service.state(create(containerdTask.StateRequestSchema, { id }), context)).pid, execPid]);
  assert.ok(pids[1]?.typeUrl.endsWith("containerd.runc.v1.ProcessDetails"), "an exec's pid says which exec it is");
  assert.ok(pids.every((info) => exists(info.pid) && isHolder(info.pid)));
  const mark = topics.length;
  for (const stdio of daemon.execStdio) await stdio.sendExit(0);
  await daemon.stdio?.sendExit(0);
  await service.wait(create(containerdTask.WaitRequestSchema, { id, execId: "e1" }), context);
  await service.wait(create(containerdTask.WaitRequestSchema, { id }), context);
  assert.deepEqual(pids.filter((info) => exists(info.pid)), [], "no pid outlives its process");
  await service.delete(create(containerdTask.DeleteRequestSchema, { id }), context);
  // Events go out in order: once /tasks/delete is in, this task's exits are too (the next test counts exits).
  while (!topics.slice(mark).includes("/tasks/delete")) await new Promise((resolve) => setTimeout(resolve, 10));
});

test("an OOM kill the daemon reports is published as /tasks/oom before the exit it caused; unknown ids are ignored", async () => {
  const daemon = new TerminalDaemon();
  const service = taskService(daemon as unknown as TaskDaemon, () => undefined); // as above
  const id = "oom-1";
  await service.create(create(containerdTask.CreateTaskRequestSchema, { id, bundle: bundle(id) }), context);
  await service.start(create(containerdTask.StartRequestSchema, { id }), context);
  const before = topics.length;
  daemon.oom("not-a-task");
  daemon.oom(id);
  await daemon.stdio?.sendExit(137);
  assert.equal((await service.wait(create(containerdTask.WaitRequestSchema, { id }), context)).exitStatus, 137);
  // The earlier tests' events may still be arriving: only this test's task exits or sees an OOM kill.
  while (!topics.slice(before).includes("/tasks/exit")) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(topics.slice(before).filter((topic) => topic === "/tasks/oom" || topic === "/tasks/exit"), ["/tasks/oom", "/tasks/exit"]);
});

test("a restarted moatd takes a task back from its saved record: state, pid, execs, and its exit when it comes", async () => {
  topics.length = 0;
  const first = new ExitsDuringStart();
  first.start = async () => void (first.status = "running");
  const before = taskService(first as unknown as TaskDaemon, () => undefined); // as above
  const id = "adopt-1";
  await before.create(create(containerdTask.CreateTaskRequestSchema, { id, bundle: bundle(id), stdout: "" }), context);
  await before.start(create(containerdTask.StartRequestSchema, { id }), context);
  const spec = new TextEncoder().encode(JSON.stringify({ args: ["true"] }));
  await before.exec(create(containerdTask.ExecProcessRequestSchema, { id, execId: "e1", spec: { typeUrl: "x", value: spec } }), context);

  assert.deepEqual(await topicsAfter(3), ["/tasks/create", "/tasks/start", "/tasks/exec-added"]);

  // The daemon restarted: a new Task service, the record read back from disk.
  const second = new ExitsDuringStart();
  const after = taskService(second as unknown as TaskDaemon, () => undefined); // as above
  const saved: unknown = JSON.parse(JSON.stringify(first.record));
  const adopted = await second.adopter!({ state: { id, status: "running", pid: 0, bundle: "", created: "", exitStatus: 0 }, record: saved, sandboxPid: 77 }); // registered by taskService
  assert.deepEqual(adopted.execs, [], "an exec never started is not relayed");
  const state = await after.state(create(containerdTask.StateRequestSchema, { id }), context);
  assert.equal(state.status, containerdTypes.Status.RUNNING);
  const pid = (first.record as { init?: { hostPid?: { pid?: number } } } | undefined)?.init?.hostPid?.pid ?? 0;
  assert.ok(pid > 0 && exists(pid), "the task's holder outlives the moatd that started it");
  assert.equal(state.pid, pid, "the same pid after the restart");
  const execState = await after.state(create(containerdTask.StateRequestSchema, { id, execId: "e1" }), context);
  assert.equal(execState.status, containerdTypes.Status.CREATED);

  const waited = after.wait(create(containerdTask.WaitRequestSchema, { id }), context);
  const stdio = await adopted.init(noInput, "adopted");
  await stdio.sendExit(7);
  assert.equal((await waited).exitStatus, 7);
  assert.equal(exists(pid), false, "the adopted holder is ended at the exit");
  assert.deepEqual(await topicsAfter(4), ["/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exit"]);
  assert.equal((second.record as { init?: { exit?: { exitStatus?: number } } } | undefined)?.init?.exit?.exitStatus, 7, "the exit is saved");

  // A record from before holders existed: the task keeps reporting its sandbox's pid.
  const legacy = JSON.parse(JSON.stringify(first.record)) as { init: { hostPid?: unknown; exit?: unknown } }; // the record just saved, as JSON
  delete legacy.init.hostPid;
  const third = new ExitsDuringStart();
  const oldService = taskService(third as unknown as TaskDaemon, () => undefined); // as above
  await third.adopter!({ state: { id, status: "running", pid: 0, bundle: "", created: "", exitStatus: 0 }, record: legacy, sandboxPid: 77 }); // registered by taskService
  assert.equal((await oldService.state(create(containerdTask.StateRequestSchema, { id }), context)).pid, 77);

  // A record that does not parse fails that adoption with a message naming the task.
  await rejectsWithCode(second.adopter!({ state: { id: "bad", status: "running", pid: 0, bundle: "", created: "", exitStatus: 0 }, record: { bundle: 1 }, sandboxPid: 1 }), "MOAT_SHIM_RECORD", /bad: saved task state/); // registered by taskService
});
