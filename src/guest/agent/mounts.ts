// Mounts the agent makes for a container: the shares the host exported over 9p or virtio-fs
// (root file system, bind-mount sources), each read-write, read-only, or read-only under a
// writable overlay whose upper layer is in guest memory. Node has no mount(2), so busybox's
// mount makes the call. A read-only share is also read-only on the host side (a read-only
// bind mount in the 9p export, virtiofsd's read-only bind): the guest's `ro` is not the only
// guard.
//
// 9p is one device per VM (docs/storage.md) that exports the host's shares directory; it is
// mounted once, on the first create (never before: a VM template is saved before any create,
// and a mounted 9p device blocks QEMU's migration), and each share is a bind mount of its
// subdirectory <container id>/<tag>. virtio-fs shares are a device each, mounted by tag.
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { MoatError } from "../../shared/errors.js";
import { SharedFs, shareGuestPath, SHARES_9P_GUEST_ROOT, SHARES_9P_TAG, shareSubpath, type ShareMount } from "../../shared/protocol/index.js";
import { Code } from "../../shared/ttrpc/index.js";

const VALID_TAG = /^[A-Za-z0-9_-]{1,31}$/;
const NINEP_OPTIONS = "trans=virtio,version=9p2000.L,msize=262144,cache=loose";

/** The 9p device, mounted once per VM; a failed mount is tried again by the next create. */
let shares9p: Promise<void> | undefined;

function mount9pRoot(where: string): Promise<void> {
  shares9p ??= mkdir(SHARES_9P_GUEST_ROOT, { recursive: true })
    .then(() => run("/bin/mount", ["-t", "9p", "-o", NINEP_OPTIONS, SHARES_9P_TAG, SHARES_9P_GUEST_ROOT], where))
    .catch((error: unknown) => {
      shares9p = undefined;
      throw error;
    });
  return shares9p;
}

/** Mounts `share` at `path`: a bind of its 9p subdirectory, or its own virtio-fs device. */
async function mountSource(containerId: string, share: ShareMount, readOnly: boolean, path: string, where: string): Promise<void> {
  if (share.fs === SharedFs.VIRTIO_FS) {
    await run("/bin/mount", ["-t", "virtiofs", ...(readOnly ? ["-o", "ro"] : []), share.tag, path], where);
    return;
  }
  await mount9pRoot(where);
  await bindMount(`${SHARES_9P_GUEST_ROOT}/${shareSubpath(containerId, share.tag)}`, path, readOnly, where);
}

/** Bind-mounts `source` at `path`, read-only if asked. */
export async function bindMount(source: string, path: string, readOnly: boolean, where: string): Promise<void> {
  // A bind mount takes its read-only flag only from a remount; one shell runs both (each
  // process started costs time under TCG).
  if (readOnly) await run("/bin/sh", ["-c", 'mount -o bind "$1" "$2" && mount -o remount,bind,ro "$2"', "sh", source, path], where);
  else await run("/bin/mount", ["-o", "bind", source, path], where);
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
    await mountSource(containerId, share, share.readOnly, path, where);
    return;
  }
  for (const dir of [`${path}.lower`, `${path}.upper`, `${path}.work`, path]) await mkdir(dir, { recursive: true });
  // overlayfs never writes its lower layer, so a 9p share's subdirectory serves as it is.
  let lower = `${path}.lower`;
  if (share.fs === SharedFs.VIRTIO_FS) await mountSource(containerId, share, true, lower, where);
  else {
    await mount9pRoot(where);
    lower = `${SHARES_9P_GUEST_ROOT}/${shareSubpath(containerId, share.tag)}`;
  }
  try {
    await run("/bin/mount", ["-t", "overlay", "-o", `lowerdir=${lower},upperdir=${path}.upper,workdir=${path}.work`, "overlay", path], where);
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

/** Unmounts `path`; what is not mounted is skipped. */
export async function unmount(path: string): Promise<void> {
  await run("/bin/umount", [path], path).catch(() => undefined);
}
