// Mounts the agent makes for a container: the shares the host exported over 9p or virtio-fs
// (root file system, bind-mount sources), each read-write, read-only, or read-only under a
// writable overlay whose upper layer is in guest memory. Node has no mount(2): the moat-sys
// addon makes the calls (sys.ts), in the agent's process. A read-only share is also read-only
// on the host side (a read-only bind mount in the 9p export, virtiofsd's read-only bind): the
// guest's `ro` is not the only guard.
//
// 9p is two devices per VM (docs/storage.md) that export the host's shares directory, one
// mounted with cache=loose (the root file system: fast, but it keeps what it read first) and
// one with cache=mmap (every other share: what the host changes is seen at once); each is
// mounted once, when a create first needs it (never before: a VM template is saved before any
// create, and a mounted 9p device blocks QEMU's migration), and each share is a bind mount of
// its subdirectory <container id>/<tag>. virtio-fs shares are a device each, mounted by tag.
//
// The cached device holds what a container writes in the guest's page cache (Linux 6.1's 9p
// client writes back neither on close nor on flush with cache=loose), so the host sees it only
// when the kernel's flusher writes it back: after vm.dirty_expire_centisecs, 30 s by default,
// a disk's setting. The host is the other reader of these files (podman cp/diff/commit,
// kubelet's termination-log, a CI job's artifacts), so the agent shortens the expiry when it
// mounts that device (docs/storage.md, "Write-back to the host").
//
// Memory volumes (a pod's memory emptyDir, /dev/shm) are tmpfs file systems of the guest that
// the host asks for by name with a container's create; each is mounted once per VM and stays
// until the VM goes, so that every container of the pod naming it shares it, and one that
// restarts finds its files (docs/storage.md, "Memory volumes").
import { mkdir, writeFile } from "node:fs/promises";
import { MoatError } from "../../shared/errors.js";
import { SharedFs, shareGuestPath, SHARES_9P_GUEST_ROOT, SHARES_9P_LIVE_GUEST_ROOT, SHARES_9P_LIVE_TAG, SHARES_9P_TAG, shareSubpath, tmpfsGuestPath, type GuestTmpfs, type ShareMount } from "../../shared/protocol/index.js";
import { Code } from "../../shared/ttrpc/index.js";
import { sys } from "./sys.js";

const VALID_TAG = /^[A-Za-z0-9_-]{1,31}$/;
const NINEP_OPTIONS = "trans=virtio,version=9p2000.L,msize=262144";

/**
 * The two 9p devices by tag: where each is mounted and its cache mode. loose: attributes,
 * names and pages are kept in the guest forever. mmap: nothing is kept but the pages of files
 * mapped shared (which mmap needs), so every lookup and read asks the host.
 */
const DEVICES_9P = {
  [SHARES_9P_TAG]: { root: SHARES_9P_GUEST_ROOT, cache: "loose", writeBack: true },
  [SHARES_9P_LIVE_TAG]: { root: SHARES_9P_LIVE_GUEST_ROOT, cache: "mmap", writeBack: false },
} as const;

/**
 * The guest's write-back of dirty pages, for a file system whose other reader is the host: a
 * page dirtied more than 1 s ago is written at the flusher's next wake, every 0.5 s, so what a
 * container wrote reaches the host within about 1.5 s whether the file is closed or still
 * open. The flusher wakes only while something is dirty, so an idle guest pays nothing; a
 * large write is written out as it goes instead of 30 s later (the guest's only other file
 * systems are its read-only root and tmpfs, which have no write-back).
 */
const WRITE_BACK_SYSCTLS = [
  { path: "/proc/sys/vm/dirty_expire_centisecs", value: "100" },
  { path: "/proc/sys/vm/dirty_writeback_centisecs", value: "50" },
] as const;

/** Sets WRITE_BACK_SYSCTLS (a VM-wide setting, so once, with the cached device's mount). */
async function shortenWriteBack(where: string): Promise<void> {
  for (const { path, value } of WRITE_BACK_SYSCTLS) {
    try {
      await writeFile(path, value);
    } catch (error) {
      throw new MoatError("MOAT_GUEST_MOUNT", `${where}: ${path} = ${value} (write-back of the cached 9p share): ${error instanceof Error ? error.message : String(error)}`, { status: Code.INTERNAL });
    }
  }
}
type Device9p = keyof typeof DEVICES_9P;

/** Each 9p device, mounted once per VM; a failed mount is tried again by the next create. */
const mounted9p = new Map<Device9p, Promise<void>>();

/** Mounts the 9p device the share goes through (once) and returns its subdirectory there. */
async function mount9pRoot(containerId: string, share: ShareMount, where: string): Promise<string> {
  const tag: Device9p = share.live ? SHARES_9P_LIVE_TAG : SHARES_9P_TAG;
  const { root, cache, writeBack } = DEVICES_9P[tag];
  let mounted = mounted9p.get(tag);
  if (!mounted) {
    mounted = (writeBack ? shortenWriteBack(where) : Promise.resolve())
      .then(() => mkdir(root, { recursive: true }))
      .then(() => mountCall(tag, root, "9p", 0, `${NINEP_OPTIONS},cache=${cache}`, where))
      .catch((error: unknown) => {
        mounted9p.delete(tag);
        throw error;
      });
    mounted9p.set(tag, mounted);
  }
  await mounted;
  return `${root}/${shareSubpath(containerId, share.tag)}`;
}

