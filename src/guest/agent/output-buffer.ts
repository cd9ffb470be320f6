// One output stream of a container process (stdout or stderr), buffered in the agent until
// the host reads it. The buffer is bounded: when it is full the source is paused, so a
// process that writes faster than the host reads is slowed down, not buffered without end.
import type { Readable } from "node:stream";

const HIGH_WATER_BYTES = 1 << 20;

export class OutputBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(private readonly source: Readable) {
    source.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.size += chunk.length;
      if (this.size >= HIGH_WATER_BYTES) source.pause();
      this.notify();
    });
    source.on("end", () => this.finish());
    source.on("close", () => this.finish());
    source.on("error", () => this.finish());
  }

  /** The next bytes (at most maxBytes); waits while there are none and the stream is open. */
  async read(maxBytes: number, signal: AbortSignal): Promise<{ data: Buffer; eof: boolean }> {
    while (this.size === 0 && !this.ended && !signal.aborted) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
    }
    if (this.size === 0) return { data: Buffer.alloc(0), eof: this.ended };
    const joined = Buffer.concat(this.chunks, this.size);
    const data = joined.subarray(0, maxBytes);
    const rest = joined.subarray(data.length);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.size = rest.length;
    if (this.size < HIGH_WATER_BYTES && !this.ended) this.source.resume();
    return { data: Buffer.from(data), eof: false };
  }

  private finish(): void {
    this.ended = true;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
