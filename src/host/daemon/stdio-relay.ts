// The daemon's end of a container's stand-in (src/host/standin/moat-standin.c): one unix
// socket per container, one stand-in connection on it, framed both ways as
//   u8 type, u32 big-endian payload length (≤ 1 MiB), payload
//   from the stand-in: 1 HELLO (u32 pid), 2 STDIN (bytes), 3 STDIN_EOF, 4 SIGNAL (u32),
//                      5 RESIZE (u16 rows, u16 columns: its terminal's new window size)
//   to the stand-in:   16 STDOUT (bytes), 17 STDERR (bytes), 18 EXIT (i32 exit status)
// A frame that breaks these rules closes the connection. Output and the exit go to a stand-in
// once it has said HELLO, not as soon as it connected: a process that has exited already has
// its output, its exit and the close sent at once, and a stand-in that had not written its HELLO
// yet then found the connection closed under it (EPIPE) and exited 255 (issue 13, the soak).
import { rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tracer } from "../../shared/trace.js";
import type { ProcessStdio, StdioInput } from "./process-stdio.js";

const trace = tracer("daemon");

export enum StandInFrame {
  HELLO = 1,
  STDIN = 2,
  STDIN_EOF = 3,
  SIGNAL = 4,
  RESIZE = 5,
  STDOUT = 16,
  STDERR = 17,
  EXIT = 18,
}

export const HEADER_BYTES = 5;
export const MAX_PAYLOAD_BYTES = 1 << 20;

export type StandInHandlers = StdioInput;

/** One frame from a stand-in, checked. */
export type StandInMessage =
  | { type: "hello"; pid: number }
  | { type: "stdin"; data: Buffer }
  | { type: "stdinEnd" }
  | { type: "signal"; number: number }
  | { type: "resize"; rows: number; columns: number };

/** Decodes one frame's type and payload; undefined if the pair breaks the rules above. */
export function decodeStandInFrame(type: number, payload: Buffer): StandInMessage | undefined {
  if (type === StandInFrame.HELLO && payload.length === 4) return { type: "hello", pid: payload.readUInt32BE(0) };
  if (type === StandInFrame.STDIN) return { type: "stdin", data: Buffer.from(payload) };
  if (type === StandInFrame.STDIN_EOF && payload.length === 0) return { type: "stdinEnd" };
  if (type === StandInFrame.SIGNAL && payload.length === 4) return { type: "signal", number: payload.readUInt32BE(0) };
  if (type === StandInFrame.RESIZE && payload.length === 4) return { type: "resize", rows: payload.readUInt16BE(0), columns: payload.readUInt16BE(2) };
  return undefined;
}

async function dispatch(message: StandInMessage, handlers: StandInHandlers): Promise<void> {
  switch (message.type) {
    case "hello":
      return handlers.hello(message.pid);
    case "stdin":
      return handlers.stdin(message.data);
    case "stdinEnd":
      return handlers.stdinEnd();
    case "signal":
      return handlers.signal(message.number);
    case "resize":
      return handlers.resize(message.rows, message.columns);
  }
}

export class StdioRelay implements ProcessStdio {
  private connection: Socket | undefined;
  /** The stand-in's connection once it said HELLO; undefined once abandoned (output and exit then go nowhere). */
  private readonly connected: Promise<Socket | undefined>;
  private resolveConnected!: (socket: Socket | undefined) => void; // assigned by the executor in the constructor, which runs at once
  private markGone!: () => void; // likewise
  /** Resolves when the stand-in that connected has gone (its connection closed), or on abandon(). */
  readonly gone: Promise<void>;

