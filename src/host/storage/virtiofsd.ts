// One virtiofsd per virtio-fs share: started before QEMU (QEMU connects to its socket at
// start), in its own session so that it outlives a moatd restart as QEMU does, and killed
// with its whole process group (its namespace sandbox forks a child that does the serving).
//
// The guest is untrusted and Debian's C virtiofsd has no read-only export option, so each
// virtiofsd starts inside its own mount namespace (util-linux `unshare`) in which a read-only
// share's source is bind-mounted read-only over itself: a guest that ignores its `ro` mount
// still cannot write. The same namespace holds a tmpfs over /run/virtiofsd, where virtiofsd
// leaves a pid lock file per socket that it never removes. Both vanish with the process.
import { spawn } from "node:child_process";
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, statSync } from "node:fs";
import { readdir, readFile, realpath } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { MoatError } from "../../shared/errors.js";
import { tracer } from "../../shared/trace.js";
import { Code } from "../../shared/ttrpc/index.js";
import { pidExited, tailOf, virtiofsSocketPath } from "../hypervisor/index.js";

const trace = tracer("storage");

/** virtiofsd's cache modes under Kata's names (`virtio_fs_cache`); "never" is the C daemon's "none". */
export type VirtioFsCache = "never" | "auto" | "always";

const UNSHARE = "/usr/bin/unshare";
/** Where Debian's virtiofsd (localstatedir /var) writes its per-socket pid lock files. */
const PID_LOCK_DIR = "/run/virtiofsd";
const SOCKET_POLL_MS = 5;
const START_TIMEOUT_MS = 10_000;
const EXIT_POLL_MS = 20;
const STOP_WAIT_MS = 5_000;

export interface VirtiofsdOptions {
  /** The virtiofsd binary (`virtio_fs_daemon`). */
  binary: string;
  tag: string;
  /** The host directory served. */
  source: string;
  readOnly: boolean;
  cache: VirtioFsCache;
  /** The sandbox's state directory: virtiofsd's log and pid file go there. */
  stateDir: string;
  /** The sandbox's socket directory: virtiofsd's socket, where QEMU looks for it. */
  socketDir: string;
}

/**
 * The command that starts one virtiofsd: unshare → sh (mounts) → exec virtiofsd, all one
 * pid. Pure, so that it can be tested and printed.
 */
export function virtiofsdCommand(options: VirtiofsdOptions): { command: string; args: string[] } {
  const script = [
    "set -e",
    // The process writes its own pid file, so that a moatd killed right after spawning it
    // still leaves the next moatd a way to find it.
    'echo $$ > "$3"',
    `mount -t tmpfs -o size=64k,mode=0700 moat-virtiofsd ${PID_LOCK_DIR}`,
    'if [ "$1" = ro ]; then mount --bind -o ro "$2" "$2"; fi',
    "shift 3",
    'exec "$@"',
  ].join("\n");
  return {
    command: UNSHARE,
    args: [
      "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh",
      options.readOnly ? "ro" : "rw", options.source, virtiofsdFiles(options.stateDir, options.tag).pid,
      options.binary,
      `--socket-path=${virtiofsSocketPath(options.socketDir, options.tag)}`,
      "-o", `source=${options.source}`,
      "-o", `cache=${options.cache === "never" ? "none" : options.cache}`,
      // Its own sandbox: pivot_root into the share in new mount, pid and net namespaces, plus
      // its built-in seccomp filter. Device nodes and file capabilities are never needed on
      // a share (the guest makes /dev itself), so those capabilities are dropped too.
      "-o", "sandbox=namespace",
      "-o", "modcaps=-mknod:-setfcap",
    ],
  };
}

/** Fails with one clear error, before anything is created, if the binary cannot run. */
export function checkVirtiofsd(binary: string, where: string): void {
  try {
    accessSync(binary, constants.X_OK);
    if (!statSync(binary).isFile()) throw new Error("not a file"); // root may "execute" a directory
  } catch {
    throw new MoatError("MOAT_VIRTIOFSD_MISSING", `${where}: hypervisor.qemu.virtio_fs_daemon: ${binary} is not an executable file`, {
      hint: 'apt-get install qemu-system-x86 (Debian 12 ships /usr/lib/qemu/virtiofsd), set [hypervisor.qemu] virtio_fs_daemon, or set shared_fs = "virtio-9p"',
      status: Code.FAILED_PRECONDITION,
    });
  }
}

/** A running virtiofsd (the leader of its own process group). */
export class Virtiofsd {
  private constructor(
    readonly pid: number,
    readonly tag: string,
    private readonly gone: () => Promise<void>,
  ) {}

