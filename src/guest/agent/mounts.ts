// Mounts the agent makes for a container: the shares the host exported over 9p or virtio-fs
// (root file system, bind-mount sources), each read-write, read-only, or read-only under a
// writable overlay whose upper layer is in guest memory. Node has no mount(2), so busybox's
// mount makes the call. A read-only share is also read-only on the host side (QEMU's 9p
// readonly, virtiofsd's read-only bind): the guest's `ro` is not the only guard.
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { MoatError } from "../../shared/errors.js";
import { SharedFs, shareGuestPath, type ShareMount } from "../../shared/protocol/index.js";
import { Code } from "../../shared/ttrpc/index.js";

const VALID_TAG = /^[A-Za-z0-9_-]{1,31}$/;
const NINEP_OPTIONS = "trans=virtio,version=9p2000.L,msize=262144,cache=loose";

/** `mount` arguments for the share `tag` at `path`. */
function shareMountArgs(share: ShareMount, readOnly: boolean, path: string): string[] {
  const ro = readOnly ? ["-o", "ro"] : [];
  if (share.fs === SharedFs.VIRTIO_FS) return ["-t", "virtiofs", ...ro, share.tag, path];
  return ["-t", "9p", "-o", `${NINEP_OPTIONS}${readOnly ? ",ro" : ""}`, share.tag, path];
}

function run(command: string, args: string[], where: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 30_000 }, (error, _stdout, stderr) => {
      if (!error) return resolve();
      reject(new MoatError("MOAT_GUEST_MOUNT", `${where}: ${command} ${args.join(" ")}: ${stderr.trim() || error.message}`, { status: Code.INTERNAL }));
    });
  });
}

/** Mounts every share for the container; on failure, unmounts what was mounted. */
export async function mountShares(containerId: string, shares: ShareMount[], where: string): Promise<void> {
  const mounted: ShareMount[] = [];
  try {
    for (const share of shares) {
      if (!VALID_TAG.test(share.tag)) throw new MoatError("MOAT_GUEST_MOUNT", `${where}: share tag "${share.tag}" is not 1-31 of [A-Za-z0-9_-]`, { status: Code.INVALID_ARGUMENT });
      await mountShare(containerId, share, where);
      mounted.push(share);
    }
  } catch (error) {
    await unmountShares(containerId, mounted);
    throw error;
  }
}

async function mountShare(containerId: string, share: ShareMount, where: string): Promise<void> {
  const path = shareGuestPath(containerId, share.tag);
  if (!share.overlay) {
    await mkdir(path, { recursive: true });
    await run("/bin/mount", shareMountArgs(share, share.readOnly, path), where);
    return;
  }
  for (const dir of [`${path}.lower`, `${path}.upper`, `${path}.work`, path]) await mkdir(dir, { recursive: true });
  await run("/bin/mount", shareMountArgs(share, true, `${path}.lower`), where);
  try {
    await run("/bin/mount", ["-t", "overlay", "-o", `lowerdir=${path}.lower,upperdir=${path}.upper,workdir=${path}.work`, "overlay", path], where);
  } catch (error) {
    await unmount(`${path}.lower`);
    throw error;
  }
}

/** Unmounts the container's shares; what is not mounted is skipped. */
export async function unmountShares(containerId: string, shares: ShareMount[]): Promise<void> {
  for (const share of [...shares].reverse()) {
    const path = shareGuestPath(containerId, share.tag);
    await unmount(path);
    if (share.overlay) await unmount(`${path}.lower`);
  }
}

async function unmount(path: string): Promise<void> {
  await run("/bin/umount", [path], path).catch(() => undefined);
}
