// A ttrpc connection over any duplex byte stream (unix socket, virtio-serial port, hybrid
// vsock): frames in, frames out, and one way to end. Client and server both sit on it.
//
// The first protocol violation, transport error or end of stream closes the connection with
// a reason; `closed` resolves with it. Nothing a peer sends escapes as an exception.

import type { Duplex } from "node:stream";
import { encodeFrame, FrameDecoder, FrameError, type Frame } from "./frame.js";
import { tracer } from "../trace.js";

const trace = tracer("ttrpc");

export type FrameHandler = (frame: Frame) => void;

export class Connection {
  readonly id: string;
  /** Resolves once, with the reason the connection closed. */
  readonly closed: Promise<Error>;
  private closeReason: Error | undefined;
  private resolveClosed!: (reason: Error) => void; // assigned in the constructor's Promise executor
  private readonly decoder = new FrameDecoder();

  constructor(
    private readonly stream: Duplex,
    id: string,
    private readonly onFrame: FrameHandler,
  ) {
    this.id = id;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    stream.on("data", (chunk: Buffer) => this.receive(chunk));
    stream.on("error", (error: Error) => this.close(new Error(`transport error: ${error.message}`)));
    stream.on("end", () => this.close(new Error("peer closed the connection")));
    stream.on("close", () => this.close(new Error("connection closed")));
    // A transport may hand over a paused stream (hybrid vsock pauses after its handshake).
    stream.resume();
  }

  get isClosed(): boolean {
    return this.closeReason !== undefined;
  }

  /**
   * Sends one frame; false if the connection is closed. `onWritten` runs once the bytes are
   * handed to the transport, or at once if they cannot be. Throws FrameError for oversize data.
   */
  send(frame: Frame, onWritten?: () => void): boolean {
    if (this.closeReason) {
      onWritten?.();
      return false;
    }
    const bytes = encodeFrame(frame);
    trace(this.id, `send stream=${frame.streamId} type=${frame.type} flags=${frame.flags} bytes=${frame.data.length}`);
    this.stream.write(bytes, () => onWritten?.());
    return true;
  }

  /** Closes the connection with a reason (the first reason wins) and destroys the stream. */
  close(reason: Error): void {
    if (this.closeReason) return;
    this.closeReason = reason;
    trace(this.id, `closed: ${reason.message}`);
    this.stream.destroy();
    this.resolveClosed(reason);
  }

  private receive(chunk: Buffer): void {
    if (this.closeReason) return;
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (error) {
      const message = error instanceof FrameError ? error.message : String(error);
      this.close(new Error(`protocol violation: ${message}`));
      return;
    }
    for (const frame of frames) {
      if (this.closeReason) return;
      trace(this.id, `recv stream=${frame.streamId} type=${frame.type} flags=${frame.flags} bytes=${frame.data.length}`);
      this.onFrame(frame);
    }
  }
}
