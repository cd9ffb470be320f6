// A VM's socket directory (VmPaths.socketDir, socketDirFor): made right after its state
// directory, removed right before it, moved with it (a warm pool VM handed to a sandbox). It
// holds every unix socket of the VM and of its containers' stand-ins, so it gets the state
// directory's care: mode 0700 under a socket root that must be a real directory owned by
// moatd's user and writable by no one else; only that user may connect to a VM's QMP or agent
// socket or take over a container's stdio. A link in it, `state-dir`, names the state
// directory it belongs to: what tells a leftover of the same state directory (replaced) from
// another's (refused), and what an operator or a test reads to tell whose it is.
import { lstat, mkdir, readlink, rename, rm, symlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import type { VmPaths } from "./hypervisor.js";

/** The link in a socket directory to the state directory it belongs to. */
export const STATE_DIR_LINK = "state-dir";

type SocketDirPaths = Pick<VmPaths, "stateDir" | "socketDir">;

/** Makes `paths.socketDir` (mode 0700) for `paths.stateDir`, which the caller has just created. */
export async function makeSocketDir(paths: SocketDirPaths, where: string): Promise<void> {
  const { socketDir, stateDir } = paths;
  await checkSocketRoot(dirname(socketDir), where);
  try {
    await mkdir(socketDir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw socketDirError(where, `cannot create ${socketDir}`, error);
    // Its state directory was just created, so no VM uses it: a leftover of an earlier VM of
    // the same state directory (removed before its socket directory could be) is replaced.
    const owner = await readlink(join(socketDir, STATE_DIR_LINK)).catch(() => undefined);
    if (owner !== undefined && owner !== stateDir) throw socketDirError(where, `${socketDir} already exists and belongs to ${owner}, not ${stateDir}`);
    await rm(socketDir, { recursive: true, force: true });
    await mkdir(socketDir, { mode: 0o700 }).catch((again: unknown) => {
      throw socketDirError(where, `cannot create ${socketDir}`, again);
    });
  }
  await symlink(stateDir, join(socketDir, STATE_DIR_LINK)).catch((error: unknown) => {
    throw socketDirError(where, `cannot link ${join(socketDir, STATE_DIR_LINK)} to ${stateDir}`, error);
  });
}

/** Removes a socket directory and the sockets in it; gone already counts as done. */
export async function removeSocketDir(socketDir: string): Promise<void> {
  await rm(socketDir, { recursive: true, force: true });
}

/**
 * Moves a VM's sockets to the socket directory of its new state directory (`to`; one the
 * caller made for it, holding no socket yet, is replaced): a listening socket keeps serving
 * under its new name. Its link then names the new state directory.
 */
export async function moveSocketDir(from: SocketDirPaths, to: SocketDirPaths, where: string): Promise<void> {
  try {
    await rm(to.socketDir, { recursive: true, force: true });
    await rename(from.socketDir, to.socketDir);
    const link = join(to.socketDir, STATE_DIR_LINK);
    await symlink(to.stateDir, `${link}.next`);
    await rename(`${link}.next`, link);
  } catch (error) {
    throw socketDirError(where, `cannot move ${from.socketDir} to ${to.socketDir}`, error);
  }
}

/**
 * Makes the socket root if it is missing (mode 0711, as the state root), then checks that it
 * is a directory, not a link, owned by this process's user and writable by no one else:
 * anyone who could write there could replace a socket directory and be connected to.
 */
async function checkSocketRoot(socketRoot: string, where: string): Promise<void> {
  try {
    await mkdir(socketRoot, { recursive: true, mode: 0o711 });
  } catch (error) {
    throw socketDirError(where, `cannot create the socket root ${socketRoot}`, error);
  }
  const info = await lstat(socketRoot);
  const uid = process.geteuid?.() ?? info.uid; // geteuid exists on every POSIX platform moat runs on
  const problem = !info.isDirectory()
    ? "is not a directory"
    : info.uid !== uid
      ? `is owned by uid ${info.uid}, not by moat's uid ${uid}`
      : (info.mode & 0o022) !== 0
        ? `is writable by its group or others (mode ${(info.mode & 0o7777).toString(8)})`
        : undefined;
  if (problem) {
    throw new MoatError("MOAT_SOCKET_DIR", `${where}: socket root ${socketRoot} ${problem}`, {
      hint: "set [runtime] socket_root to a directory only moat's user can write, or let moat create it",
      status: Code.FAILED_PRECONDITION,
    });
  }
}

function socketDirError(where: string, what: string, cause?: unknown): MoatError {
  return new MoatError("MOAT_SOCKET_DIR", `${where}: ${what}`, { cause, status: cause === undefined ? Code.ALREADY_EXISTS : Code.INTERNAL });
}
