// containerd.task.v2.Task, served by moatd: containerd's tasks mapped onto the daemon's
// containers (one sandbox VM per task), their stdio on containerd's FIFOs, their lifecycle
// reported as events to containerd. Errors keep their MoatError status; the ttrpc server
// turns it into the wire status containerd's errdefs reads (NotFound, FailedPrecondition, …).
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate, type Any } from "@bufbuild/protobuf/wkt";
import { CleanupStack } from "../../shared/cleanup.js";
import { MoatError } from "../../shared/errors.js";
import { cgroupsV2, containerdEvents, containerdTask, containerdTypes, runcOptions, runtimeOptions } from "../../shared/protocol/index.js";
import { Code, type ServiceImplementation } from "../../shared/ttrpc/index.js";
import { tracer } from "../../shared/trace.js";
import { MOAT_VERSION } from "../../shared/version.js";
import { loadConfig, type Config } from "../config/index.js";
import { standInNeeds, type Adopter, type Daemon, type ProcessStdio } from "../daemon/index.js";
import { readBootstrap } from "./bootstrap-file.js";
import { METRICS_FILES, metricsFromCgroupFiles } from "./cgroup-metrics.js";
import { EventPublisher } from "./event-publisher.js";
import { mountRootfs, unmountRootfs } from "./rootfs.js";
import { TaskPid, type HolderNetns } from "../standin/index.js";
import { TaskProcess, type ProcessExit } from "./task-process.js";
import { parseTaskRecord, TASK_FRONT_END, type TaskRecord } from "./task-record.js";
import { TaskStdio, type TaskIo } from "./task-stdio.js";

interface Task {
  id: string;
  bundle: string;
  namespace: string;
  ttrpcAddress: string;
  publisher: EventPublisher;
  /**
   * The pid given for the task when its init has no holder (task-pid.ts): a task adopted from a
   * record written before holders existed, which keeps reporting its sandbox's QEMU; else 0.
   */
  fallbackPid: number;
  init: TaskProcess;
  execs: Map<string, TaskProcess>;
  /** Undoes the rootfs mount; undefined when containerd prepared bundle/rootfs itself. */
  unmountRootfs: (() => Promise<void>) | undefined;
}

const { Status } = containerdTypes;
const trace = tracer("shim");
/** The largest window size a terminal takes (struct winsize holds unsigned shorts). */
const MAX_WINDOW_CELLS = 0xffff;

/** What the Task service needs of the daemon (a fake stands in for it in unit tests). */
export type TaskDaemon = Pick<
  Daemon,
  "create" | "start" | "exec" | "delete" | "state" | "freeze" | "kill" | "update" | "joinHostCgroup" | "cgroupFiles" | "onOom" | "registerAdopter" | "setOwnerRecord"
>;