/** Mounts `share` at `path`: a bind of its 9p subdirectory, or its own virtio-fs device. */
async function mountSource(containerId: string, share: ShareMount, readOnly: boolean, path: string, where: string): Promise<void> {
  if (share.fs === SharedFs.VIRTIO_FS) {
    mountCall(share.tag, path, "virtiofs", readOnly ? sys().MS_RDONLY : 0, null, where);
    return;
  }
  bindMount(await mount9pRoot(containerId, share, where), path, readOnly, where);
}

/** Bind-mounts `source` at `path`, read-only if asked. */
export function bindMount(source: string, path: string, readOnly: boolean, where: string): void {
  const { MS_BIND, MS_REMOUNT, MS_RDONLY } = sys();
  mountCall(source, path, null, MS_BIND, null, where);
  // A bind mount takes its read-only flag only from a remount.
  if (readOnly) {
    try {
      mountCall(null, path, null, MS_BIND | MS_REMOUNT | MS_RDONLY, null, where);
    } catch (error) {
      unmount(path);
      throw error;
    }
  }
}

function mountCall(source: string | null, target: string, fstype: string | null, flags: number, data: string | null, where: string): void {
  try {
    sys().mount(source, target, fstype, flags, data);
  } catch (error) {
    if (error instanceof MoatError) throw error;
    const what = [fstype ?? "bind", source, data].filter((part) => part !== null).join(" ");
    throw new MoatError("MOAT_GUEST_MOUNT", `${where}: ${what} on ${target}: ${error instanceof Error ? error.message : String(error)}`, { status: Code.INTERNAL });
  }
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
    unmountShares(containerId, mounted);
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
  else lower = await mount9pRoot(containerId, share, where);
  try {
    mountCall("overlay", path, "overlay", 0, `lowerdir=${lower},upperdir=${path}.upper,workdir=${path}.work`, where);
  } catch (error) {
    unmount(`${path}.lower`);
    throw error;
  }
}

/** Unmounts the container's shares; what is not mounted is skipped. */
export function unmountShares(containerId: string, shares: ShareMount[]): void {
  for (const share of [...shares].reverse()) {
    const path = shareGuestPath(containerId, share.tag);
    unmount(path);
    if (share.overlay) unmount(`${path}.lower`);
  }
}

/** Unmounts `path`; what is not mounted is skipped. */
export function unmount(path: string): void {
  try {
    sys().umount(path);
  } catch {
    // Not mounted, or already gone.
  }
}

const VALID_TMPFS_NAME = /^[a-z0-9-]{1,64}$/;
/** A size the kernel takes (its unsigned long of pages) with room to spare; larger is a host's mistake. */
const MAX_TMPFS_BYTES = 1n << 56n;
/** mount(2)'s flags for the tmpfs, from <linux/mount.h> (the same on every architecture); the addon exports only those it needed before. */
const MS_NOSUID = 0x2;
const MS_NODEV = 0x4;
const MS_NOEXEC = 0x8;

/** Each memory volume's tmpfs by name, mounted once per VM; a failed mount is tried again by the next create. */
const mountedTmpfs = new Map<string, Promise<void>>();

/**
 * Mounts each tmpfs the container names that is not mounted yet, at tmpfsGuestPath(name),
 * with the size, root mode and owner, and flags the host gave. One that is mounted already
 * (another container of the pod made it) is used as it is.
 */
export async function mountGuestTmpfs(list: GuestTmpfs[], where: string): Promise<void> {
  for (const tmpfs of list) {
    const what = `tmpfs ${JSON.stringify(tmpfs.name)}`;
    if (!VALID_TMPFS_NAME.test(tmpfs.name)) throw new MoatError("MOAT_GUEST_MOUNT", `${where}: ${what}: the name is not 1-64 of [a-z0-9-]`, { status: Code.INVALID_ARGUMENT });
    if (tmpfs.sizeBytes > MAX_TMPFS_BYTES) throw new MoatError("MOAT_GUEST_MOUNT", `${where}: ${what}: size ${tmpfs.sizeBytes} bytes is more than ${MAX_TMPFS_BYTES}`, { status: Code.INVALID_ARGUMENT });
    if (tmpfs.mode > 0o7777) throw new MoatError("MOAT_GUEST_MOUNT", `${where}: ${what}: mode ${tmpfs.mode.toString(8)} has bits beyond 07777`, { status: Code.INVALID_ARGUMENT });
    let mounted = mountedTmpfs.get(tmpfs.name);
    if (!mounted) {
      const path = tmpfsGuestPath(tmpfs.name);
      const flags = (tmpfs.nosuid ? MS_NOSUID : 0) | (tmpfs.nodev ? MS_NODEV : 0) | (tmpfs.noexec ? MS_NOEXEC : 0);
      const options = [`mode=${tmpfs.mode.toString(8).padStart(4, "0")}`, `uid=${tmpfs.uid}`, `gid=${tmpfs.gid}`, ...(tmpfs.sizeBytes > 0n ? [`size=${tmpfs.sizeBytes}`] : [])].join(",");
      mounted = mkdir(path, { recursive: true })
        .then(() => mountCall(tmpfs.name, path, "tmpfs", flags, options, where))
        .catch((error: unknown) => {
          mountedTmpfs.delete(tmpfs.name);
          throw error;
        });
      mountedTmpfs.set(tmpfs.name, mounted);
    }
    await mounted;
  }
}
