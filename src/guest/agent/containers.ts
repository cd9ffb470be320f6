// The containers of this guest: each one's crun bundle, its process's stdio, and its exit.
//
// Create mounts the container's shares, writes the bundle (config.json, paths already rewritten
// for the guest by the host) and runs `crun create` with pipes for stdio, which the container
// process inherits; crun exits at once and the process waits for `crun start`, or, when the
// host asks to start it at once, `crun run --detach`, which starts it too. Its exit status
// comes from moat-init.
// A process with a terminal (process.terminal) gets a pty from crun instead, relayed by
// moat-tty (terminal.ts): its output is then one stream, stdout; stderr carries only what
// crun itself says.
import { spawn, type ChildProcess } from "node:child_process";
import { constants as osConstants } from "node:os";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import type { Writable } from "node:stream";
import { MoatError } from "../../shared/errors.js";
import { parseJsonObject } from "../../shared/json-object.js";
import { containerGuestDir, type GuestTmpfs, type ShareMount } from "../../shared/protocol/index.js";
import { Code } from "../../shared/ttrpc/index.js";
import { cgroupDirOf } from "./cgroup-dir.js";
import { nowNs, timed, type GuestStep } from "./guest-steps.js";
import { crun, crunBinary, crunRoot } from "./crun.js";
import { missingExecutable } from "./executable.js";
import { mountGuestTmpfs, mountShares, unmountShares } from "./mounts.js";
import { guestNetworkSysctls, setGuestNetworkSysctls } from "./network-sysctls.js";
import type { OomEvents } from "./oom-events.js";
import { OutputBuffer } from "./output-buffer.js";
import { joinPodNamespaces } from "./pod-namespaces.js";
import { stdinSocketPair } from "./stdin-socket.js";
import type { ProcessExit, ProcessExits } from "./process-exits.js";
import { Terminal } from "./terminal.js";

const VALID_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** The spec the host sends is one JSON document; a bound keeps a bad one from costing memory. */
const MAX_SPEC_BYTES = 1 << 20;

export interface CreateRequest {
  containerId: string;
  ociSpecJson: string;
  stdin: boolean;
  shares: ShareMount[];
  /** Start the process too, in the same crun call (`crun run --detach`). */
  start?: boolean;
  /** A pod member: the container here whose namespaces it shares, and which (pod-namespaces.ts). */
  joinContainerId?: string;
  joinNamespaces?: string[];
  /** Memory volumes: the guest's tmpfs file systems that the spec's binds name (mounts.ts). */
  tmpfs?: GuestTmpfs[];
}

/** A process's stdio and exit: the container's own, or one exec'd into it. */
interface ProcessIo {
  pid: number;
  stdin: Writable | undefined;
  stdout: OutputBuffer;
  stderr: OutputBuffer;
  exit: Promise<ProcessExit>;
  exited: boolean;
  terminal: Terminal | undefined;
}

interface Container extends ProcessIo {
  id: string;
  dir: string;
  shares: ShareMount[];
  state: "created" | "running" | "paused" | "stopped";
  exitStatus: number;
  execs: Map<string, ProcessIo>;
  /** When the crun call that started its process ended, and when its exit was learnt (guest-steps.ts). */
  startedNs?: bigint;
  exitedNs?: bigint;
}

/** A command line as ListProcesses reports it, at most this long. */
const MAX_COMMAND_BYTES = 4096;
/** Exec'd processes that have exited stay readable until the container is removed; this many at most. */
const MAX_EXECS = 256;

export class Containers {
  private readonly containers = new Map<string, Container>();

  constructor(
    private readonly exits: ProcessExits,
    private readonly oom: OomEvents,
  ) {}