export function taskService(daemon: TaskDaemon, log: (line: string) => void): ServiceImplementation<typeof containerdTask.Task> {
  const tasks = new Map<string, Task>();
  const publishers = new Map<string, EventPublisher>();
  const publisherFor = (address: string): EventPublisher => {
    let publisher = publishers.get(address);
    if (!publisher) publishers.set(address, (publisher = new EventPublisher(address)));
    return publisher;
  };

  /**
   * Saves the task for a restarted moatd (task-record.ts); a task deleted meanwhile has nothing
   * left to save. A write that fails is the error of the request that needed it (issue 10).
   */
  const save = (task: Task): Promise<void> =>
    daemon.setOwnerRecord(task.id, recordOf(task)).catch((error: unknown) => {
      if (!(error instanceof MoatError && error.code === "MOAT_CONTAINER_NOT_FOUND")) throw error;
    });

  const publish = <D extends DescMessage>(task: Task, topic: string, schema: D, event: MessageInitShape<D>, at?: Date) =>
    void task.publisher.publish(task.namespace, topic, schema, event, at);

  const taskOf = (id: string): Task => {
    const task = tasks.get(id);
    if (!task) throw new MoatError("MOAT_CONTAINER_NOT_FOUND", `task ${id}: does not exist`, { status: Code.NOT_FOUND });
    return task;
  };
  const processOf = (task: Task, execId: string): TaskProcess => {
    if (!execId) return task.init;
    const process = task.execs.get(execId);
    if (!process) throw new MoatError("MOAT_SHIM_PROCESS_NOT_FOUND", `task ${task.id}: exec ${execId}: does not exist`, { status: Code.NOT_FOUND });
    return process;
  };

  /**
   * The daemon relayed a process's exit: its pid goes (its holder ends, as runc's process is
   * reaped before its exit is told), then the exit is recorded, which answers Wait, and
   * containerd hears of it, after its start.
   */
  const exited = (task: Task, process: TaskProcess) => (exitStatus: number) => {
    if (process.exit) return; // recorded (and published) before: by a moatd before a restart, or by delete
    void (process.hostPid?.end() ?? Promise.resolve()).then(() => {
      if (process.exit) return; // recorded meanwhile (a second report, or delete)
      const exit = process.recordExit(exitStatus);
      if (tasks.get(task.id) === task) void save(task).catch((error: unknown) => log(`task ${task.id}: cannot save its state: ${String(error)}`)); // no request waits for an exit
      void process.startQueued.then(() =>
        publish(task, "/tasks/exit", containerdEvents.TaskExitSchema, {
          containerId: task.id,
          id: process.execId || task.id,
          pid: pidOf(task, process),
          exitStatus: exit.exitStatus,
          exitedAt: timestampFromDate(exit.exitedAt),
        }, exit.exitedAt),
      );
    });
  };

  /** Starts the holder whose pid `process` reports, in the task's bundle, and puts it in the sandbox's host cgroup once that exists. */
  const startHostPid = async (task: Task, process: TaskProcess, netns?: HolderNetns): Promise<TaskPid> => {
    const holder = await TaskPid.start(task.bundle, describe(task, process), netns);
    process.hostPid = holder;
    return holder;
  };

  /** Runs `start` and queues its event; an exit that comes meanwhile waits for that event. */
  const startProcess = async (process: TaskProcess, start: () => Promise<void>, queueEvent: () => void) => {
    let queued = () => undefined as void;
    process.startQueued = new Promise((resolve) => (queued = resolve));
    try {
      await start();
      if (process.status === "created") process.status = "running";
      queueEvent();
    } finally {
      queued();
    }
  };

  /**
   * Takes back a task a previous moatd served (the daemon calls this while it adopts the task's
   * sandbox): the task as saved, its processes' stdio reopened. A process whose exit was
   * recorded gets no stdio again: its output and exit went out before.
   */
  const adopt: Adopter = async ({ state, record, sandboxPid }) => {
    const saved = parseTaskRecord(record, `task ${state.id}`);
    const task: Task = {
      id: state.id,
      bundle: saved.bundle,
      namespace: saved.namespace,
      ttrpcAddress: saved.ttrpcAddress,
      publisher: publisherFor(saved.ttrpcAddress),
      fallbackPid: saved.init.hostPid ? 0 : sandboxPid,
      init: TaskProcess.fromRecord(saved.init),
      execs: new Map(saved.execs.map((exec) => [exec.execId, TaskProcess.fromRecord(exec)])),
      unmountRootfs: saved.rootfsMounted ? () => unmountRootfs(saved.bundle, `task ${state.id}`) : undefined,
    };
    // Started in the guest, though the daemon died before the start was saved.
    if (task.init.status === "created" && state.status !== "created") task.init.status = "running";
    tasks.set(task.id, task);
    const stdioOf = (process: TaskProcess) =>
      process.exit ? finishedStdio : TaskStdio.factory(process.io, task, exited(task, process), (opened) => (process.stdio = opened));
    const running = [...task.execs.values()].filter((exec) => exec.status === "running" && !exec.exit);
    return { init: stdioOf(task.init), execs: running.map((exec) => ({ execId: exec.execId, stdio: stdioOf(exec) })) };
  };
  daemon.registerAdopter(TASK_FRONT_END, adopt);

  const exitReply = (exit: ProcessExit | undefined) => ({ exitStatus: exit?.exitStatus ?? 0, exitedAt: exit ? timestampFromDate(exit.exitedAt) : undefined });

  // The daemon hears an OOM kill before the exit of the process it killed, and the event is
  // queued after /tasks/start as that exit is: so /tasks/oom comes before /tasks/exit.
  daemon.onOom((id) => {
    const task = tasks.get(id);
    if (!task) return trace(id, "OOM event for a container that is not a task here: ignored");
    void task.init.startQueued.then(() => publish(task, "/tasks/oom", containerdEvents.TaskOOMSchema, { containerId: task.id }));
  });

  return {
    async create(request) {
      const { id, bundle } = request;
      const where = `task ${id}`;
      if (request.checkpoint) throw unsupported(where, "checkpoint restore");
      if (tasks.has(id)) throw new MoatError("MOAT_CONTAINER_EXISTS", `${where}: already exists`, { status: Code.ALREADY_EXISTS });
      const bootstrap = await readBootstrap(bundle, where);
      const sandboxConfig = runtimeConfig(request.options, where, log);
      const cleanup = new CleanupStack();
      try {
        const unmountRootfs = await mountRootfs(bundle, request.rootfs, where);
        if (unmountRootfs) cleanup.push(`unmount ${bundle}/rootfs`, unmountRootfs);
        const io: TaskIo = { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal };
        const { ttrpcAddress } = bootstrap;
        const task: Task = { id, bundle, namespace: bootstrap.namespace, ttrpcAddress, publisher: publisherFor(ttrpcAddress), fallbackPid: 0, init: new TaskProcess("", io), execs: new Map(), unmountRootfs };
        // The host's hooks in the spec (nerdctl's CNI setup is its createRuntime hook) are given
        // the holder's pid, as runc gives its container process's: it stands for the task, in a
        // new network namespace of its own when the spec asks for one without a path, which the
        // hooks fill and the sandbox is connected to, or in the namespace the spec names by path
        // (the hooks act on it through this pid). Without hooks it stays in moatd's.
        const needs = standInNeeds(bundle);
        const standsIn = needs.hooks;
        const holder = await startHostPid(task, task.init, !standsIn ? undefined : needs.newNetns ? "new" : needs.netnsPath ? { path: needs.netnsPath } : undefined);
        cleanup.push(`end pid holder ${holder.pid}`, () => holder.end());
        const owner = { frontEnd: TASK_FRONT_END, record: recordOf(task) };
        await daemon.create(id, bundle, TaskStdio.factory(io, task, exited(task, task.init), (stdio) => (task.init.stdio = stdio)), sandboxConfig, owner, undefined, standsIn ? holder.pid : 0);
        cleanup.push(`delete sandbox ${id}`, () => daemon.delete(id, true));
        await daemon.joinHostCgroup(id, holder.pid);
        cleanup.release();
        tasks.set(id, task);
        publish(task, "/tasks/create", containerdEvents.TaskCreateSchema, {
          containerId: id,
          bundle,
          rootfs: request.rootfs,
          io: { stdin: io.stdin, stdout: io.stdout, stderr: io.stderr, terminal: io.terminal },
          pid: holder.pid,
        });
        return { pid: holder.pid };
      } catch (error) {
        const failures = await cleanup.unwind();
        if (failures.length > 0) log(`${where}: cleanup after failed create: ${failures.join("; ")}`);
        throw error;
      }
    },

    async start(request) {
      const task = taskOf(request.id);
      const process = processOf(task, request.execId);
      if (process.status !== "created") throw illegal(task, process, "start");
      if (!process.execId) {
        await startProcess(process, () => daemon.start(task.id), () => publish(task, "/tasks/start", containerdEvents.TaskStartSchema, { containerId: task.id, pid: pidOf(task, process) }));
      } else {
        const stdio = TaskStdio.factory(process.io, task, exited(task, process), (opened) => (process.stdio = opened));
        // A window size asked for before the start is the terminal's from the first instruction on.
        const size = process.windowSize;
        const spec = size ? { ...process.spec, consoleSize: { height: size.rows, width: size.columns } } : process.spec;
        await startProcess(
          process,
          async () => {
            // Its pid exists before the process does, so that Start can answer with it; a start that fails takes it away.
            const holder = await startHostPid(task, process);
            try {
              await daemon.joinHostCgroup(task.id, holder.pid);
              await daemon.exec(task.id, process.execId, JSON.stringify(spec), stdio);
            } catch (error) {
              await holder.end();
              process.hostPid = undefined;
              throw error;
            }
            // One asked for while it was starting may have reached the guest before the process did.
            const latest = process.windowSize;
            if (latest && latest !== size) await process.stdio?.resize(latest.rows, latest.columns);
          },
          () => publish(task, "/tasks/exec-started", containerdEvents.TaskExecStartedSchema, { containerId: task.id, execId: process.execId, pid: process.pid }),
        );
      }
      await save(task);
      return { pid: pidOf(task, process) };
    },

    async delete(request) {
      const task = taskOf(request.id);
      const process = processOf(task, request.execId);
      if (process.status === "running") throw illegal(task, process, "delete");
      if (process.execId) {
        task.execs.delete(process.execId);
        await save(task);
        return { pid: process.pid, ...exitReply(process.exit) };
      }
      // No pid outlives the task, and none may hold its sandbox's host cgroup busy when the daemon removes it.
      await Promise.all([...task.execs.values(), process].map((each) => each.hostPid?.end()));
      // A created task is deleted as runc's shim deletes one: killed first (the daemon does).
      await daemon.delete(task.id, process.status === "created");
      const exit = process.exit ?? process.recordExit(137);
      tasks.delete(task.id);
      await task.unmountRootfs?.();
      publish(task, "/tasks/delete", containerdEvents.TaskDeleteSchema, {
        containerId: task.id,
        id: task.id,
        pid: pidOf(task, process),
        exitStatus: exit.exitStatus,
        exitedAt: timestampFromDate(exit.exitedAt),
      });
      return { pid: pidOf(task, process), ...exitReply(exit) };
    },

    async state(request) {
      const task = taskOf(request.id);
      const process = processOf(task, request.execId);
      // STOPPED only once the exit is recorded (Wait answers, Delete may go ahead); PAUSED is the daemon's to know.
      const paused = !process.execId && process.status === "running" && daemon.state(task.id).status === "paused";
      const status = paused ? Status.PAUSED : statusOf(process.status);
      return {
        id: task.id,
        execId: process.execId,
        bundle: task.bundle,
        pid: pidOf(task, process),
        status,
        stdin: process.io.stdin,
        stdout: process.io.stdout,
        stderr: process.io.stderr,
        terminal: process.io.terminal,
        ...exitReply(process.exit),
      };
    },

    async pids(request) {
      // Host pids, as runc's shim gives them and as its callers use them (Docker's `top` runs
      // the host's ps on them, tools signal them): the task's own and each running exec's, with
      // its exec id. The guest's pids would name unrelated host processes. None once stopped.
      const task = taskOf(request.id);
      if (task.init.status === "stopped") return { processes: [] };
      const execs = [...task.execs.values()].filter((exec) => exec.status === "running" && exec.pid > 0);
      return {
        processes: [
          { pid: pidOf(task, task.init) },
          ...execs.map((exec) => ({ pid: exec.pid, info: { typeUrl: runcOptions.ProcessDetailsSchema.typeName, value: toBinary(runcOptions.ProcessDetailsSchema, create(runcOptions.ProcessDetailsSchema, { execId: exec.execId })) } })),
        ],
      };
    },

    async pause(request) {
      const task = taskOf(request.id);
      await daemon.freeze(task.id, "pause");
      publish(task, "/tasks/paused", containerdEvents.TaskPausedSchema, { containerId: task.id });
      return {};
    },

    async resume(request) {
      const task = taskOf(request.id);
      await daemon.freeze(task.id, "resume");
      publish(task, "/tasks/resumed", containerdEvents.TaskResumedSchema, { containerId: task.id });
      return {};
    },

    async checkpoint(request) {
      throw unsupported(`task ${request.id}`, "checkpoint (a container in a VM has no CRIU image)");
    },

    async kill(request) {
      const task = taskOf(request.id);
      const process = processOf(task, request.execId);
      // containerd's errdefs read NotFound as "already finished", which is what it is.
      if (process.status === "stopped") throw new MoatError("MOAT_SHIM_PROCESS_NOT_FOUND", `${describe(task, process)}: process already finished`, { status: Code.NOT_FOUND });
      if (process.execId && process.status === "created") throw illegal(task, process, "kill");
      await daemon.kill(task.id, request.signal, request.all, process.execId);
      return {};
    },

    async exec(request) {
      const task = taskOf(request.id);
      const where = `task ${task.id}: exec ${request.execId}`;
      if (task.execs.has(request.execId)) throw new MoatError("MOAT_CONTAINER_EXISTS", `${where}: already exists`, { status: Code.ALREADY_EXISTS });
      if (task.init.status !== "running") throw illegal(task, task.init, "exec in");
      let spec: unknown;
      try {
        spec = JSON.parse(new TextDecoder().decode(request.spec?.value));
      } catch (error) {
        throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: spec is not an OCI process in JSON`, { cause: error, status: Code.INVALID_ARGUMENT });
      }
      if (typeof spec !== "object" || spec === null) throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: spec is not an OCI process object`, { status: Code.INVALID_ARGUMENT });
      task.execs.set(request.execId, new TaskProcess(request.execId, { stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal }, spec));
      await save(task);
      publish(task, "/tasks/exec-added", containerdEvents.TaskExecAddedSchema, { containerId: task.id, execId: request.execId });
      return {};
    },

    async resizePty(request) {
      const task = taskOf(request.id);
      const process = processOf(task, request.execId);
      const where = describe(task, process);
      // runc's shim ignores a resize of a process without a terminal, and containerd's clients
      // send one regardless (nerdctl and Docker resize on attach): nothing to do, no error.
      if (!process.io.terminal) return {};
      // containerd's width is the columns, its height the rows (ctr: the console's Width, Height).
      const size = { rows: request.height, columns: request.width };
      if (size.rows > MAX_WINDOW_CELLS || size.columns > MAX_WINDOW_CELLS) {
        throw new MoatError("MOAT_TTY_SIZE", `${where}: window size ${size.columns}x${size.rows}: width and height must be at most ${MAX_WINDOW_CELLS}`, { status: Code.INVALID_ARGUMENT });
      }
      if (process.status === "created") process.windowSize = size;
      // The init's terminal exists from Create on (the guest keeps a size until the process runs).
      await process.stdio?.resize(size.rows, size.columns);
      return {};
    },

    async closeIO(request) {
      const process = processOf(taskOf(request.id), request.execId);
      if (request.stdin) process.stdio?.closeStdin();
      return {};
    },

    async update(request) {
      // resources is an OCI LinuxResources in JSON (containerd marshals non-proto types so).
      const task = taskOf(request.id);
      await daemon.update(task.id, new TextDecoder().decode(request.resources?.value));
      return {};
    },

    async wait(request) {
      const exit = await processOf(taskOf(request.id), request.execId).exited;
      return exitReply(exit);
    },

    async stats(request) {
      const task = taskOf(request.id);
      const metrics = create(cgroupsV2.MetricsSchema, metricsFromCgroupFiles(await daemon.cgroupFiles(task.id, METRICS_FILES)));
      // containerd's typeurl registry names the message without the type.googleapis.com/ prefix.
      return { stats: { typeUrl: cgroupsV2.MetricsSchema.typeName, value: toBinary(cgroupsV2.MetricsSchema, metrics) } };
    },

    async connect(request) {
      const task = taskOf(request.id);
      return { shimPid: process.pid, taskPid: pidOf(task, task.init), version: MOAT_VERSION };
    },

    async shutdown() {
      // moatd serves every task and outlives each; it exits by itself once idle.
      return {};
    },
  };
}

