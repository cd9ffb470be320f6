// `moat run`: a container in its own VM, in the foreground, removed when it exits. The exit
// status is the container's (128 + N for a signal), as docker and podman report it.
// With --bundle it is also runc's `run [--detach] [--pid-file F] --bundle DIR ID`: the one
// argument is the container id, and --detach makes it create + start through moatd. With -t
// the container gets a terminal in the guest, sized as this one; with -i too, this terminal
// is raw while the container runs (local-terminal.ts) and is restored after.
//
// moatd owns the container, as it owns every sandbox (docs/design.md, "moat run"): this
// command asks it to run the container (Run), then is the container's stand-in on the stdio
// socket it answers with, and deletes the container once its exit status came. If moatd dies
// meanwhile, this command starts a new one, which adopts the container, and reattaches.
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { MoatError } from "../../shared/errors.js";
import { tracer } from "../../shared/trace.js";
import { Code } from "../../shared/ttrpc/index.js";
import { loadConfig } from "../config/index.js";
import { DaemonClient, StandInConnection, type DaemonStart } from "../daemon/index.js";
import { builtinImage } from "../images/index.js";
import { asksNewNetworkNamespace, hostHooks, loadBundle, networkNamespacePath, type OciSpec } from "../oci/index.js";
import { parsePortMapping } from "../sandbox/index.js";
import { TaskPid, type HolderNetns } from "../standin/index.js";
import { withOverrides, type GlobalOptions } from "./global-options.js";
import { localTerminalMode, localWindowSize, onLocalResize } from "./local-terminal.js";
import { createCommand, startCommand } from "./oci-commands.js";

// moatd's sandbox tracer line for the start ("agent ready after …"), said here as its own.
const trace = tracer("sandbox");
/** How long a lost connection is retried (moatd restarting and adopting): moatd keeps the container for its client that long. */
const REATTACH_MS = 30_000;
const REATTACH_PAUSE_MS = 100;

export interface RunCommandOptions {
  rm?: boolean;
  interactive?: boolean;
  tty?: boolean;
  cpus?: string;
  memory?: string;
  name?: string;
  bundle?: string;
  detach?: boolean;
  pidFile?: string;
  network?: string[];
  cniConfDir?: string;
  publish?: string[];
}

