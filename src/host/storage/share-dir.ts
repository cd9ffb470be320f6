// A 9p sandbox's shares: one directory (VmPaths.sharesDir) that QEMU exports as one device,
// holding a bind mount of each share's host directory at <container id>/<tag>, read-only ones
// read-only (docs/storage.md). Because the mounts are made in the export, not given to QEMU,
// they can be made after the VM started: a VM restored ahead of time (the warm pool) gets its
// shares when a sandbox takes it, and their number is not fixed by any template.
//
// A bind mount under a state directory must never meet a recursive delete: that would delete
// the files of the mounted source, a user's volume. removeStateDir is the one way state
// directories go, and it removes nothing while a mount is left under one.
import { execFile } from "node:child_process";
import { mkdir, rm, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { ownMounts } from "../../shared/mountinfo.js";
import { tracer } from "../../shared/trace.js";
import { Code } from "../../shared/ttrpc/index.js";
import { removeSocketDir, type Share, type VmPaths } from "../hypervisor/index.js";

const trace = tracer("storage");
const MOUNT_TIMEOUT_MS = 10_000;

/** Bind-mounts each share at <sharesDir>/<containerId>/<tag>; on failure, unmounts what it made. */
export async function bindShares(sharesDir: string, containerId: string, shares: Share[], where: string): Promise<void> {
  const made: string[] = [];
  try {
    for (const share of shares) {
      const target = join(sharesDir, containerId, share.tag);
      await mkdir(target, { recursive: true, mode: 0o755 });
      // A plain bind, not recursive, as Kata's shares: mounts under the source are not shared.
      if (share.readOnly) await bindReadOnly(share.hostPath, target, `${sharesDir}.staging`, `${containerId}-${share.tag}`, `${where}: share ${share.tag}`);
      else await run("mount", ["--bind", share.hostPath, target], `${where}: share ${share.tag}`);
      made.push(target);
    }
  } catch (error) {
    for (const target of made.reverse()) await unmount(target).catch(() => undefined);
    throw error;
  }
}

/**
 * Bind-mounts each single file (podman's /etc/resolv.conf, /etc/hosts, /etc/hostname) onto an
 * empty file of its name in `dir`, read-only ones read-only: the guest reads the caller's file
 * itself, so an update the caller makes in place is seen (as with runc, whose bind mount also
 * keeps the inode it was given: a file replaced by rename is not followed). On failure,
 * unmounts what it made; the mount points stay for removeStateDir. `stagingRoot` is outside
 * the export (bindReadOnly says why).
 */
export async function bindFiles(dir: string, files: { name: string; source: string; readOnly: boolean }[], stagingRoot: string, where: string): Promise<void> {
  const made: string[] = [];
  try {
    for (const file of files) {
      const target = join(dir, file.name);
      await writeFile(target, "", { mode: 0o644, flag: "a" });
      if (file.readOnly) await bindReadOnly(file.source, target, stagingRoot, `file-${file.name}`, `${where}: file ${file.source}`, "file");
      else await run("mount", ["--bind", file.source, target], `${where}: file ${file.source}`);
      made.push(target);
    }
  } catch (error) {
    for (const target of made.reverse()) await unmount(target).catch(() => undefined);
    throw error;
  }
}

/**
 * Binds `source` read-only at `target` in one step: util-linux makes a read-only bind in two
 * calls (bind, then remount read-only), and the export is a shared mount whose copy in QEMU's
 * jail (moat-jail.c) receives the bind as the first call made it, read-write; the remount
 * reaches only the host's. So the read-only bind is made at a staging point outside the
 * export (a directory, or an empty file for a single file), and bound from there: a bind
 * copies its source's flags, and so do the copies propagated from it. The staging mount is
 * gone again before this returns.
 */
async function bindReadOnly(source: string, target: string, stagingRoot: string, name: string, where: string, kind: "directory" | "file" = "directory"): Promise<void> {
  const staging = join(stagingRoot, name);
  await mkdir(kind === "directory" ? staging : stagingRoot, { recursive: true, mode: 0o700 });
  if (kind === "file") await writeFile(staging, "", { mode: 0o600, flag: "a" });
  await run("mount", ["--bind", "-o", "ro", source, staging], where);
  try {
    await run("mount", ["--bind", staging, target], where);
  } finally {
    await unmount(staging);
    await (kind === "directory" ? rmdir(staging) : rm(staging, { force: true })).catch(() => undefined);
  }
}

/** The mount points at or under `dir` in this mount namespace, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  return (await ownMounts())
    .map(({ mountPoint }) => mountPoint)
    .filter((point) => point === dir || point.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

/**
 * Removes a sandbox's (or pool VM's) state directory: its socket directory first (so that a
 * removal cut short leaves the state directory, which the next moatd finds and removes, not
 * an orphaned socket directory), then every mount under the state directory, lazily (a QEMU
 * still dying may hold files in them), then the directory. Gone already counts as done.
 */
export async function removeStateDir(paths: Pick<VmPaths, "stateDir" | "socketDir">): Promise<void> {
  await removeSocketDir(paths.socketDir);
  await removeMountedDir(paths.stateDir);
}

/**
 * Removes `dir` after unmounting (lazily) every mount at or under it; refuses, removing
 * nothing, while one is left (a recursive delete would go into a user's volume). Gone already
 * counts as done. A pod member's binds in its VM's export and its own state directory go so.
 */
export async function removeMountedDir(dir: string): Promise<void> {
  for (const point of await mountsUnder(dir)) await unmount(point);
  const left = await mountsUnder(dir);
  if (left.length > 0) {
    throw new MoatError("MOAT_SHARE_UNMOUNT", `${dir}: still mounted after unmounting: ${left.join(", ")}; not removed`, { status: Code.INTERNAL });
  }
  await rm(dir, { recursive: true, force: true });
}

async function unmount(point: string): Promise<void> {
  trace(point, "unmount");
  // --lazy: detached from the namespace at once even while busy; a mount already gone is fine.
  await run("umount", ["--lazy", point], `unmount ${point}`).catch(async (error: unknown) => {
    if ((await mountsUnder(point)).includes(point)) throw error;
  });
}

function run(command: string, args: string[], where: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: MOUNT_TIMEOUT_MS }, (error, _stdout, stderr) => {
      if (!error) return resolve();
      reject(new MoatError("MOAT_SHARE_MOUNT", `${where}: ${command} ${args.join(" ")}: ${stderr.trim() || error.message}`, { status: Code.INTERNAL }));
    });
  });
}
