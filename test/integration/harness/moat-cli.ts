// Runs the real `moat` (bin/moat, the bundled CLI) as its users do, with a private state root;
// and any other real client (podman, ctr) the same way.
import { spawn } from "node:child_process";
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
