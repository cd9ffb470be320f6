// Running iproute2 in a network namespace: `nsenter --net=<path>` then the program. The host
// here is not TCG: a program per step costs a few ms, and `-batch -` keeps it to one per tool.
import { spawn } from "node:child_process";

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `argv` in network namespace `netns`, `input` on its stdin; never rejects for a non-zero exit. */
export function inNetns(netns: string, argv: string[], input = ""): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn("nsenter", [`--net=${netns}`, "--", ...argv], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr: stderr.trim() }));
    child.stdin.on("error", () => undefined); // a program that exits early closes its stdin: its exit says why
    child.stdin.end(input);
  });
}