export async function runCommand(imageAndArgs: string[], options: RunCommandOptions, global: GlobalOptions): Promise<number> {
  const [image, ...args] = imageAndArgs;
  if (options.bundle === undefined && image === undefined) {
    throw new MoatError("MOAT_RUN_ARGS", "moat run: name an image (busybox) or give --bundle DIR", { status: Code.INVALID_ARGUMENT });
  }
  if (options.bundle !== undefined && args.length > 0) {
    throw new MoatError("MOAT_RUN_ARGS", `moat run: --bundle runs the bundle's own process and takes one argument, the container id; drop "${args.join(" ")}"`, {
      status: Code.INVALID_ARGUMENT,
    });
  }
  if (options.detach && options.bundle === undefined) {
    throw new MoatError("MOAT_RUN_ARGS", "moat run: --detach runs a bundle (runc's run -d): give --bundle DIR ID", { status: Code.INVALID_ARGUMENT });
  }
  const networks = options.network ?? [];
  const publish = options.publish ?? [];
  if (networks.includes("none")) {
    if (networks.length > 1) throw new MoatError("MOAT_RUN_ARGS", "moat run: --network none excludes other networks", { status: Code.INVALID_ARGUMENT });
    networks.length = 0; // none is the default: loopback only
  }
  if (publish.length > 0 && networks.length === 0) throw new MoatError("MOAT_RUN_ARGS", "moat run: -p publishes a port of a CNI network: name one with --network", { status: Code.INVALID_ARGUMENT });
  for (const value of publish) parsePortMapping(value); // a bad one starts nothing
  // With --bundle, the positional argument is runc's container id.
  const id = (options.bundle !== undefined ? image : undefined) ?? options.name ?? `run-${randomBytes(4).toString("hex")}`;
  if (options.detach) {
    // On --network, moatd makes the CNI networks for the sandbox as for a foreground run, and
    // tears them down at `moat delete`.
    await createCommand(id, { bundle: options.bundle, pidFile: options.pidFile, cni: networks.length > 0 ? { networks, cniConfDir: options.cniConfDir, publish } : undefined }, global);
    await startCommand(id, global);
    return 0;
  }
  // Checked here, before moatd is asked for anything: a bad bundle, image or size starts nothing.
  const bundle = options.bundle === undefined ? undefined : loadBundle(options.bundle);
  if (!bundle) builtinImage(image!); // image is defined when there is no bundle (checked above)
  for (const warning of bundle?.warnings ?? []) process.stderr.write(`moat: warning: ${warning}\n`);
  const terminal = options.tty === true || bundle?.spec.process.terminal === true;
  const config = withOverrides(loadConfig(global.config), global);
  const configPath = global.config ?? process.env.MOAT_CONFIG;
  const start: DaemonStart = { stateRoot: config.runtime.stateRoot, configPath };
  const vcpus = options.cpus === undefined ? undefined : parseCpus(options.cpus);
  const memoryMib = options.memory === undefined ? undefined : parseMemoryMiB(options.memory);
  const size = terminal ? localWindowSize() : undefined;
  const interactive = options.interactive === true;
  const restoreTerminal = terminal ? localTerminalMode(interactive) : () => undefined;
  // SIGINT or SIGTERM before the container runs stops the start, and moatd undoes what it
  // made (QEMU, the state directory) before this command exits; once it runs, the first goes
  // to the container, whose init may ignore it, and a second kills it, so that moat run can
  // always be stopped.
  let attached: StandInConnection | undefined;
  let starting = true;
  let stopped: Promise<never> | undefined;
  let received = 0;
  const onSignal = (name: "SIGINT" | "SIGTERM") => {
    if (!starting) return attached?.signal(++received === 1 ? constants.signals[name] : 9);
    if (stopped) return; // one undo is enough
    const exitStatus = 128 + constants.signals[name];
    // moatd stops the start and undoes it; its answer comes once it has.
    stopped = deleteContainer(start, id).then(
      () => Promise.reject(new MoatError("MOAT_RUN_INTERRUPTED", `moat run: stopped by ${name} before the container started; nothing was left behind`, { status: Code.CANCELLED, exitStatus })),
      (cause: unknown) => Promise.reject(new MoatError("MOAT_RUN_INTERRUPTED", `moat run: stopped by ${name} before the container started, but cannot undo it`, { cause, status: Code.CANCELLED, exitStatus })),
    );
    stopped.catch(() => undefined); // awaited below, where the start's answer comes; not an unhandled rejection meanwhile
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let holder: StandInHolder | undefined;
  try {
    // A bundle's host hooks need a host process that stands for the container before the
    // sandbox is made; it is in the namespace runc's process would be in (docs/networking.md).
    holder = bundle && Object.keys(hostHooks(bundle.spec)).length > 0 ? await StandInHolder.start(id, bundle.spec, networks.length > 0) : undefined;
    let stdioSocket: string;
    try {
      const client = await DaemonClient.connect(start);
      try {
        const what = bundle ? { bundle: bundle.dir } : { image, args };
        const ran = await client.run({ containerId: id, ...what, terminal, rows: size?.rows, columns: size?.columns, stdin: interactive, vcpus, memoryMib, configPath, networks, cniConfDir: options.cniConfDir, publish, standInPid: holder?.pid ?? 0 });
        stdioSocket = ran.stdioSocket;
        trace(id, ran.start);
      } finally {
        client.close();
      }
    } catch (error) {
      // Stopped by a signal: the start's own failure (undone) is not the news.
      if (stopped) await stopped;
      throw error;
    }
    if (stopped) await stopped; // the container was made before the undo came, and the undo deleted it
    starting = false;
    // In the foreground this process stands for the container, as runc run's does (or the
    // holder the hooks were given, in the container's network namespace).
    if (options.pidFile) writeFileSync(options.pidFile, String(holder?.pid ?? process.pid));
    const status = await standIn(start, id, stdioSocket, { interactive, terminal }, (connection) => (attached = connection));
    await deleteContainer(start, id);
    return status;
  } finally {
    // After the delete (its poststop hooks were given the holder's pid), or a start that failed.
    await holder?.end();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    restoreTerminal();
    // Input the container did not take must not keep this command waiting for more.
    if (interactive) process.stdin.destroy();
  }
}

/**
 * Is the container's stand-in until its exit status comes: relays this process's stdin (with
 * -i), terminal size (with -t) and output. A connection lost before the exit (moatd killed)
 * is made again to the moatd that adopts the container, started if none runs.
 */
async function standIn(start: DaemonStart, id: string, stdioSocket: string, mode: { interactive: boolean; terminal: boolean }, attached: (connection: StandInConnection) => void): Promise<number> {
  const output = { stdout: process.stdout, stderr: process.stderr };
  let connection = await StandInConnection.connect(stdioSocket, process.pid, output);
  // The connection input goes to: the current one, or, while reattaching, the next.
  let live = Promise.resolve(connection);
  const sayHello = (current: StandInConnection) => {
    attached(current);
    const size = mode.terminal ? localWindowSize() : undefined;
    if (size) current.resize(size.rows, size.columns);
  };
  sayHello(connection);
  if (mode.terminal) onLocalResize(({ rows, columns }) => connection.resize(rows, columns));
  if (mode.interactive) void relayStdin(() => live);
  for (;;) {
    const end = await connection.ended;
    if (end.kind === "exit") return end.status;
    const next = reattach(start, id, stdioSocket, end.reason, output);
    live = next;
    connection = await next;
    sayHello(connection);
  }
}

/**
 * This process's stdin to the container, chunk by chunk with back-pressure, then its end.
 * Input in flight when moatd dies is lost, as with the C stand-in; the rest goes to the moatd
 * that adopts the container.
 */
async function relayStdin(live: () => Promise<StandInConnection>): Promise<void> {
  try {
    for await (const chunk of process.stdin) await (await live()).stdin(chunk as Buffer); // a byte stream: no encoding was set
    (await live()).stdinEnd();
  } catch {
    // stdin destroyed at exit, unreadable, or the container lost: its input just ends.
  }
}

/** Connects again once moatd (restarted, if need be) has adopted the container. */
async function reattach(start: DaemonStart, id: string, stdioSocket: string, reason: string, output: Parameters<typeof StandInConnection.connect>[2]): Promise<StandInConnection> {
  const deadline = Date.now() + REATTACH_MS;
  for (;;) {
    try {
      const client = await DaemonClient.connect(start); // starts moatd if none answers
      try {
        await client.state(id); // answered once moatd has adopted it
      } finally {
        client.close();
      }
      return await StandInConnection.connect(stdioSocket, process.pid, output);
    } catch (error) {
      if (error instanceof MoatError && error.status === Code.NOT_FOUND) {
        throw new MoatError("MOAT_RUN_LOST", `container ${id}: lost (${reason}); moatd no longer has it`, { status: Code.UNAVAILABLE, exitStatus: 255 });
      }
      if (Date.now() > deadline) {
        throw new MoatError("MOAT_RUN_LOST", `container ${id}: lost (${reason}) and could not reattach within ${REATTACH_MS} ms`, { cause: error, status: Code.UNAVAILABLE, exitStatus: 255, hint: `see ${start.stateRoot}/moatd.log` });
      }
      await sleep(REATTACH_PAUSE_MS);
    }
  }
}

/**
 * The host process whose pid a foreground run's host hooks get: this process itself when the
 * container shares its network namespace (the spec names none), else a pid holder
 * (moat-task-pid, as a containerd task's) in the namespace the container's process would be
 * in: a new one (the spec asks for one without a path; on CNI networks, where it becomes the
 * sandbox's), or the one the spec names by path. Ended once the container is deleted.
 */
class StandInHolder {
  private constructor(
    readonly pid: number,
    private readonly holder?: { pid: number; end(): Promise<void> },
    private readonly dir?: string,
  ) {}

  static async start(id: string, spec: OciSpec, onCni: boolean): Promise<StandInHolder> {
    const path = networkNamespacePath(spec);
    const netns: HolderNetns = onCni || asksNewNetworkNamespace(spec) ? "new" : path ? { path } : undefined;
    if (netns === undefined) return new StandInHolder(process.pid);
    // Its FIFO (how it is ended) in a directory of this run's own, removed with it.
    const dir = await mkdtemp(join(tmpdir(), "moat-run-"));
    try {
      const holder = await TaskPid.start(dir, `container ${id}`, netns);
      return new StandInHolder(holder.pid, holder, dir);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  async end(): Promise<void> {
    await this.holder?.end();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}

/** Deletes the container through moatd: after its exit, this waits for moatd's removal; before its start, it undoes the start. */
async function deleteContainer(start: DaemonStart, id: string): Promise<void> {
  const client = await DaemonClient.connect(start);
  try {
    await client.delete(id, true).catch((error: unknown) => {
      if (!(error instanceof MoatError && error.status === Code.NOT_FOUND)) throw error;
    });
  } finally {
    client.close();
  }
}

function parseCpus(text: string): number {
  const cpus = Number(text);
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 64) {
    throw new MoatError("MOAT_RUN_ARGS", `moat run: --cpus: must be a whole number from 1 to 64, got "${text}"`, { status: Code.INVALID_ARGUMENT });
  }
  return cpus;
}

/** "512m", "1g", "256M", "1073741824" (bytes) → MiB. */
export function parseMemoryMiB(text: string): number {
  const match = /^(\d+)([kmg]?)b?$/i.exec(text.trim());
  const scale: Record<string, number> = { "": 1 / (1024 * 1024), k: 1 / 1024, m: 1, g: 1024 };
  const mib = match ? Number(match[1]) * scale[match[2]!.toLowerCase()]! : Number.NaN; // both groups exist when matched
  if (!Number.isFinite(mib) || mib < 128 || mib > 1024 * 1024) {
    throw new MoatError("MOAT_RUN_ARGS", `moat run: --memory: must be a size from 128m to 1024g, such as 512m or 2g, got "${text}"`, { status: Code.INVALID_ARGUMENT });
  }
  return Math.floor(mib);
}