  static async start(given: VirtiofsdOptions, where: string): Promise<Virtiofsd> {
    // virtiofsd refuses a source that is a symbolic link (it checks with lstat), and a bind
    // mount would land on the link's target anyway.
    const options = { ...given, source: await realpath(given.source) };
    const { command, args } = virtiofsdCommand(options);
    const paths = virtiofsdFiles(options.stateDir, options.tag);
    const socketPath = virtiofsSocketPath(options.socketDir, options.tag);
    trace(where, `${command} ${args.join(" ")}`);
    mkdirSync(PID_LOCK_DIR, { recursive: true, mode: 0o700 }); // the mount point for the namespace's tmpfs
    const logFd = openSync(paths.log, "a");
    let child;
    try {
      child = spawn(command, args, { detached: true, stdio: ["ignore", logFd, logFd] });
    } finally {
      closeSync(logFd);
    }
    const exited = new Promise<string>((resolve) => {
      child.once("exit", (code, signal) => resolve(signal ? `killed by ${signal}` : `exit status ${code}`));
      child.once("error", (error) => resolve(error.message));
    });
    const pid = child.pid;
    if (pid === undefined) throw await startError(where, options.tag, await exited, paths.log);
    const daemon = new Virtiofsd(pid, options.tag, () => exited.then(() => undefined));
    try {
      const deadline = Date.now() + START_TIMEOUT_MS;
      for (;;) {
        if (existsSync(socketPath)) return daemon;
        const exit = await Promise.race([exited, sleep(SOCKET_POLL_MS).then(() => undefined)]);
        if (exit !== undefined) throw await startError(where, options.tag, `exited (${exit})`, paths.log);
        if (Date.now() > deadline) throw await startError(where, options.tag, `no socket ${socketPath} within ${START_TIMEOUT_MS} ms`, paths.log);
      }
    } catch (error) {
      await daemon.kill();
      throw error;
    }
  }

  /**
   * The virtiofsds a previous moatd started for the sandbox in `stateDir`, found by their pid
   * files; a pid that is gone or now runs something else (no socket in `socketDir`) is skipped.
   */
  static async adopt({ stateDir, socketDir }: { stateDir: string; socketDir: string }): Promise<Virtiofsd[]> {
    const found: Virtiofsd[] = [];
    for (const tag of await Virtiofsd.tagsIn(stateDir)) {
      const pid = Number((await readFile(virtiofsdFiles(stateDir, tag).pid, "utf8").catch(() => "")).trim());
      const cmdline = Number.isInteger(pid) && pid > 0 ? await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "") : "";
      if (!cmdline.includes(`--socket-path=${socketDir}/`)) continue;
      found.push(new Virtiofsd(pid, tag, () => pidExited(pid, EXIT_POLL_MS)));
    }
    return found;
  }

  /** The tags of the shares a virtiofsd was started for in `stateDir` (by their pid files), whether or not it still runs. */
  static async tagsIn(stateDir: string): Promise<string[]> {
    const names = await readdir(stateDir).catch(() => []);
    return names.flatMap((name) => /^virtiofsd-(.+)\.pid$/.exec(name)?.[1] ?? []);
  }

  /**
   * Waits up to `graceMs` for it to exit by itself (it does once QEMU has closed its end of
   * the socket), then kills it.
   */
  async stop(graceMs: number): Promise<void> {
    // Unreferenced timers: a CLI process must not stay alive just to let them expire.
    const exitedInTime = await Promise.race([this.gone().then(() => true), sleep(graceMs, false, { ref: false })]);
    if (!exitedInTime) await this.kill();
  }

  /** Kills its whole process group (the forked server included) and waits for it to be gone. */
  async kill(): Promise<void> {
    try {
      process.kill(-this.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
    await Promise.race([this.gone(), sleep(STOP_WAIT_MS, undefined, { ref: false })]);
  }
}

/** A virtiofsd's own files in the sandbox's state directory. */
function virtiofsdFiles(stateDir: string, tag: string): { log: string; pid: string } {
  return { log: join(stateDir, `virtiofsd-${tag}.log`), pid: join(stateDir, `virtiofsd-${tag}.pid`) };
}

/** The error for a virtiofsd that did not come up, quoting what it said (its log goes with the state directory). */
async function startError(where: string, tag: string, what: string, log: string): Promise<MoatError> {
  return new MoatError("MOAT_VIRTIOFSD_START", `${where}: virtiofsd for share ${tag}: ${what}: ${(await tailOf(log, 3)) || "no output"}`, {
    hint: "MOAT_TRACE=storage shows its command line",
    status: Code.INTERNAL,
  });
}