function recordOf(task: Task): TaskRecord {
  return {
    bundle: task.bundle,
    namespace: task.namespace,
    ttrpcAddress: task.ttrpcAddress,
    rootfsMounted: task.unmountRootfs !== undefined,
    init: task.init.toRecord(),
    execs: [...task.execs.values()].map((exec) => exec.toRecord()),
  };
}

/** The stdio of a process whose output and exit already went out: nothing more to write. */
const finishedStdio = async (): Promise<ProcessStdio> => ({ path: "", writeOutput: async () => undefined, sendExit: async () => undefined, close: async () => undefined });

function statusOf(status: string): containerdTypes.Status {
  switch (status) {
    case "created":
      return Status.CREATED;
    case "running":
      return Status.RUNNING;
    case "paused":
      return Status.PAUSED;
    case "stopped":
      return Status.STOPPED;
    default:
      return Status.UNKNOWN;
  }
}

/** The pid containerd is given for a process: its holder's (see Task.fallbackPid for a task's init without one). */
function pidOf(task: Task, process: TaskProcess): number {
  return process.hostPid || process.execId ? process.pid : task.fallbackPid;
}

function describe(task: Task, process: TaskProcess): string {
  return `task ${task.id}${process.execId ? `: exec ${process.execId}` : ""}`;
}

