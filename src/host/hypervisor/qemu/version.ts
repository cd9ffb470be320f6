// What the installed QEMU is: its version and the machine types it offers.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** "7.2.22" from `qemu-system-x86_64 --version`; throws if QEMU cannot run. */
export async function qemuVersion(qemuPath: string): Promise<string> {
  const { stdout } = await run(qemuPath, ["--version"], { timeout: 10_000 });
  return /version (\S+)/.exec(stdout)?.[1] ?? stdout.split("\n")[0] ?? "";
}

/** Machine type names from `qemu-system-x86_64 -machine help`. */
export async function qemuMachineTypes(qemuPath: string): Promise<string[]> {
  const { stdout } = await run(qemuPath, ["-machine", "help"], { timeout: 10_000 });
  return stdout
    .split("\n")
    .slice(1)
    .map((line) => line.split(/\s+/)[0] ?? "")
    .filter((name) => name.length > 0);
}
