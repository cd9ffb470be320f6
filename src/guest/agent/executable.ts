// Whether an exec'd process's program exists in its container, asked before `crun exec` runs.
//
// runc looks the program up inside the container before it reports the process started, so an
// exec of a binary that is not there fails at Task.Start (containerd's clients, Docker's exit
// 127, rely on that). crun looks it up too, but only in the process it has already forked and
// reported (its pid file is written): the failure would come as a quick exit instead. So the
// agent looks first, the same way: a name with a slash is a path (relative to the process's
// cwd), any other is searched in the process's PATH; the result must be a regular file with an
// execute bit. The container's files are seen through /proc/<init pid>/root, and symlinks are
// followed by hand inside that root (an absolute link target is the container's path, not the
// guest's), at most 40 of them, as the kernel allows.
import { lstat, readlink, stat } from "node:fs/promises";
import { posix } from "node:path";

/** PATH when the process's environment has none: runc's and crun's default. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const MAX_SYMLINKS = 40;

/** A path inside `root` (a directory standing for the container's /) with every symlink resolved within it; undefined when a part is missing. */
export async function resolveInRoot(root: string, path: string): Promise<string | undefined> {
  const pending = path.split("/").filter((part) => part !== "" && part !== ".");
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!; // the loop checks it is not empty
    if (part === "..") {
      resolved.pop(); // .. of the root is the root
      continue;
    }
    const candidate = posix.join(root, ...resolved, part);
    let info;
    try {
      info = await lstat(candidate);
    } catch {
      return undefined;
    }
    if (!info.isSymbolicLink()) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) return undefined;
    const target = await readlink(candidate);
    if (target.startsWith("/")) resolved.length = 0;
    pending.unshift(...target.split("/").filter((piece) => piece !== "" && piece !== "."));
  }
  return posix.join(root, ...resolved);
}

/** The process's PATH from its OCI `env` ("NAME=value" strings). */
export function pathOf(env: unknown): string {
  if (!Array.isArray(env)) return DEFAULT_PATH;
  const entry = env.find((item): item is string => typeof item === "string" && item.startsWith("PATH="));
  return entry === undefined ? DEFAULT_PATH : entry.slice("PATH=".length);
}

/**
 * Why `program` cannot be run in the container whose root is `root`, in runc's words (which
 * Docker reads to answer exit 127), or undefined when it can.
 */
export async function missingExecutable(root: string, program: string, cwd: string, env: unknown): Promise<string | undefined> {
  if (program === "") return `exec: "": executable file not found in $PATH`;
  if (program.includes("/")) {
    const path = posix.resolve(cwd.startsWith("/") ? cwd : "/", program);
    return (await isExecutable(root, path)) ? undefined : `exec: "${program}": stat ${path}: no such file or directory`;
  }
  for (const dir of pathOf(env).split(":")) {
    const path = posix.resolve(cwd.startsWith("/") ? cwd : "/", dir === "" ? "." : dir, program);
    if (await isExecutable(root, path)) return undefined;
  }
  return `exec: "${program}": executable file not found in $PATH`;
}

async function isExecutable(root: string, path: string): Promise<boolean> {
  const resolved = await resolveInRoot(root, path);
  if (resolved === undefined) return false;
  try {
    const info = await stat(resolved);
    return info.isFile() && (info.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}
