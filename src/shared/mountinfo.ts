// /proc/<pid>/mountinfo (proc(5)): one line a mount, "ID PARENT MAJ:MIN ROOT MOUNTPOINT
// OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTIONS", paths with space, tab, newline and
// backslash escaped as octal (\040).
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";

export interface MountEntry {
  /** The directory of the file system that is this mount's root ("/" unless a bind of a subdirectory). */
  root: string;
  mountPoint: string;
  /** The mount's own options ("rw,nosuid,nodev,relatime"). */
  mountOptions: string[];
  fsType: string;
  /** The file system's own options ("rw,memory" for a v1 cgroup tree). */
  superOptions: string[];
}

function unescapePath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Every mount in `text`, in its order; lines that are not mounts are skipped. */
export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    const [mountFields = "", fsFields = ""] = line.split(" - ");
    const [, , , root = "", mountPoint, mountOptions = ""] = mountFields.split(" ");
    const [fsType, , superOptions = ""] = fsFields.split(" ");
    if (mountPoint && fsType) entries.push({ root: unescapePath(root), mountPoint: unescapePath(mountPoint), mountOptions: mountOptions.split(","), fsType, superOptions: superOptions.split(",") });
  }
  return entries;
}

/** This process's mounts. */
export async function ownMounts(): Promise<MountEntry[]> {
  return parseMountinfo(await readFile("/proc/self/mountinfo", "utf8"));
}

/** This process's mounts, read at once (for code that is synchronous, as a spec's rewrite is). */
export function ownMountsSync(): MountEntry[] {
  return parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8"));
}
