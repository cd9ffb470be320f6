// A task's root file system from containerd's mounts: the snapshotter's overlay (or bind) is
// mounted at <bundle>/rootfs on the host, as the runc shim does, and from there reaches the
// guest through the sandbox's 9p share of the bundle's rootfs like any OCI bundle's.
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { retryWhile } from "../../shared/deadline.js";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

const run = promisify(execFile);
/** How long an unmount may find its target busy before it fails. */
const UMOUNT_BUSY_MS = 10_000;
const UMOUNT_RETRY_MS = 50;

export interface RootfsMount {
  type: string;
  source: string;
  options: string[];
}

/** Mounts `mounts` at <bundle>/rootfs in order; returns the undo (unmount), or none if there was nothing to mount. */
export async function mountRootfs(bundle: string, mounts: RootfsMount[], where: string): Promise<(() => Promise<void>) | undefined> {
  if (mounts.length === 0) return undefined; // containerd prepared bundle/rootfs itself
  const target = join(bundle, "rootfs");
  await mkdir(target, { recursive: true });
  let mounted = 0;
  const unmount = async () => {
    for (; mounted > 0; mounted--) await umount(target, where);
  };
  try {
    for (const mount of mounts) {
      const args = ["-t", mount.type, ...(mount.options.length > 0 ? ["-o", mount.options.join(",")] : []), mount.source, target];
      await run("mount", args).catch((error: unknown) => {
        throw new MoatError("MOAT_SHIM_MOUNT", `${where}: cannot mount the ${mount.type} rootfs at ${target}`, { cause: stderrOf(error), status: Code.INTERNAL });
      });
      mounted++;
    }
  } catch (error) {
    await unmount().catch(() => undefined);
    throw error;
  }
  return unmount;
}

/** Unmounts what is mounted at <bundle>/rootfs, if anything (`shim delete` after a crash). */
export async function unmountRootfs(bundle: string, where: string): Promise<void> {
  const target = join(bundle, "rootfs");
  const { stdout } = await run("findmnt", ["-n", "-o", "TARGET", "--mountpoint", target]).catch(() => ({ stdout: "" })); // findmnt exits 1 when nothing is mounted
  for (let layers = stdout.trim().split("\n").filter(Boolean).length; layers > 0; layers--) await umount(target, where);
}

/**
 * Unmounts `target`, trying again for a while when it is busy: a QEMU just killed may still
 * be closing the files it served from it (seen after a moatd crash, containerd's shim delete).
 */
async function umount(target: string, where: string): Promise<void> {
  await retryWhile(() => run("umount", [target]), (error) => /busy/i.test(String(stderrOf(error))), UMOUNT_BUSY_MS, UMOUNT_RETRY_MS).catch((failed: unknown) => {
    throw new MoatError("MOAT_SHIM_MOUNT", `${where}: cannot unmount ${target}`, { cause: stderrOf(failed), status: Code.INTERNAL });
  });
}

function stderrOf(error: unknown): unknown {
  const stderr = (error as { stderr?: string }).stderr?.trim(); // execFile's error carries the child's stderr
  return stderr ? new Error(stderr) : error;
}
