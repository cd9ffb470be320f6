// Proportional set size (PSS) of processes, from /proc/<pid>/smaps_rollup: each shared page is
// counted once, split between the processes that map it, so that sums over processes add up.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { freemem } from "node:os";

/** PSS of one process in MiB; 0 if it is gone. */
export function pssMiB(pid: number): number {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const kib = Number(/^Pss:\s+(\d+) kB$/m.exec(rollup)?.[1] ?? 0);
    return kib / 1024;
  } catch {
    return 0;
  }
}

/** Pids whose command line matches `pattern` (pgrep -f). */
export function pidsMatching(pattern: string): number[] {
  try {
    return execFileSync("pgrep", ["-f", "--", pattern], { encoding: "utf8" })
      .split("\n")
      .filter((line) => line.trim().length > 0)
      .map(Number);
  } catch {
    return [];
  }
}

/** `pids` and all their descendants (gVisor's ptrace stubs are children of its sandbox). */
export function withDescendants(pids: number[]): number[] {
  const all = new Set(pids);
  const queue = [...pids];
  while (queue.length > 0) {
    const parent = queue.pop()!; // non-empty: checked by the loop
    for (const child of pidsOfParent(parent)) {
      if (!all.has(child)) {
        all.add(child);
        queue.push(child);
      }
    }
  }
  return [...all];
}

function pidsOfParent(parent: number): number[] {
  try {
    return execFileSync("pgrep", ["-P", String(parent)], { encoding: "utf8" })
      .split("\n")
      .filter((line) => line.trim().length > 0)
      .map(Number);
  } catch {
    return [];
  }
}

/** MemAvailable, in MiB: what the kernel says can still be used without swapping. */
export function availableMiB(): number {
  const kib = Number(/^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? freemem() / 1024);
  return kib / 1024;
}