  /** Creates (and with `start`, starts) the container; its pid, and where the time went. */
  async create(request: CreateRequest): Promise<{ pid: number; steps: GuestStep[] }> {
    const steps: GuestStep[] = [];
    const receivedNs = nowNs();
    const id = request.containerId;
    const where = `container ${id}`;
    if (!VALID_ID.test(id)) throw new MoatError("MOAT_CONTAINER_ID", `${where}: invalid container id`, { status: Code.INVALID_ARGUMENT });
    if (this.containers.has(id)) throw new MoatError("MOAT_CONTAINER_EXISTS", `${where}: already exists`, { status: Code.ALREADY_EXISTS });
    const { spec, sysctls } = guestNetworkSysctls(this.withPodNamespaces(parseObject(request.ociSpecJson, where, "OCI spec"), request, where), where); // crun validates the rest
    const dir = containerGuestDir(id);
    await mkdir(dir, { recursive: true });
    let terminal: Terminal | undefined;
    try {
      await timed(steps, "mount shares", async () => {
        await mountGuestTmpfs(request.tmpfs ?? [], where);
        await mountShares(id, request.shares, where);
      });
      const bundleStartNs = nowNs();
      await setGuestNetworkSysctls(sysctls, where);
      await writeFile(`${dir}/config.json`, JSON.stringify(spec));
      terminal = wantsTerminal(spec.process) ? await Terminal.open(where) : undefined;
      const stdin = request.stdin && !terminal ? await stdinSocketPair(dir) : undefined;
      steps.push({ name: "write bundle", startNs: bundleStartNs, endNs: nowNs() });
      const action = request.start ? ["run", "--detach"] : ["create"];
      const crunStartNs = nowNs();
      const child = spawn(crunBinary, ["--root", crunRoot, ...action, "--bundle", dir, "--pid-file", `${dir}/pid`, ...consoleSocket(terminal), id], {
        stdio: [stdin ? stdin.remote : "ignore", terminal ? "ignore" : "pipe", "pipe"],
      });
      stdin?.remote.destroy(); // crun and the container hold their own copies
      const stdout = new OutputBuffer(terminal ? terminal.output : child.stdout!); // stdio[1] is "pipe" without a terminal
      const stderr = new OutputBuffer(child.stderr!); // stdio[2] is "pipe"
      await exitOf(child, action.join(" "), where, stderr).catch((error: unknown) => {
        stdin?.local.destroy();
        throw error;
      });
      const crunEndNs = nowNs();
      steps.push({ name: `crun ${action.join(" ")}`, startNs: crunStartNs, endNs: crunEndNs });
      const pid = Number((await readFile(`${dir}/pid`, "utf8")).trim());
      stdin?.local.on("error", () => undefined); // a container that exits without reading resets it; WriteStdin reports that
      this.containers.set(id, { id, dir, shares: request.shares, pid, state: request.start ? "running" : "created", exitStatus: 0, stdin: terminal?.input ?? stdin?.local, stdout, stderr, exit: this.exits.wait(pid), exited: false, terminal, execs: new Map(), startedNs: request.start ? crunEndNs : undefined });
      const container = this.containers.get(id)!; // just set
      container.exit.then((exit) => {
        container.exitedNs = nowNs();
        container.state = "stopped";
        container.exitStatus = exit.exitStatus;
        container.exited = true;
      });
      await timed(steps, "watch cgroup", async () => {
        const cgroupDir = await cgroupDirOf(pid);
        if (cgroupDir !== undefined) await this.oom.watch(id, cgroupDir);
      });
      // The whole of it, its checks and the spec's parsing included: what the host waited for, less the transport.
      steps.push({ name: "all of it", startNs: receivedNs, endNs: nowNs() });
      return { pid, steps };
    } catch (error) {
      await terminal?.close();
      unmountShares(id, request.shares);
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /**
   * A pod member's spec with the namespaces of its pod's sandbox container, which must be a
   * container of this guest whose process still runs (its namespaces go with it).
   */
  private withPodNamespaces(spec: Record<string, unknown>, request: CreateRequest, where: string): Record<string, unknown> {
    const types = request.joinNamespaces ?? [];
    const podId = request.joinContainerId ?? "";
    if (podId === "") {
      if (types.length > 0) throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: join_namespaces without join_container_id`, { status: Code.INVALID_ARGUMENT });
      return spec;
    }
    const pod = this.containers.get(podId);
    if (!pod) throw new MoatError("MOAT_CONTAINER_NOT_FOUND", `${where}: its pod's sandbox container ${podId} is not a container of this sandbox`, { status: Code.NOT_FOUND });
    if (pod.exited) throw new MoatError("MOAT_CONTAINER_STATE", `${where}: its pod's sandbox container ${podId} has exited: its namespaces are gone`, { status: Code.FAILED_PRECONDITION });
    return joinPodNamespaces(spec, types, pod.pid, where);
  }

  /** Starts the created container's process; where the time went. */
  async start(id: string): Promise<GuestStep[]> {
    const container = this.get(id);
    if (container.state !== "created") throw new MoatError("MOAT_CONTAINER_STATE", `container ${id}: cannot start a ${container.state} container`, { status: Code.FAILED_PRECONDITION });
    const steps: GuestStep[] = [];
    await timed(steps, "crun start", () => crun(id, ["start", id]));
    container.startedNs = steps[0]!.endNs; // timed pushed the one step
    if (container.state === "created") container.state = "running";
    return steps;
  }

  /** Runs `process` (an OCI process object) in the running container with `crun exec`. */
  async exec(id: string, execId: string, processJson: string, withStdin: boolean): Promise<number> {
    const container = this.get(id);
    const where = `container ${id} exec ${execId}`;
    if (container.state !== "running") throw new MoatError("MOAT_CONTAINER_STATE", `container ${id}: cannot exec in a ${container.state} container`, { status: Code.FAILED_PRECONDITION });
    if (!VALID_ID.test(execId)) throw new MoatError("MOAT_CONTAINER_ID", `${where}: invalid exec id`, { status: Code.INVALID_ARGUMENT });
    if (container.execs.has(execId)) throw new MoatError("MOAT_CONTAINER_EXISTS", `${where}: already exists`, { status: Code.ALREADY_EXISTS });
    if (container.execs.size >= MAX_EXECS) throw new MoatError("MOAT_CONTAINER_EXECS", `container ${id}: more than ${MAX_EXECS} exec'd processes`, { status: Code.RESOURCE_EXHAUSTED });
    const process = parseObject(processJson, where, "process");
    // As runc: a program that is not there fails the exec now, not as an exit after it (executable.ts).
    const args = process.args;
    if (Array.isArray(args) && typeof args[0] === "string") {
      const missing = await missingExecutable(`/proc/${container.pid}/root`, args[0], typeof process.cwd === "string" ? process.cwd : "/", process.env);
      if (missing) throw new MoatError("MOAT_EXEC_NOT_FOUND", `${where}: ${missing}`, { status: Code.FAILED_PRECONDITION });
    }
    const processFile = `${container.dir}/exec-${execId}.json`;
    const pidFile = `${container.dir}/exec-${execId}.pid`;
    await writeFile(processFile, JSON.stringify(process));
    const terminal = wantsTerminal(process) ? await Terminal.open(where) : undefined;
    const stdin = withStdin && !terminal ? await stdinSocketPair(container.dir) : undefined;
    // Not detached: crun stays the process's parent and exits with its status.
    const child = spawn(crunBinary, ["--root", crunRoot, "exec", "--process", processFile, "--pid-file", pidFile, ...consoleSocket(terminal), id], {
      stdio: [stdin ? stdin.remote : "ignore", terminal ? "ignore" : "pipe", "pipe"],
    });
    stdin?.remote.destroy();
    stdin?.local.on("error", () => undefined);
    const io: ProcessIo = {
      pid: 0,
      stdin: terminal?.input ?? stdin?.local,
      stdout: new OutputBuffer(terminal ? terminal.output : child.stdout!), // stdio[1] is "pipe" without a terminal
      stderr: new OutputBuffer(child.stderr!), // stdio[2] is "pipe"
      exited: false,
      terminal,
      exit: new Promise((resolve) => {
        const exited = (exit: ProcessExit) => {
          io.exited = true;
          terminal?.endControl();
          resolve(exit);
        };
        child.once("error", () => exited({ exitStatus: 127, signal: 0 }));
        child.once("exit", (code, signal) => {
          const number = signal ? osConstants.signals[signal] : 0;
          exited({ exitStatus: signal ? 128 + number : (code ?? 255), signal: number });
        });
      }),
    };
    container.execs.set(execId, io);
    // The pid file appears once crun has started the process; an exec that fails before has none.
    io.pid = await waitForPid(pidFile, io);
    return io.pid;
  }

  /** Freezes (`pause`) or thaws (`resume`) every process of a container. */
  async freeze(id: string, action: "pause" | "resume"): Promise<void> {
    const container = this.get(id);
    const from = action === "pause" ? "running" : "paused";
    if (container.state !== from) throw new MoatError("MOAT_CONTAINER_STATE", `container ${id}: cannot ${action} a ${container.state} container`, { status: Code.FAILED_PRECONDITION });
    await crun(id, [action, id]);
    if (container.state === from) container.state = action === "pause" ? "paused" : "running";
  }

  async signal(id: string, execId: string, signal: number, all: boolean): Promise<void> {
    const container = this.get(id);
    if (execId) {
      const io = this.process(id, execId);
      if (!io.exited && io.pid > 0) globalThis.process.kill(io.pid, signal);
      return;
    }
    if (container.state === "stopped") return; // signalling a process that is gone is not an error for the caller
    await crun(id, ["kill", ...(all ? ["--all"] : []), id, String(signal)]);
  }

  /** Every process in the container's cgroup (`crun ps`), with its command line. */
  async processes(id: string): Promise<{ pid: number; command: string }[]> {
    this.get(id);
    const said = await crun(id, ["ps", "--format", "json", id]);
    let pids: unknown;
    try {
      pids = JSON.parse(said);
    } catch (error) {
      throw new MoatError("MOAT_CRUN_FAILED", `container ${id}: crun ps printed no JSON: ${said.slice(0, 200)}`, { cause: error, status: Code.INTERNAL });
    }
    if (!Array.isArray(pids) || !pids.every((pid) => Number.isInteger(pid) && pid > 0)) {
      throw new MoatError("MOAT_CRUN_FAILED", `container ${id}: crun ps printed ${said.slice(0, 200)}, not a list of pids`, { status: Code.INTERNAL });
    }
    const checked = pids as number[]; // checked element by element just above
    // A process may exit between crun's look and ours: it then has an empty command line.
    return Promise.all(checked.map(async (pid) => ({ pid, command: await commandLine(pid) })));
  }

  /** Applies an OCI LinuxResources object to the container (`crun update --resources`). */
  async update(id: string, resourcesJson: string): Promise<void> {
    const container = this.get(id);
    if (container.state === "stopped") throw new MoatError("MOAT_CONTAINER_STATE", `container ${id}: cannot update a stopped container`, { status: Code.FAILED_PRECONDITION });
    const resources = parseObject(resourcesJson, `container ${id}`, "resources");
    const file = `${container.dir}/resources.json`;
    await writeFile(file, JSON.stringify(resources));
    await crun(id, ["update", "--resources", file, id]);
  }

  status(id: string): { status: string; pid: number; exitStatus: number } {
    const container = this.get(id);
    return { status: container.state, pid: container.pid, exitStatus: container.exitStatus };
  }

  /**
   * Answers once the process has exited, with the last OOM event's sequence number after the
   * container's memory.events was read again: an OOM kill that ended it is queued by then.
   */
  async wait(id: string, execId: string): Promise<ProcessExit & { oomSequence: bigint; steps: GuestStep[] }> {
    const exit = await this.process(id, execId).exit;
    return { ...exit, oomSequence: await this.oom.check(id), steps: execId ? [] : processStep(this.get(id)) };
  }

  /** Deletes the container and everything the agent made for it (only the warm-up does: a sandbox's VM goes with its container). */
  async remove(id: string): Promise<void> {
    const container = this.get(id);
    this.oom.unwatch(id);
    await crun(id, ["delete", "--force", id]);
    container.stdin?.destroy();
    for (const io of [container, ...container.execs.values()]) await io.terminal?.close();
    unmountShares(id, container.shares);
    await rm(container.dir, { recursive: true, force: true });
    this.containers.delete(id);
  }

  /** Sets the window size of a process's terminal. */
  resize(id: string, execId: string, rows: number, columns: number): void {
    const where = `container ${id}${execId ? ` exec ${execId}` : ""}`;
    const terminal = this.process(id, execId).terminal;
    if (!terminal) throw new MoatError("MOAT_TTY_NONE", `${where}: the process has no terminal`, { status: Code.FAILED_PRECONDITION });
    terminal.resize(rows, columns, where);
  }

  output(id: string, execId: string, stream: "stdout" | "stderr"): OutputBuffer {
    return this.process(id, execId)[stream];
  }

  stdin(id: string, execId: string): Writable {
    const stdin = this.process(id, execId).stdin;
    if (!stdin) throw new MoatError("MOAT_CONTAINER_STDIN", `container ${id}: ${execId ? `exec ${execId}` : "process"} has no stdin`, { status: Code.FAILED_PRECONDITION });
    return stdin;
  }

  /** The container's own process (empty execId) or an exec'd one. */
  private process(id: string, execId: string): ProcessIo {
    const container = this.get(id);
    if (!execId) return container;
    const io = container.execs.get(execId);
    if (!io) throw new MoatError("MOAT_CONTAINER_NOT_FOUND", `container ${id}: exec ${execId}: not found`, { status: Code.NOT_FOUND });
    return io;
  }

  private get(id: string): Container {
    const container = this.containers.get(id);
    if (!container) throw new MoatError("MOAT_CONTAINER_NOT_FOUND", `container ${id}: not found`, { status: Code.NOT_FOUND });
    return container;
  }
}

/**
 * The container's process from the end of the crun call that started it to its exit, as the
 * agent learnt of it; a process that exited while crun was still running counts from crun's
 * end all the same (zero long).
 */
function processStep(container: Container): GuestStep[] {
  const { startedNs, exitedNs } = container;
  if (startedNs === undefined || exitedNs === undefined) return [];
  return [{ name: "process", startNs: startedNs, endNs: exitedNs > startedNs ? exitedNs : startedNs }];
}

/** Whether an OCI process (from a spec the host sent; crun validates the rest) asks for a terminal. */
function wantsTerminal(process: unknown): boolean {
  return typeof process === "object" && process !== null && (process as { terminal?: unknown }).terminal === true; // an object, checked just before
}

/** crun's arguments that hand the terminal, if any, to moat-tty. */
function consoleSocket(terminal: Terminal | undefined): string[] {
  return terminal ? ["--console-socket", terminal.socketPath] : [];
}

/** A bounded JSON document that must be an object. */
function parseObject(json: string, where: string, what: string): Record<string, unknown> {
  if (json.length > MAX_SPEC_BYTES) throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: ${what} larger than ${MAX_SPEC_BYTES} bytes`, { status: Code.INVALID_ARGUMENT });
  return parseJsonObject(json, `${where}: ${what}`, "MOAT_CONTAINER_SPEC");
}

/** /proc/PID/cmdline with its NULs as spaces, bounded; empty for a process that is gone. */
async function commandLine(pid: number): Promise<string> {
  const raw = await readFile(`/proc/${pid}/cmdline`).catch(() => Buffer.alloc(0));
  return raw.subarray(0, MAX_COMMAND_BYTES).toString().replace(/\0+$/, "").replaceAll("\0", " ");
}

/** Waits for crun's pid file; 0 if the process exited (failed) before one was written. */
async function waitForPid(pidFile: string, io: ProcessIo): Promise<number> {
  for (;;) {
    // Whether crun had exited is taken before the read: a process that exits at once (`sh -c
    // 'exit 7'`) can have its pid written and crun gone between a read that found nothing and
    // a look at `exited` after it, which then answered pid 0 for an exec that ran (issue 13).
    const exited = io.exited;
    const text = await readFile(pidFile, "utf8").catch(() => "");
    if (text.trim()) return Number(text.trim());
    if (exited) return 0;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Waits for crun (`crun create` or `crun run --detach`: `action`) to exit; rejects with what crun wrote if it failed. */
function exitOf(child: ChildProcess, action: string, where: string, stderr: OutputBuffer): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once("error", (error) => reject(new MoatError("MOAT_CRUN_FAILED", `${where}: cannot run crun`, { cause: error, status: Code.INTERNAL })));
    child.once("exit", async (code) => {
      if (code === 0) return resolve();
      const { data } = await stderr.read(4096, AbortSignal.timeout(1000));
      const said = data.toString().trim().split("\n").slice(-3).join("; ") || `exit status ${code}`;
      reject(new MoatError("MOAT_CRUN_FAILED", `${where}: crun ${action} failed: ${said}`, { status: Code.FAILED_PRECONDITION }));
    });
  });
}
