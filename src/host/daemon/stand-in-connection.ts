// The stand-in's end of a container's stdio socket (the frames: stdio-relay.ts), in
// TypeScript: `moat run` is the stand-in of its foreground container itself, as the C
// stand-in (src/host/standin/moat-standin.c) is for a runc-style create. It says HELLO with
// its pid, relays input, signals and window sizes to moatd, writes the container's output with
// back-pressure (a full stdout pauses the socket, and so the relay in moatd and the agent's
// reads), and ends with the exit status, or with the connection lost (moatd gone).
import { connect, type Socket } from "node:net";
import type { Writable } from "node:stream";
import { HEADER_BYTES, MAX_PAYLOAD_BYTES, StandInFrame } from "./stdio-relay.js";

export interface StandInOutput {
  stdout: Writable;
  stderr: Writable;
}

/** How a connection ended: with the container's exit status, or lost before it came. */
export type StandInEnd = { kind: "exit"; status: number } | { kind: "lost"; reason: string };

export class StandInConnection {
  /** Resolves once, when the exit status came or the connection was lost. */
  readonly ended: Promise<StandInEnd>;
  private finish!: (end: StandInEnd) => void; // assigned by the executor in the constructor, which runs at once

  private constructor(
    private readonly socket: Socket,
    output: StandInOutput,
  ) {
    this.ended = new Promise((resolve) => (this.finish = resolve));
    socket.on("error", () => undefined); // 'close' follows, and readFrames says it
    readFrames(socket, output, (end) => {
      this.finish(end);
      socket.destroy();
    });
  }

  /** Connects to `path` and says HELLO with `pid` (the host process that stands for the container). */
  static async connect(path: string, pid: number, output: StandInOutput): Promise<StandInConnection> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    const connection = new StandInConnection(socket, output);
    connection.send(StandInFrame.HELLO, u32(pid));
    return connection;
  }

  /**
   * Sends input; resolves once the socket has taken it (back-pressure for the input's reader),
   * false if the connection was lost first (what was in flight is lost with it).
   */
  async stdin(data: Buffer): Promise<boolean> {
    for (let offset = 0; offset < data.length; offset += MAX_PAYLOAD_BYTES) {
      if (this.send(StandInFrame.STDIN, data.subarray(offset, offset + MAX_PAYLOAD_BYTES))) continue;
      await new Promise<void>((resolve) => (this.socket.destroyed ? resolve() : this.socket.once("drain", resolve).once("close", resolve)));
      if (this.socket.destroyed) return false;
    }
    return true;
  }

  stdinEnd(): void {
    this.send(StandInFrame.STDIN_EOF, Buffer.alloc(0));
  }

  signal(number: number): void {
    this.send(StandInFrame.SIGNAL, u32(number));
  }

  resize(rows: number, columns: number): void {
    const payload = Buffer.alloc(4);
    payload.writeUInt16BE(rows, 0);
    payload.writeUInt16BE(columns, 2);
    this.send(StandInFrame.RESIZE, payload);
  }

  close(): void {
    this.socket.destroy();
  }

  /** False when the socket's buffer is full (or the socket is gone). */
  private send(type: StandInFrame, payload: Buffer): boolean {
    if (this.socket.destroyed) return false;
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt8(type, 0);
    header.writeUInt32BE(payload.length, 1);
    return this.socket.write(Buffer.concat([header, payload]));
  }
}

function u32(value: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(value);
  return payload;
}

/** Reads moatd's frames: output to its stream (pausing the socket while the stream is full), then the exit. */
function readFrames(socket: Socket, output: StandInOutput, end: (end: StandInEnd) => void): void {
  let buffered: Buffer = Buffer.alloc(0);
  let waiting = false;
  let closed = false;
  // Frames that came before the close are written out first: the exit may be among them.
  const lostUnlessDone = () => {
    if (closed && !waiting) end({ kind: "lost", reason: "the connection to moatd closed before the exit status came" });
  };
  const drain = () => {
    drainFrames();
    lostUnlessDone();
  };
  const drainFrames = () => {
    while (!waiting && buffered.length >= HEADER_BYTES) {
      const type = buffered.readUInt8(0);
      const length = buffered.readUInt32BE(1);
      if (length > MAX_PAYLOAD_BYTES) return end({ kind: "lost", reason: `moatd sent a frame of ${length} bytes` });
      if (buffered.length < HEADER_BYTES + length) return;
      const payload = buffered.subarray(HEADER_BYTES, HEADER_BYTES + length);
      buffered = buffered.subarray(HEADER_BYTES + length);
      if (type === StandInFrame.EXIT && length === 4) return end({ kind: "exit", status: payload.readInt32BE(0) });
      const stream = type === StandInFrame.STDOUT ? output.stdout : type === StandInFrame.STDERR ? output.stderr : undefined;
      if (!stream) return end({ kind: "lost", reason: `moatd sent an unexpected frame of type ${type}` });
      if (!stream.write(payload)) {
        waiting = true;
        socket.pause();
        stream.once("drain", () => {
          waiting = false;
          socket.resume();
          drain();
        });
      }
    }
  };
  socket.on("data", (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    drain();
  });
  socket.once("close", () => {
    closed = true;
    lostUnlessDone();
  });
}
