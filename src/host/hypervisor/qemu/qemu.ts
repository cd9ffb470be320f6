// One QEMU process: spawned in its own session (so it does not die with the process that
// started it, ARCHITECTURE.md "Failure domains"), controlled over QMP, stopped politely and
// then firmly.
import { spawn } from "node:child_process";
import { accessSync, closeSync, constants, existsSync, openSync } from "node:fs";
import { chown, readdir, readFile, writeFile } from "node:fs/promises";
import { setPriority } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { settleWithin } from "../../../shared/deadline.js";
import { MoatError } from "../../../shared/errors.js";
import { tracer } from "../../../shared/trace.js";
import { Code } from "../../../shared/ttrpc/index.js";
import { tailOf } from "../file-tail.js";
import { pidExited } from "../process-gone.js";
import { virtiofsSocketPath, type Vm, type VmExit, type VmPaths, type VmSpec } from "../hypervisor.js";
import { qemuArgs, shellQuote } from "./cmdline.js";
import { jailArgs, VIRTFS_PROXY_HELPER, vmmUserFor, type VmmUser } from "./jail.js";
import { prepareLogDir } from "./log-dir.js";
import { QmpClient } from "./qmp.js";

const trace = tracer("qemu");

const QMP_POLL_MS = 5;
const QUIT_WAIT_MS = 2000;
const ADOPTED_EXIT_POLL_MS = 50;
/** How often a killed QEMU is looked for until it is gone. */
const KILL_POLL_MS = 20;
/** After QMP fails, how long to wait for QEMU's exit to be seen before blaming QMP itself. */
const EXIT_SETTLE_MS = 1000;

export interface QemuStartOptions {
  qemuPath: string;
  spec: VmSpec;
  /** How long QEMU may take to create its QMP socket and answer on it. */
  startTimeoutMs: number;
  /**
   * Start QEMU at this nice value (every thread it makes inherits it): a VM restored ahead of
   * time for the warm pool must take only CPU time that sandboxes starting now leave over.
   */
  nice?: number;
  /** moat-jail, the launcher every QEMU is confined by (../moat-jail.c). */
  jailPath: string;
  /** The unprivileged user QEMU runs as where the VM allows it (jail.ts vmmUserFor); undefined: root with file capabilities only. */
  vmmUser?: VmmUser;
}

export class QemuVm implements Vm {
  readonly id: string;
  readonly paths: VmPaths;

  private constructor(
    readonly pid: number,
    id: string,
    paths: VmPaths,
    readonly exited: Promise<VmExit>,
    readonly qmp: QmpClient,
  ) {
    this.id = id;
    this.paths = paths;
  }

  /**
   * Takes over a QEMU that another process started (a daemon before its restart), found by
   * its pid file; undefined if that process is gone or is not this VM's QEMU. It is not our
   * child, so its exit is seen as QMP closing and the pid disappearing; its status is unknown.
   */
  static async adopt(id: string, paths: VmPaths, timeoutMs: number): Promise<QemuVm | undefined> {
    const pid = await runningQemuPid(id, paths);
    if (pid === undefined) return undefined;
    const qmp = await QmpClient.connect(paths.qmpSocket, timeoutMs);
    const exited = qmp.closed.then(async (): Promise<VmExit> => {
      await pidExited(pid, ADOPTED_EXIT_POLL_MS);
      return { code: null, signal: null };
    });
    trace(id, `adopted QEMU ${pid}`);
    return new QemuVm(pid, id, paths, exited, qmp);
  }

