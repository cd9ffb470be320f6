// Starting moat-standin (src/host/standin/moat-standin.c), the host process that stands for a
// container's process: `create` leaves one behind, `exec` runs one in the foreground (or
// leaves it with --detach). With a terminal it either hands a new pty's master to the
// caller's --console-socket, as runc does, or uses the person's terminal it was given (raw
// while it runs).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Readable, Writable } from "node:stream";
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
  const spawned = await spawnStandIn(stdioSocket, options, false);
  await spawned.handedOver();
  return spawned;
}

/**
 * A stand-in started before its container is made (`create`): it has a pid (and with
 * `newNetns` its own new network namespace) for moatd to give the prestart hooks, and waits
 * for `connect(stdioSocket)` before it reaches moatd. `cancel()` makes it exit (the create
 * failed).
 */
export async function startStandInFirst(options: StandInOptions & { newNetns: boolean }): Promise<{ child: ChildProcess; pid: number; connect(stdioSocket: string): Promise<void>; cancel(): void }> {
  const spawned = await spawnStandIn("-", options, true, options.newNetns);
  const socketPipe = spawned.child.stdio[4] as Writable; // the "pipe" asked for at fd 4
  socketPipe.on("error", () => undefined); // a stand-in that exited early: its exit says why
  return {
    child: spawned.child,
    pid: spawned.pid,
    connect: async (stdioSocket) => {
      socketPipe.end(stdioSocket);
      await spawned.handedOver();
    },
    cancel: () => {
      socketPipe.end();
      spawned.child.kill("SIGKILL");
    },
  };
}

async function spawnStandIn(socketArgument: string, options: StandInOptions, socketPipe: boolean, newNetns = false): Promise<{ child: ChildProcess; pid: number; handedOver(): Promise<void> }> {
  const { terminal } = options;
  const consoleSocket = typeof terminal === "object" ? terminal.consoleSocket : undefined;
  const mode = [...(newNetns ? ["--new-netns"] : []), ...(consoleSocket ? ["--console-socket", consoleSocket] : terminal === "own" ? ["--tty"] : [])];
  // The stand-in inherits this process's stdio, which the caller gave the container. With a
  // console socket, fd 3 is where it reports whether the master went out; fd 4 is where
  // startStandInFirst writes the socket path.
  const child = spawn(standInBinary(), [...mode, socketArgument], {
    stdio: ["inherit", "inherit", "inherit", consoleSocket ? "pipe" : "ignore", ...(socketPipe ? (["pipe"] as const) : [])],
    detached: options.detached,
  });
  const pid = await new Promise<number>((resolvePid, reject) => {
    child.once("spawn", () => resolvePid(child.pid!)); // a spawned child has a pid
    child.once("error", reject);
  });
  // Read from the start: the report comes once the stand-in has connected.
  const report = consoleSocket ? readAll(child.stdio[3] as Readable) : Promise.resolve("ok\n"); // stdio[3] is the "pipe" asked for
  const handedOver = async () => {
    if ((await report) !== "ok\n") {
      child.kill("SIGKILL");
      throw new MoatError("MOAT_CLI_TERMINAL", `${options.where}: --console-socket ${consoleSocket}: cannot hand over the terminal: ${(await report).trim() || "the stand-in exited"}`, {
        hint: "the caller must listen on the console socket before it runs the runtime, as for runc",
        status: Code.FAILED_PRECONDITION,
      });
    }
  };
  return { child, pid, handedOver };
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