  private constructor(
    private readonly server: Server,
    readonly path: string,
    private readonly where: string,
    handlers: StandInHandlers,
  ) {
    this.connected = new Promise((resolve) => (this.resolveConnected = resolve));
    this.gone = new Promise((resolve) => (this.markGone = resolve));
    server.on("connection", (socket: Socket) => {
      if (this.connection) {
        socket.destroy(); // one stand-in per container
        return;
      }
      this.connection = socket;
      socket.on("error", () => undefined);
      socket.once("close", () => this.markGone());
      // Output and the exit wait for the HELLO (the top of this file says why); later HELLOs change nothing here.
      const hello = (pid: number) => {
        handlers.hello(pid);
        this.resolveConnected(socket);
      };
      readFrames(socket, { ...handlers, hello }, this.where);
    });
  }

  /** Whether a stand-in has connected (it may have gone since). */
  get everConnected(): boolean {
    return this.connection !== undefined;
  }

  /** Nobody will take the output and exit any more: they are dropped from now on instead of waiting for a stand-in. */
  abandon(): void {
    this.resolveConnected(undefined);
    this.markGone();
  }

  static async listen(path: string, where: string, handlers: StandInHandlers): Promise<StdioRelay> {
    await rm(path, { force: true });
    const server = createServer();
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(path, resolve));
    return new StdioRelay(server, path, where, handlers);
  }

  /** Sends output once the stand-in is connected; resolves when the socket has taken it. */
  async send(type: StandInFrame.STDOUT | StandInFrame.STDERR | StandInFrame.EXIT, payload: Buffer): Promise<void> {
    const socket = await this.connected;
    if (!socket) return;
    for (let offset = 0; offset === 0 || offset < payload.length; offset += MAX_PAYLOAD_BYTES) {
      const piece = payload.subarray(offset, offset + MAX_PAYLOAD_BYTES);
      const header = Buffer.alloc(HEADER_BYTES);
      header.writeUInt8(type, 0);
      header.writeUInt32BE(piece.length, 1);
      if (socket.destroyed) return;
      const flushed = socket.write(Buffer.concat([header, piece]));
      if (!flushed) await new Promise((resolve) => socket.once("drain", resolve).once("close", resolve));
    }
  }

  writeOutput(stream: "stdout" | "stderr", data: Buffer): Promise<void> {
    return this.send(stream === "stdout" ? StandInFrame.STDOUT : StandInFrame.STDERR, data);
  }

  sendExit(status: number): Promise<void> {
    const payload = Buffer.alloc(4);
    payload.writeInt32BE(status);
    return this.send(StandInFrame.EXIT, payload);
  }

  async close(): Promise<void> {
    this.abandon();
    this.connection?.destroy();
    await new Promise((resolve) => this.server.close(resolve));
    await rm(this.path, { force: true });
  }
}

/** Reads frames one at a time, pausing the socket while a frame is handled (back-pressure). */
function readFrames(socket: Socket, handlers: StandInHandlers, where: string): void {
  let buffered: Buffer = Buffer.alloc(0);
  let busy = false;
  const fail = (what: string) => {
    trace(where, `stand-in protocol violation: ${what}`);
    socket.destroy();
  };
  const drain = async () => {
    if (busy) return;
    busy = true;
    socket.pause();
    try {
      while (buffered.length >= HEADER_BYTES) {
        const type = buffered.readUInt8(0);
        const length = buffered.readUInt32BE(1);
        if (length > MAX_PAYLOAD_BYTES) return fail(`frame of ${length} bytes`);
        if (buffered.length < HEADER_BYTES + length) break;
        const message = decodeStandInFrame(type, buffered.subarray(HEADER_BYTES, HEADER_BYTES + length));
        buffered = buffered.subarray(HEADER_BYTES + length);
        if (!message) return fail(`unexpected frame type ${type} of ${length} bytes`);
        await dispatch(message, handlers);
      }
    } catch (error) {
      trace(where, `stand-in frame handling failed: ${String(error)}`);
    } finally {
      busy = false;
      if (!socket.destroyed) socket.resume();
    }
    // Bytes that arrived while a handler ran may already hold the next frame.
    if (!socket.destroyed && buffered.length >= HEADER_BYTES && buffered.length >= HEADER_BYTES + buffered.readUInt32BE(1)) void drain();
  };
  socket.on("data", (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    void drain();
  });
}
