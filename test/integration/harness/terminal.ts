// The far end of a process's terminal, as a test holds it (harness/pty.c): either conmon's
// part, listening on a console socket for the pty master that `moat create/exec
// --console-socket` sends, or a person's terminal that `moat run -t` / `moat exec -t` runs on.
// The test reads the terminal's output, types into it and resizes it.
import { spawn, type ChildProcess } from "node:child_process";
import type { Writable } from "node:stream";
import { helperBinary } from "./c-helper.js";

export class TerminalSession {
  private text = "";
  private reports = "";
  private closed = false;
  private readonly waiters: Array<() => void> = [];
  /** The helper's exit status: 0 for a console socket, the command's own for `run`. */
  readonly exit: Promise<number>;

  private constructor(private readonly child: ChildProcess) {
    child.stdout!.on("data", (chunk: Buffer) => this.grow(() => (this.text += chunk.toString()))); // stdio[1] is "pipe"
    child.stderr!.on("data", (chunk: Buffer) => this.grow(() => (this.reports += chunk.toString()))); // stdio[2] is "pipe"
    this.exit = new Promise((resolve) =>
      child.once("close", (code) =>
        this.grow(() => {
          this.closed = true;
          resolve(code ?? -1);
        }),
      ),
    );
  }

  /** Listens on `socketPath` as conmon does; resolves once it listens. */
  static async console(dir: string, socketPath: string): Promise<TerminalSession> {
    const session = new TerminalSession(spawn(helperBinary(dir, "pty"), ["console", socketPath], { stdio: ["pipe", "pipe", "pipe", "pipe"] }));
    await session.until(() => session.reports.includes("listening\n"), "listening");
    return session;
  }

  /** Runs `command` on a new terminal of the given size. */
  static run(dir: string, rows: number, columns: number, command: string[]): TerminalSession {
    return new TerminalSession(spawn(helperBinary(dir, "pty"), ["run", String(rows), String(columns), ...command], { stdio: ["pipe", "pipe", "pipe", "pipe"] }));
  }

  /** Everything the terminal showed so far. */
  get output(): string {
    return this.text;
  }

  /** The name sent with the master on the console socket. */
  async receivedName(): Promise<string> {
    await this.until(() => /received .*\n/.test(this.reports), "a descriptor on the console socket");
    return /received (.*)\n/.exec(this.reports)![1]!; // matched just above
  }

  /** Resolves once the output contains `text`. */
  waitFor(text: string): Promise<void> {
    return this.until(() => this.text.includes(text), JSON.stringify(text));
  }

  type(input: string): void {
    this.child.stdin!.write(input); // stdio[0] is "pipe"
  }

  /** Sets the terminal's window size (TIOCSWINSZ on the master), as conmon does on a resize. */
  resize(rows: number, columns: number): void {
    (this.child.stdio[3] as Writable).write(`${rows} ${columns}\n`); // stdio[3] is the "pipe" asked for
  }

  /** Rejects (with what the terminal showed) if the helper exits before `done` holds. */
  private until(done: () => boolean, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (done()) return resolve();
        if (this.closed) return reject(new Error(`terminal ended before ${what}; output ${JSON.stringify(this.text)}; reports ${JSON.stringify(this.reports)}`));
        this.waiters.push(check);
      };
      check();
    });
  }

  /** Changes what the session knows, then lets every waiter look again. */
  private grow(change: () => void): void {
    change();
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}
