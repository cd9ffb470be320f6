// A task process's stdin FIFO, relayed to the process. containerd's clients write their input
// and then call Task.CloseIO, often before the shim has read what they wrote; the FIFO is
// held O_RDWR (so the open never waits for a writer), which also means it never reports EOF.
// So CloseIO is the end of input, and everything in the pipe when it comes is still relayed
// first. The descriptor is non-blocking and read directly: a read that finds the pipe empty
// says so at once (EAGAIN), which a stream wrapper would hide in its own buffering.
import { closeSync, constants, openSync, readSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import type { StdioInput } from "../daemon/index.js";

const CHUNK_BYTES = 64 * 1024;
/** Polling interval while the pipe is empty: short after input, longer when idle. */
const FIRST_IDLE_MS = 5;
const MAX_IDLE_MS = 100;

export class StdinFifo {
  private closing = false;
  private pumping: Promise<void> | undefined;

  private constructor(private readonly fd: number) {}

  static open(path: string, where: string): StdinFifo {
    try {
      return new StdinFifo(openSync(path, constants.O_RDWR | constants.O_NONBLOCK));
    } catch (error) {
      throw new MoatError("MOAT_SHIM_STDIO", `${where}: cannot open stdin FIFO ${path}`, { cause: error, status: Code.INVALID_ARGUMENT });
    }
  }

  /** Starts relaying to the process (it exists now); ends with stdinEnd once closed and drained. */
  start(input: StdioInput): void {
    this.pumping ??= this.pump(input);
  }

  /** Task.CloseIO: relay what is in the pipe, then end the process's stdin. */
  close(): void {
    this.closing = true;
  }

  /** The process is gone: stop at once. */
  destroy(): void {
    this.closing = true;
    if (this.pumping) return; // the pump closes it
    this.pumping = Promise.resolve(); // and never starts
    closeSync(this.fd);
  }

  private async pump(input: StdioInput): Promise<void> {
    const buffer = Buffer.alloc(CHUNK_BYTES);
    let idleMs = FIRST_IDLE_MS;
    try {
      for (;;) {
        let length: number;
        try {
          length = readSync(this.fd, buffer);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
          if (this.closing) break; // closed and drained
          await sleep(idleMs);
          idleMs = Math.min(idleMs * 2, MAX_IDLE_MS);
          continue;
        }
        if (length === 0) break;
        idleMs = FIRST_IDLE_MS;
        await input.stdin(Buffer.from(buffer.subarray(0, length)));
      }
      await input.stdinEnd();
    } catch {
      // The process or its guest is gone: its input has nowhere to go.
    } finally {
      closeSync(this.fd);
    }
  }
}
