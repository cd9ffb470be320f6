// A stack of undo steps. Each step that creates something (a process, a socket, a
// directory) pushes its undo; on failure, or at the end of the thing's life, the undos run
// in reverse order. Every undo runs even if an earlier one failed; an undo that finds its
// object already gone succeeds (see isGone). Errors from undos are collected, not thrown
// over the error that caused the unwind.

import { describeCause } from "./errors.js";

export type Undo = () => void | Promise<void>;

export class CleanupStack {
  private readonly undos: Array<{ what: string; undo: Undo }> = [];

  /** Registers `undo`, described by `what` ("remove state dir /run/moat/x"). */
  push(what: string, undo: Undo): void {
    this.undos.push({ what, undo });
  }

  /** Runs every undo, newest first; returns the failures as "what: cause" lines. */
  async unwind(): Promise<string[]> {
    const failures: string[] = [];
    while (this.undos.length > 0) {
      const { what, undo } = this.undos.pop()!; // length checked by the loop condition
      try {
        await undo();
      } catch (error) {
        failures.push(`${what}: ${describeCause(error)}`);
      }
    }
    return failures;
  }

  /** Forgets every undo: the things they would remove now belong to someone else. */
  release(): void {
    this.undos.length = 0;
  }
}
