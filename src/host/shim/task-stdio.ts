// A task process's stdio as containerd hands it: FIFO paths it has already opened the other
// end of (ctr, CRI), or for stdout/stderr a `file://` log URI. The daemon writes the process's
// output here and, once it is all out, its exit status, which ends the streams (so the reader
// sees EOF) and is then reported through `exited`.
//
// With io.terminal the process runs on a pty in its guest (the spec's process.terminal): the
// stdin FIFO carries the keys typed, the stdout FIFO the terminal's one output stream, and
// there is no stderr: ctr hands none, but containerd's Go client (cio.NewCreator with a
// terminal and a stderr writer, as nerdctl and Docker use it) names a stderr FIFO it never
// makes, so a stderr path is ignored with a terminal, as runc's shim ignores it; window sizes
// come through Task.ResizePty (resize below).
//
// FIFOs are opened O_RDWR|O_NONBLOCK: the open never blocks and never fails for want of a
// peer, and a net.Socket on the descriptor reads and writes through the event loop instead of
// the thread pool.
import { constants, createWriteStream, open } from "node:fs";
import { Socket } from "node:net";
import type { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { settleWithin } from "../../shared/deadline.js";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import type { ProcessStdio, StdioFactory, StdioInput } from "../daemon/index.js";
import { startLogBinary, type LogOwner } from "./log-binary.js";
import { StdinFifo } from "./stdin-fifo.js";

export interface TaskIo {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

/** How long the last output may take to drain into a FIFO nobody reads before it is dropped. */
const FLUSH_MS = 2_000;

export class TaskStdio implements ProcessStdio {
  private constructor(
    readonly path: string,
    private readonly stdin: StdinFifo | undefined,
    private readonly input: StdioInput,
    private readonly outputs: { stdout: Writable | undefined; stderr: Writable | undefined },
    private readonly exited: (status: number) => void,
  ) {}

  /** The factory the daemon calls; `exited` hears the exit status after the output is out. */
  static factory(io: TaskIo, owner: LogOwner, exited: (status: number) => void, made: (stdio: TaskStdio) => void): StdioFactory {
    return async (input, where) => {
      const opened: Array<{ destroy(): void }> = [];
      try {
        const stdin = io.stdin ? StdinFifo.open(io.stdin, where) : undefined;
        if (stdin) opened.push(stdin);
        const { stdout, stderr } = await openOutputs(io, owner, where);
        for (const sink of new Set([stdout, stderr])) if (sink) opened.push(sink);
        const stdio = new TaskStdio(io.stdout, stdin, input, { stdout, stderr }, exited);
        made(stdio);
        return stdio;
      } catch (error) {
        for (const stream of opened) stream.destroy();
        throw error;
      }
    };
  }

  processReady(): void {
    this.stdin?.start(this.input);
  }

  async writeOutput(stream: "stdout" | "stderr", data: Buffer): Promise<void> {
    const sink = this.outputs[stream];
    if (!sink || sink.destroyed) return; // nobody asked for this stream
    if (!sink.write(data)) await new Promise((resolve) => sink.once("drain", resolve).once("close", resolve));
  }

  async sendExit(status: number): Promise<void> {
    this.stdin?.destroy();
    await this.endOutputs();
    this.exited(status);
  }

  /** Task.ResizePty: sets the window size of the process's terminal in the guest. */
  resize(rows: number, columns: number): Promise<void> {
    return this.input.resize(rows, columns);
  }

  /** Task.CloseIO: the caller's stdin is done; the process sees EOF (on a terminal: its end-of-file character). */
  closeStdin(): void {
    this.stdin?.close();
  }

  async close(): Promise<void> {
    this.stdin?.destroy();
    for (const sink of new Set(Object.values(this.outputs))) sink?.destroy();
  }

  private async endOutputs(): Promise<void> {
    for (const sink of new Set(Object.values(this.outputs))) {
      if (!sink || sink.destroyed) continue;
      const finished = new Promise<void>((resolve) => sink.once("finish", resolve).once("close", resolve).once("error", () => resolve()));
      sink.end();
      await settleWithin(finished, FLUSH_MS);
      sink.destroy();
    }
  }
}

/** Opens an output FIFO, write-only as a socket: O_RDWR makes us a reader too, and a readable socket would eat our own output. */
async function openFifo(path: string, where: string): Promise<Socket> {
  try {
    // A plain descriptor, not a FileHandle: the socket owns it from here and closes it.
    const fd = await new Promise<number>((resolve, reject) => open(path, constants.O_RDWR | constants.O_NONBLOCK, (error, opened) => (error ? reject(error) : resolve(opened))));
    const socket = new Socket({ fd, readable: false, writable: true });
    socket.on("error", () => undefined); // a reader or writer that went away ends the stream, nothing more
    return socket;
  } catch (error) {
    throw new MoatError("MOAT_SHIM_STDIO", `${where}: cannot open FIFO ${path}`, { cause: error, status: Code.INVALID_ARGUMENT });
  }
}

type Sinks = { stdout: Writable | undefined; stderr: Writable | undefined };

/** stdout and stderr: a `binary://` logger takes both; otherwise each is a FIFO or a `file://` log. */
async function openOutputs(io: TaskIo, owner: LogOwner, where: string): Promise<Sinks> {
  if (io.stdout.startsWith("binary://")) return startLogBinary(io.stdout, owner, where);
  const stdout = io.stdout ? await openOutput(io.stdout, where) : undefined;
  // ctr hands one FIFO (or log file) for both streams when they go to the same place.
  const stderr = io.terminal ? undefined : io.stderr === io.stdout ? stdout : io.stderr ? await openOutput(io.stderr, where).catch((error: unknown) => (stdout?.destroy(), Promise.reject(error))) : undefined;
  return { stdout, stderr };
}

/** A FIFO path, or a `file://` URI (a log file, appended to). */
async function openOutput(target: string, where: string): Promise<Writable> {
  const scheme = /^([a-z]+):\/\//.exec(target)?.[1];
  if (scheme === undefined) return openFifo(target, where);
  if (scheme === "file") {
    const stream = createWriteStream(fileURLToPath(target), { flags: "a" });
    stream.on("error", () => undefined); // a log file that cannot be written loses output, not the task
    return stream;
  }
  throw new MoatError("MOAT_SHIM_STDIO", `${where}: log URI ${target}: ${scheme}:// is not supported (FIFOs, file:// and binary:// are)`, { status: Code.UNIMPLEMENTED });
}

