// One process of a containerd task (its init, or an exec'd process) as the Task service
// tracks it: created → running → stopped, with the exit status and time once stopped.
import { TaskPid } from "../standin/index.js";
import type { ProcessRecord } from "./task-record.js";
import type { TaskIo, TaskStdio } from "./task-stdio.js";

export type ProcessStatus = "created" | "running" | "stopped";

export interface ProcessExit {
  exitStatus: number;
  exitedAt: Date;
}

export class TaskProcess {
  status: ProcessStatus = "created";
  exit: ProcessExit | undefined;
  /** The host process whose pid it reports (task-pid.ts): from Create (init) or Start (exec) until its exit. */
  hostPid: TaskPid | undefined;
  /** Set once the daemon opened its stdio (for CloseIO and ResizePty). */
  stdio: TaskStdio | undefined;
  /**
   * The window size ResizePty asked for before the process had its stdio (an exec not started
   * yet): it starts at that size (process.consoleSize).
   */
  windowSize: { rows: number; columns: number } | undefined;
  /** Resolves when the process has exited (Task.Wait). */
  readonly exited: Promise<ProcessExit>;
  /**
   * Resolves once /tasks/start (or /tasks/exec-started) is queued, so that an exit that
   * races the start is published after it, as containerd requires.
   */
  startQueued: Promise<void> = Promise.resolve();
  private markExited: (exit: ProcessExit) => void = () => undefined;

  constructor(
    /** "" for the task's init process. */
    readonly execId: string,
    readonly io: TaskIo,
    /** An exec'd process's OCI process object, run at Task.Start. */
    readonly spec?: object,
  ) {
    this.exited = new Promise((resolve) => (this.markExited = resolve));
  }

  /** A process a previous moatd served, as it saved it (task-record.ts). */
  static fromRecord(record: ProcessRecord): TaskProcess {
    const process = new TaskProcess(record.execId, record.io, record.spec);
    process.status = record.status;
    if (record.hostPid) process.hostPid = TaskPid.adopt(record.hostPid);
    if (record.exit) {
      process.exit = { exitStatus: record.exit.exitStatus, exitedAt: new Date(record.exit.exitedAt) };
      process.markExited(process.exit);
    }
    return process;
  }

  toRecord(): ProcessRecord {
    const exit = this.exit && { exitStatus: this.exit.exitStatus, exitedAt: this.exit.exitedAt.toISOString() };
    return { execId: this.execId, io: this.io, spec: this.spec, status: this.status, exit, hostPid: this.hostPid?.toRecord() };
  }

  /** The pid containerd is given for the process: its holder's, or 0 before it has one. */
  get pid(): number {
    return this.hostPid?.pid ?? 0;
  }

  /** Records the exit; a second report (the guest lost after the process exited) is ignored. */
  recordExit(exitStatus: number): ProcessExit {
    this.exit ??= { exitStatus, exitedAt: new Date() };
    this.status = "stopped";
    this.markExited(this.exit);
    return this.exit;
  }
}
