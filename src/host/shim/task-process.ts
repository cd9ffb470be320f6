// One process of a containerd task (its init, or an exec'd process) as the Task service
// tracks it: created → running → stopped, with the exit status and time once stopped.
import type { TaskIo, TaskStdio } from "./task-stdio.js";

export type ProcessStatus = "created" | "running" | "stopped";

export interface ProcessExit {
  exitStatus: number;
  exitedAt: Date;
}

export class TaskProcess {
  status: ProcessStatus = "created";
  exit: ProcessExit | undefined;
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

  /** Records the exit; a second report (the guest lost after the process exited) is ignored. */
  recordExit(exitStatus: number): ProcessExit {
    this.exit ??= { exitStatus, exitedAt: new Date() };
    this.status = "stopped";
    this.markExited(this.exit);
    return this.exit;
  }
}
