// The harness's small C programs (`harness/<name>.c`), compiled once per workspace: what a
// test needs that Node cannot do (be a child subreaper, receive a descriptor, hold a pty).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const sources = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..", "test", "integration", "harness");

/** Compiles `harness/<name>.c` into `dir` (once) and returns the program's path. */
export function helperBinary(dir: string, name: string): string {
  const binary = join(dir, name);
  if (!existsSync(binary)) execFileSync("gcc", ["-O2", "-Wall", "-Werror", "-o", binary, join(sources, `${name}.c`)]);
  return binary;
}
