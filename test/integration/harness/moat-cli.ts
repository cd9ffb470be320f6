// Runs the real `moat` (bin/moat, the bundled CLI) as its users do, with a private state root;
// and any other real client (podman, ctr) the same way.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");
export const moatBinary = join(repoRoot, "bin", "moat");

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Written to the command's stdin, which is then closed; without it stdin is /dev/null. */
  input?: string | Buffer;
}

/** Runs `command` to its end and collects its output. */
export function runCommand(command: string, args: string[], options: RunOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...options.env }, cwd: options.cwd, stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    const stdout: Buffer[] = [];
    let stderr = "";
    child.stdout!.on("data", (chunk: Buffer) => stdout.push(chunk)); // stdio[1] is "pipe"
    child.stderr!.on("data", (chunk) => (stderr += chunk)); // stdio[2] is "pipe"
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout: Buffer.concat(stdout).toString(), stderr }));
    child.stdin?.on("error", () => undefined); // a command that exits without reading its input is not an error here
    child.stdin?.end(options.input);
  });
}

export function runMoat(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runCommand(moatBinary, args, { env });
}

/** A `moat` left running: its output so far, and its end. */
export interface RunningMoat {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Its exit code (null when a signal ended it). */
  closed: Promise<number | null>;
}

/**
 * Starts `moat args` and resolves once its stdout has `marker` (a container that says it
 * runs); fails with moat's stderr if it ends first.
 */
export async function startMoat(args: string[], marker: string, env: NodeJS.ProcessEnv = {}): Promise<RunningMoat> {
  const child = spawn(moatBinary, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const closed = once(child, "close").then(([code]) => code as number | null); // "close" gives (code, signal)
  while (!stdout.includes(marker) && child.exitCode === null && child.signalCode === null) await sleep(100);
  if (!stdout.includes(marker)) throw new Error(`moat ${args.join(" ")} ended before it printed ${JSON.stringify(marker)}: ${stderr}`);
  return { child, stdout: () => stdout, stderr: () => stderr, closed };
}
