// The side-by-side baselines every benchmark runs on the same work in the same run: runc and
// gVisor (runsc, ptrace platform, which needs no KVM) starting a busybox container.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface Baseline {
  name: string;
  /** Runs the bundle's process to completion once; returns wall milliseconds. */
  run(id: string): number;
}

/** A busybox OCI bundle in `dir` whose process is `args`. */
export function busyboxBundle(dir: string, args: string[]): string {
  const rootfs = join(dir, "rootfs");
  mkdirSync(join(rootfs, "bin"), { recursive: true });
  copyFileSync("/bin/busybox", join(rootfs, "bin", "busybox"));
  for (const applet of ["sh", "echo", "true"]) symlinkSync("busybox", join(rootfs, "bin", applet));
  execFileSync("runc", ["spec", "--bundle", dir]);
  const configPath = join(dir, "config.json");
  const config = JSON.parse(execFileSync("cat", [configPath], { encoding: "utf8" })) as { process: { args: string[]; terminal: boolean } };
  config.process.args = args;
  config.process.terminal = false;
  writeFileSync(configPath, JSON.stringify(config));
  return dir;
}

function timed(command: string, args: string[]): number {
  const started = performance.now();
  const result = spawnSync(command, args, { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
  const elapsed = performance.now() - started;
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")}: exit ${result.status}: ${result.stderr.trim()}`);
  return elapsed;
}

export function runcBaseline(bundle: string, stateRoot: string): Baseline {
  return { name: "runc run", run: (id) => timed("runc", ["--root", stateRoot, "run", "--bundle", bundle, id]) };
}

export function gvisorBaseline(bundle: string, stateRoot: string): Baseline {
  return {
    name: "gVisor runsc run (ptrace)",
    run: (id) => timed("runsc", ["--root", stateRoot, "--platform=ptrace", "--network=none", "run", "--bundle", bundle, id]),
  };
}