function illegal(task: Task, process: TaskProcess, action: string): MoatError {
  return new MoatError("MOAT_CONTAINER_STATE", `${describe(task, process)}: cannot ${action} a ${process.status} process`, { status: Code.FAILED_PRECONDITION });
}

function unsupported(where: string, what: string): MoatError {
  return new MoatError("MOAT_SHIM_UNSUPPORTED", `${where}: ${what} is not supported`, { status: Code.UNIMPLEMENTED });
}

/**
 * The runtime options containerd sent. runtimeoptions.v1's ConfigPath (CRI's `ConfigPath`,
 * `ctr run --runtime-config-path`) is a moat configuration for this task's sandbox; runc's
 * SystemdCgroup is what the cgroupsPath's form says already; every other field set means
 * nothing for a VM and is named in one log line.
 */
function runtimeConfig(options: Any | undefined, where: string, log: (line: string) => void): Config | undefined {
  if (!options || options.value.length === 0) return undefined;
  const schema = options.typeUrl.endsWith("runtimeoptions.v1.Options")
    ? runtimeOptions.OptionsSchema
    : options.typeUrl.endsWith("containerd.runc.v1.Options")
      ? runcOptions.OptionsSchema
      : undefined;
  if (!schema) {
    log(`${where}: runtime options of type ${options.typeUrl} ignored`);
    return undefined;
  }
  let decoded: Record<string, unknown>;
  try {
    decoded = fromBinary(schema, options.value) as unknown as Record<string, unknown>; // a decoded message is a plain object of its fields
  } catch (error) {
    throw new MoatError("MOAT_SHIM_OPTIONS", `${where}: runtime options: not a ${schema.typeName}`, { cause: error, status: Code.INVALID_ARGUMENT });
  }
  const configPath = schema === runtimeOptions.OptionsSchema ? String(decoded.configPath ?? "") : "";
  // systemd_cgroup is honoured through the cgroupsPath's form (src/host/cgroup), not ignored.
  const honoured = new Set(["systemd_cgroup", ...(configPath ? ["config_path"] : [])]);
  const ignored = schema.fields.filter((field) => decoded[field.localName] && !honoured.has(field.name));
  if (ignored.length > 0) log(`${where}: runtime options ignored (they mean nothing for a VM): ${ignored.map((field) => `${field.name}=${String(decoded[field.localName])}`).join(", ")}`);
  return configPath ? loadConfig(configPath) : undefined;
}