  /** Spawns QEMU and connects to its QMP socket; the guest is booting when this resolves. */
  static async start(options: QemuStartOptions): Promise<QemuVm> {
    const { spec, qemuPath } = options;
    const where = `sandbox ${spec.id}`;
    // Said here: past the jail, a missing QEMU is only an exec failure in QEMU's log.
    if (!existsSync(qemuPath)) {
      throw new MoatError("MOAT_QEMU_MISSING", `${where}: QEMU not found at ${qemuPath}`, {
        hint: "apt-get install qemu-system-x86, or set [hypervisor.qemu] path in the configuration",
        status: Code.FAILED_PRECONDITION,
      });
    }
    if (spec.sharedFs === "virtio-9p" && spec.virtfsServer === "proxy") {
      // Said here: past the jail, a missing helper is only an exec failure in QEMU's log and a
      // guest whose 9p mounts fail.
      try {
        accessSync(VIRTFS_PROXY_HELPER, constants.X_OK);
      } catch {
        throw new MoatError("MOAT_VIRTFS_PROXY_MISSING", `${where}: virtfs_server = "proxy", but ${VIRTFS_PROXY_HELPER} is not an executable file`, {
          hint: 'apt-get install qemu-system-common, or set [hypervisor.qemu] virtfs_server = "qemu"',
          status: Code.FAILED_PRECONDITION,
        });
      }
    }
    const args = qemuArgs(spec);
    trace(spec.id, shellQuote([qemuPath, ...args]));
    await writeFile(spec.paths.nameFile, spec.id); // how runningQemuPid knows it, wherever its directory moves
    // Bounded for every VM but a template being built, whose guest runs only moat's agent.
    await prepareLogDir(spec.paths, !spec.memoryFile?.shared, where);
    const logFd = openSync(spec.paths.hypervisorLog, "a");
    const user = vmmUserFor(spec, options.vmmUser);
    // Sockets the unprivileged QEMU connects to, and the directories it writes in, become its.
    if (user) await giveToVmmUser(spec, user);
    let child;
    try {
      const taps = (spec.nics ?? []).flatMap((nic) => (nic.tap === undefined ? [] : [nic.tap]));
      const tapped = taps.length > 0 && spec.network !== undefined;
      // One way QEMU starts: moat-jail confines it (a child of the launcher, pid 1 of its own
      // pid namespace); moat-tap-exec before it opens the taps in the sandbox's network
      // namespace, which the jail passes on as descriptors 3, 4, ...; `nice` before both, so
      // every process after it inherits the value.
      let [command, commandArgs] = [options.jailPath, [...jailArgs(spec, qemuPath, tapped ? taps.length : 0, user), qemuPath, ...args]];
      if (tapped && spec.network) [command, commandArgs] = [spec.network.tapExec, [spec.network.netns, ...taps, "--", command, ...commandArgs]];
      if (options.nice !== undefined) [command, commandArgs] = ["nice", ["-n", String(options.nice), command, ...commandArgs]];
      trace(spec.id, `${user ? `as uid ${user.uid}` : "as root with file capabilities"}: ${shellQuote([command, ...commandArgs.slice(0, commandArgs.indexOf(qemuPath))])}`);
      child = spawn(command, commandArgs, { detached: true, stdio: ["ignore", "ignore", logFd] });
    } finally {
      closeSync(logFd);
    }
    const exited = new Promise<VmExit>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", () => resolve({ code: null, signal: null }));
    });
    const spawnError = new Promise<never>((_, reject) =>
      child.once("error", (error: NodeJS.ErrnoException) => reject(new MoatError("MOAT_QEMU_START", `${where}: cannot start ${options.jailPath} for ${qemuPath}`, { cause: error, status: Code.INTERNAL }))),
    );
    // The child stays referenced: whoever awaits `exited` needs the event loop alive until it
    // fires. QEMU runs in its own session, so it survives this process all the same.
    try {
      const qmp = await Promise.race([connectQmp(spec.paths.qmpSocket, options.startTimeoutMs, where), spawnError]);
      if (child.pid === undefined) throw new MoatError("MOAT_QEMU_START", `${where}: ${qemuPath} has no pid`);
      // The jail wrote QEMU's pid before QEMU could run, so before its QMP socket existed.
      const pid = Number((await readFile(spec.paths.pidFile, "utf8").catch(() => "")).trim());
      if (!Number.isInteger(pid) || pid <= 0) {
        qmp.close(new Error("no pid"));
        throw new MoatError("MOAT_QEMU_START", `${where}: ${spec.paths.pidFile} holds no pid after QEMU started`, { status: Code.INTERNAL });
      }
      return new QemuVm(pid, spec.id, spec.paths, exited, qmp);
    } catch (error) {
      // QEMU exiting is the usual reason QMP fails; then what QEMU said is the error to show.
      const exit = child.pid === undefined ? undefined : await settleWithin(exited, EXIT_SETTLE_MS);
      if (exit) throw await exitedError(exit, spec.paths, where, "while starting");
      if (child.pid !== undefined) {
        // The launcher's death kills QEMU with it (PR_SET_PDEATHSIG); its exit follows QEMU's.
        process.kill(child.pid, "SIGKILL");
        await exited;
      }
      throw error;
    }
  }

  /** Sets the nice value of every QEMU thread (Linux's nice is per thread); a thread gone meanwhile is skipped. */
  async renice(nice: number): Promise<void> {
    for (const task of await readdir(`/proc/${this.pid}/task`).catch(() => [])) {
      try {
        setPriority(Number(task), nice);
      } catch {
        // The thread has exited.
      }
    }
  }

  async stop(graceMs: number): Promise<VmExit> {
    const exitedInTime = await settleWithin(this.exited, graceMs);
    if (exitedInTime) return this.finish(exitedInTime);
    trace(this.id, `still running after ${graceMs} ms: asking QEMU to quit`);
    await this.qmp.execute("quit", undefined, QUIT_WAIT_MS).catch(() => undefined);
    const quit = await settleWithin(this.exited, QUIT_WAIT_MS);
    if (quit) return this.finish(quit);
    return this.kill();
  }

  async kill(): Promise<VmExit> {
    try {
      process.kill(this.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
    return this.finish(await this.exited);
  }

  private finish(exit: VmExit): VmExit {
    this.qmp.close(new Error("VM stopped"));
    return exit;
  }
}

/**
 * Makes the socket and log directories, and the virtiofsd sockets QEMU connects to, the
 * unprivileged VMM user's: QEMU creates its QMP, agent and migration sockets and opens its
 * logs there. moatd, root, keeps reaching them.
 */
async function giveToVmmUser(spec: VmSpec, user: VmmUser): Promise<void> {
  const { paths } = spec;
  const owned = [paths.socketDir, paths.logDir, ...(await readdir(paths.logDir)).map((name) => `${paths.logDir}/${name}`)];
  if (spec.sharedFs === "virtio-fs") owned.push(...spec.shares.map((share) => virtiofsSocketPath(paths.socketDir, share.tag)));
  for (const path of owned) {
    try {
      await chown(path, user.uid, user.gid);
    } catch (error) {
      throw new MoatError("MOAT_QEMU_START", `sandbox ${spec.id}: cannot give ${path} to the VMM user ${user.uid}:${user.gid}`, { cause: error, status: Code.INTERNAL });
    }
  }
}

/**
 * The pid of the VM's QEMU from its pid file, if that process runs and is this VM's QEMU: the
 * one started with the name in its name file (a warm pool VM's, once a sandbox took it), or
 * else with `id`.
 */
export async function runningQemuPid(id: string, paths: VmPaths): Promise<number | undefined> {
  const pid = Number((await readFile(paths.pidFile, "utf8").catch(() => "")).trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const name = (await readFile(paths.nameFile, "utf8").catch(() => "")) || id;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  return cmdline.split("\0").includes(`moat-${name},debug-threads=on`) ? pid : undefined;
}

/**
 * Kills the VM's QEMU, if one runs (found as runningQemuPid finds it), without asking anything
 * of it, and waits until it is gone; its pid, or undefined if none ran.
 */
export async function killRunningQemu(id: string, paths: VmPaths): Promise<number | undefined> {
  const pid = await runningQemuPid(id, paths);
  if (pid === undefined) return undefined;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Gone since it was found.
  }
  await pidExited(pid, KILL_POLL_MS);
  return pid;
}

async function connectQmp(path: string, timeoutMs: number, where: string): Promise<QmpClient> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await QmpClient.connect(path, Math.max(deadline - Date.now(), 1));
    } catch (error) {
      const code = (error as { cause?: NodeJS.ErrnoException }).cause?.code;
      if (code !== "ENOENT" && code !== "ECONNREFUSED") {
        throw new MoatError("MOAT_QEMU_START", `${where}: QMP on ${path} failed`, { cause: error, status: Code.INTERNAL });
      }
      if (Date.now() > deadline) {
        throw new MoatError("MOAT_QEMU_START", `${where}: QEMU did not open ${path} within ${timeoutMs} ms`, { cause: error, status: Code.DEADLINE_EXCEEDED });
      }
    }
    await sleep(QMP_POLL_MS);
  }
}

/** The error for a QEMU that exited `when`, quoting the last lines it wrote. */
export async function exitedError(exit: VmExit, paths: VmPaths, where: string, when: string): Promise<MoatError> {
  const said = (await tailOf(paths.hypervisorLog, 3)) || (await tailOf(paths.consoleLog, 5)) || "no output";
  return new MoatError("MOAT_QEMU_EXITED", `${where}: QEMU exited ${when} (${describeExit(exit)}): ${said}`, { status: Code.UNAVAILABLE });
}

export function describeExit(exit: VmExit): string {
  return exit.signal ? `killed by ${exit.signal}` : `exit status ${exit.code}`;
}
