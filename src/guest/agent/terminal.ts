// A process's terminal in the guest. crun creates the pty and sends its master to the unix
// socket given as --console-socket, as runc does; Node can neither receive a descriptor nor
// set a window size, so moat-tty (src/guest/tty/moat-tty.c) listens on that socket, takes the
// master, and relays it over plain streams: the terminal's input and output, and window sizes
// on a control stream. One terminal, one moat-tty; it exits when the terminal hangs up.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

const MOAT_TTY = "/sbin/moat-tty";
/** Short on purpose: a unix socket path has at most 107 bytes, and container ids up to 128. */
const SOCKET_DIR_PREFIX = "/run/moat/tty-";
/** The largest window size a terminal takes (struct winsize holds unsigned shorts). */
export const MAX_WINDOW_CELLS = 0xffff;

export class Terminal {
  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    /** Where crun sends the master: `crun … --console-socket <socketPath>`. */
    readonly socketPath: string,
    private readonly control: Writable,
  ) {}

  /** Starts moat-tty and waits until it listens on its socket. */
  static async open(where: string): Promise<Terminal> {
    const dir = await mkdtemp(SOCKET_DIR_PREFIX);
    const socketPath = join(dir, "console.sock");
    // fd 3 is a socket pair, both ways: "ready" comes back on it, window sizes go out on it.
    const child = spawn(MOAT_TTY, [socketPath], { stdio: ["pipe", "pipe", "inherit", "pipe"] });
    const control = child.stdio[3] as Readable & Writable; // stdio[3] is the "pipe" asked for: a duplex socket
    control.on("error", () => undefined); // moat-tty gone: its exit ends the output, which the caller sees
    child.stdin!.on("error", () => undefined); // the same; WriteStdin reports a write to a closed terminal
    try {
      await new Promise<void>((resolve, reject) => {
        let said = "";
        control.on("data", (chunk: Buffer) => {
          said += chunk.toString();
          if (said.startsWith("ready\n")) resolve();
        });
        child.once("error", (error) => reject(new MoatError("MOAT_TTY_FAILED", `${where}: cannot run ${MOAT_TTY}`, { cause: error, status: Code.INTERNAL })));
        child.once("exit", (code) => reject(new MoatError("MOAT_TTY_FAILED", `${where}: ${MOAT_TTY} exited (status ${code}) before it listened`, { status: Code.INTERNAL })));
      });
    } catch (error) {
      child.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    child.once("exit", () => void rm(dir, { recursive: true, force: true }));
    return new Terminal(child, dir, socketPath, control);
  }

  /** The process's input. */
  get input(): Writable {
    return this.child.stdin!; // stdio[0] is "pipe"
  }

  /** The terminal's output: stdout and stderr are one stream on a terminal. It ends when the terminal hangs up. */
  get output(): Readable {
    return this.child.stdout!; // stdio[1] is "pipe"
  }

  /** Sets the window size; the kernel sends the terminal's foreground process group SIGWINCH. */
  resize(rows: number, columns: number, where: string): void {
    if (!Number.isInteger(rows) || !Number.isInteger(columns) || rows < 0 || columns < 0 || rows > MAX_WINDOW_CELLS || columns > MAX_WINDOW_CELLS) {
      throw new MoatError("MOAT_TTY_SIZE", `${where}: window size ${rows}x${columns}: rows and columns must be 0 to ${MAX_WINDOW_CELLS}`, { status: Code.INVALID_ARGUMENT });
    }
    this.control.write(`${rows} ${columns}\n`);
  }

  /**
   * Says no more sizes will come because the process's runtime (crun exec) has exited: if it
   * never sent the terminal (it failed early), moat-tty gives up, and the output ends.
   */
  endControl(): void {
    this.control.end();
  }

  /** Stops the relay (if the terminal has not hung up already) and removes its socket. */
  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await rm(this.dir, { recursive: true, force: true });
  }
}
