// Starting moat-standin (src/host/standin/moat-standin.c), the host process that stands for a
// container's process: `create` leaves one behind, `exec` runs one in the foreground (or
// leaves it with --detach). With a terminal it either hands a new pty's master to the
// caller's --console-socket, as runc does, or uses the person's terminal it was given (raw
// while it runs).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Readable } from "node:stream";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { packageRoot } from "../config/index.js";

/** Where the process's terminal goes: to the caller's console socket, or to this command's own terminal. */
export type StandInTerminal = { consoleSocket: string } | "own" | undefined;

/**
 * The stand-in's terminal mode, checked as runc checks it: a console socket only for a process
 * with a terminal, and a detached process with a terminal needs one (nobody else would hold
 * its terminal).
 */
export function standInTerminal(where: string, terminal: boolean, consoleSocket: string | undefined, detached: boolean): StandInTerminal {
  if (consoleSocket !== undefined && !terminal) {
    throw new MoatError("MOAT_CLI_TERMINAL", `${where}: --console-socket is given, but the process has no terminal`, { hint: "set process.terminal (exec: --tty), or drop --console-socket", status: Code.INVALID_ARGUMENT });
  }
  if (!terminal) return undefined;
  if (consoleSocket !== undefined) return { consoleSocket: resolve(consoleSocket) };
  if (detached) {
    throw new MoatError("MOAT_CLI_TERMINAL", `${where}: the process has a terminal and runs detached, so --console-socket must say where its terminal goes`, { status: Code.INVALID_ARGUMENT });
  }
  return "own";
}

export interface StandInOptions {
  terminal: StandInTerminal;
  /** Leave it behind in its own session (create, exec --detach) rather than as this command's child. */
  detached: boolean;
  where: string;
}

/** Starts the stand-in for the process whose moatd socket is `stdioSocket`; resolves with its pid once its terminal, if any, is handed over. */
export async function startStandIn(stdioSocket: string, options: StandInOptions): Promise<{ child: ChildProcess; pid: number }> {
  const { terminal } = options;
  const consoleSocket = typeof terminal === "object" ? terminal.consoleSocket : undefined;
  const mode = consoleSocket ? ["--console-socket", consoleSocket] : terminal === "own" ? ["--tty"] : [];
  // The stand-in inherits this process's stdio, which the caller gave the container. With a
  // console socket, fd 3 is where it reports whether the master went out.
  const child = spawn(standInBinary(), [...mode, stdioSocket], { stdio: ["inherit", "inherit", "inherit", consoleSocket ? "pipe" : "ignore"], detached: options.detached });
  const pid = await new Promise<number>((resolvePid, reject) => {
    child.once("spawn", () => resolvePid(child.pid!)); // a spawned child has a pid
    child.once("error", reject);
  });
  if (consoleSocket) {
    const report = await readAll(child.stdio[3] as Readable); // stdio[3] is the "pipe" asked for
    if (report !== "ok\n") {
      child.kill("SIGKILL");
      throw new MoatError("MOAT_CLI_TERMINAL", `${options.where}: --console-socket ${consoleSocket}: cannot hand over the terminal: ${report.trim() || "the stand-in exited"}`, {
        hint: "the caller must listen on the console socket before it runs the runtime, as for runc",
        status: Code.FAILED_PRECONDITION,
      });
    }
  }
  return { child, pid };
}

function readAll(stream: Readable): Promise<string> {
  return new Promise((resolveText) => {
    let text = "";
    stream.on("data", (chunk: Buffer) => (text += chunk.toString()));
    stream.once("close", () => resolveText(text));
    stream.once("error", () => resolveText(text));
  });
}

function standInBinary(): string {
  const standIn = join(packageRoot(), "dist", "bin", "moat-standin");
  if (!existsSync(standIn)) throw new MoatError("MOAT_CLI_STANDIN", `${standIn} is not built`, { hint: "make build", status: Code.FAILED_PRECONDITION });
  return standIn;
}
