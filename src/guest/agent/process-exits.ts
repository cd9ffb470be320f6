// Exit statuses of processes the agent did not spawn itself. A container's process is a child
// of `crun create`, which exits at once, so the process is re-parented to PID 1; moat-init
// reaps it and reports "<pid> <exit code> <signal>" on the agent's fd 3.
import { Socket } from "node:net";
import { createInterface } from "node:readline";

export interface ProcessExit {
  /** As a shell reports it: the code, or 128 + the signal. */
  exitStatus: number;
  /** The signal that ended the process, 0 if it exited. */
  signal: number;
}

/** Exits reported before anyone waited for them, kept for a late waiter; oldest dropped first. */
const MAX_UNCLAIMED = 1024;

export class ProcessExits {
  private readonly waiters = new Map<number, (exit: ProcessExit) => void>();
  private readonly unclaimed = new Map<number, ProcessExit>();

  /** Starts reading moat-init's reports from `fd`. */
  listen(fd: number, log: (line: string) => void): void {
    const reports = createInterface({ input: new Socket({ fd, readable: true, writable: false }) });
    reports.on("line", (line) => {
      const match = /^(\d+) (\d+) (\d+)$/.exec(line);
      if (!match) return log(`exit report not understood: ${JSON.stringify(line.slice(0, 80))}`);
      this.record(Number(match[1]), { exitStatus: Number(match[2]), signal: Number(match[3]) }); // groups exist when matched
    });
  }

  record(pid: number, exit: ProcessExit): void {
    const waiter = this.waiters.get(pid);
    if (waiter) {
      this.waiters.delete(pid);
      waiter(exit);
      return;
    }
    this.unclaimed.set(pid, exit);
    if (this.unclaimed.size > MAX_UNCLAIMED) this.unclaimed.delete(this.unclaimed.keys().next().value!); // size > 0 here
  }

  /** Resolves when `pid` has exited (at once if it already has). One waiter per pid. */
  wait(pid: number): Promise<ProcessExit> {
    const exit = this.unclaimed.get(pid);
    if (exit) {
      this.unclaimed.delete(pid);
      return Promise.resolve(exit);
    }
    return new Promise((resolve) => this.waiters.set(pid, resolve));
  }
}
