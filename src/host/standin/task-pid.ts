// The host pid a task process reports to containerd: a moat-task-pid holder
// (moat-task-pid.c), started when the process gets its pid (Create for the init, Start for an
// exec) and ended once the process has exited, before Wait answers and /tasks/exit goes out,
// so that kill(pid, 0) fails from then on as it does for runc's container process. The
// sandbox's QEMU cannot be that pid: it runs until Delete, and is shared by a pod's tasks.
//
// A holder is moatd's child while this moatd runs (Node reaps it when it exits); a restarted
// moatd takes it back from the task's record (pid and FIFO) and ends it through its FIFO, then
// waits for the pid to be gone, reaped by whoever inherited it.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { open, readdir } from "node:fs/promises";
import { constants } from "node:fs";
import { join } from "node:path";
import { settleWithin } from "../../shared/deadline.js";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { packageRoot } from "../config/index.js";

const FIFO_PREFIX = "moat-task-pid-";

/**
 * Ends every holder whose FIFO is in `bundle` (containerd's `shim delete`, after a shim it
 * thinks dead: no Task service may be left to end them, and they must leave the sandbox's
 * host cgroup before it is removed). Writing to a FIFO without a reader fails: nothing to end.
 */
export async function endHoldersIn(bundle: string): Promise<void> {
  const names = await readdir(bundle).catch(() => [] as string[]);
  for (const name of names.filter((entry) => entry.startsWith(FIFO_PREFIX))) {
    try {
      const handle = await open(join(bundle, name), constants.O_WRONLY | constants.O_NONBLOCK);
      await handle.write(Buffer.from([0])).finally(() => handle.close());
    } catch {
      // no holder reads it any more
    }
  }
}

/** Where a holder's network namespace is: a new one of its own, the one at `path`; none: moatd's. */
export type HolderNetns = "new" | { path: string } | undefined;

/** What a task record keeps of a holder, for a restarted moatd. */
export interface TaskPidRecord {
  pid: number;
  fifo: string;
}

/** How long a holder may take to say it is ready (it does so within a few ms). */
const READY_MS = 10_000;
/** How long an ended holder may take to be gone (reaped) before we stop waiting. */
const GONE_MS = 5_000;
const GONE_POLL_MS = 10;

export class TaskPid {
  private ending: Promise<void> | undefined;

  private constructor(
    readonly pid: number,
    readonly fifo: string,
    /** Set while this moatd is the holder's parent: its exit event means it is reaped. */
    private readonly child: ChildProcess | undefined,
  ) {}

  /**
   * Starts a holder whose FIFO is a new name in `dir` (the task's bundle); with `netns` "new" in
   * a network namespace of its own, made for it (the task's, which its host hooks fill), with a
   * path in that namespace (the spec's, which its host hooks act on through this pid).
   */
  static async start(dir: string, where: string, netns?: HolderNetns): Promise<TaskPid> {
    const binary = join(packageRoot(), "dist", "bin", "moat-task-pid");
    if (!existsSync(binary)) throw new MoatError("MOAT_SHIM_TASK_PID", `${where}: ${binary} is not built`, { hint: "make build", status: Code.FAILED_PRECONDITION });
    const fifo = join(dir, `${FIFO_PREFIX}${randomBytes(6).toString("hex")}`);
    // detached: its own session, so a signal to moatd's process group does not reach it.
    const child = spawn(binary, [...(netns === "new" ? ["--new-netns"] : netns ? ["--netns", netns.path] : []), fifo], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const ready = new Promise<void>((resolve, reject) => {
      let said = "";
      child.stdout?.on("data", (chunk: Buffer) => (said += chunk.toString()).includes("ready\n") && resolve());
      let complaint = "";
      child.stderr?.on("data", (chunk: Buffer) => (complaint = (complaint + chunk.toString()).slice(-500)));
      child.once("error", reject);
      child.once("exit", (code) => reject(new Error(complaint.trim() || `exited with status ${code}`)));
    });
    const started = await settleWithin(ready.then(() => true), READY_MS).catch((error: unknown) => error);
    if (started !== true) {
      child.kill("SIGKILL");
      throw new MoatError("MOAT_SHIM_TASK_PID", `${where}: cannot start its host pid holder (${binary} ${fifo})`, {
        cause: started ?? new Error(`not ready within ${READY_MS} ms`),
        status: Code.INTERNAL,
      });
    }
    child.stdout?.destroy();
    child.stderr?.destroy();
    child.unref();
    // child.pid is set once spawn succeeded, which "ready" proves.
    return new TaskPid(child.pid!, fifo, child);
  }

  /** A holder a previous moatd started, as its task record has it. */
  static adopt(record: TaskPidRecord): TaskPid {
    return new TaskPid(record.pid, record.fifo, undefined);
  }

  toRecord(): TaskPidRecord {
    return { pid: this.pid, fifo: this.fifo };
  }

  /** Ends the holder and waits until its pid is gone; one already gone is done. Idempotent. */
  end(): Promise<void> {
    this.ending ??= this.stop();
    return this.ending;
  }

  private async stop(): Promise<void> {
    const exited = this.child && (this.child.exitCode !== null || this.child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => this.child?.once("exit", () => resolve())));
    try {
      // O_NONBLOCK: the holder has it open for reading, so this never waits.
      const handle = await open(this.fifo, constants.O_WRONLY | constants.O_NONBLOCK);
      await handle.write(Buffer.from([0])).finally(() => handle.close());
    } catch {
      // No FIFO (ENOENT) or no reader (ENXIO): the holder is gone, or its FIFO was removed
      // under it (its bundle deleted while moatd was down). The latter is killed, once it is
      // sure the pid is still the holder's.
      if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
      else if (!this.child && this.holderRuns()) process.kill(this.pid, "SIGKILL");
    }
    if (exited) {
      await settleWithin(exited, GONE_MS);
      return;
    }
    const deadline = performance.now() + GONE_MS;
    while (this.holderExists() && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, GONE_POLL_MS));
  }

  /** The adopted holder runs: its pid's command line names its FIFO. */
  private holderRuns(): boolean {
    try {
      return readFileSync(`/proc/${this.pid}/cmdline`, "utf8").split("\0").includes(this.fifo);
    } catch {
      return false;
    }
  }

  /**
   * The adopted holder's pid is still there: running (its command line names its FIFO, so the
   * pid was not reused) or exited and not reaped yet (a zombie's command line is empty, and
   * kill(pid, 0) still finds it until whoever inherited it reaps it).
   */
  private holderExists(): boolean {
    try {
      process.kill(this.pid, 0);
      const cmdline = readFileSync(`/proc/${this.pid}/cmdline`, "utf8");
      return cmdline === "" || cmdline.split("\0").includes(this.fifo);
    } catch {
      return false;
    }
  }
}
