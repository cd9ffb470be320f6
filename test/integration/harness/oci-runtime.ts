// Drives `moat` as an OCI runtime's callers do. `createAsConmon` plays conmon's part: it runs
// `moat create` as a child subreaper with pipes for the container's stdio (which the
// stand-in inherits), and learns the stand-in's exit status when it exits.
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import type { Readable } from "node:stream";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { moatBinary } from "./moat-cli.js";

const source = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..", "test", "integration", "harness", "subreaper.c");

/** Compiles the subreaper helper into `dir` (once) and returns its path. */
export function subreaperBinary(dir: string): string {
  const binary = join(dir, "subreaper");
  if (!existsSync(binary)) execFileSync("gcc", ["-O2", "-Wall", "-Werror", "-o", binary, source]);
  return binary;
}

export interface CreatedContainer {
  /** Resolves with `moat create`'s own exit status. */
  created: Promise<number>;
  /** Resolves with the stand-in's pid and exit status once it has exited. */
  standIn: Promise<{ pid: number; exitStatus: number }>;
  stdout: () => string;
  stderr: () => string;
}

export function createAsConmon(subreaper: string, args: string[], stdin: string): CreatedContainer {
  const child = spawn(subreaper, [moatBinary, ...args], { stdio: ["pipe", "pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let reports = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  (child.stdio[3] as Readable).on("data", (chunk) => (reports += chunk)); // stdio[3] is the "pipe" asked for
  child.stdin.end(stdin);
  const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
  const report = (pattern: RegExp) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const look = () => {
        const match = pattern.exec(reports);
        if (match) resolve(match);
        return match;
      };
      (child.stdio[3] as Readable).on("data", look);
      void closed.then(() => look() ?? reject(new Error(`no "${pattern.source}" report; stderr: ${stderr}`)));
    });
  return {
    created: report(/^command (\d+)$/m).then((match) => Number(match[1])),
    standIn: report(/^orphan (\d+) (\d+)$/m).then((match) => ({ pid: Number(match[1]), exitStatus: Number(match[2]) })),
    stdout: () => stdout,
    stderr: () => stderr,
  };
}
