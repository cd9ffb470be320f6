// Memory volumes: a bind mount whose source is a tmpfs of the host's that stands for memory of
// the container's own (Kubernetes' emptyDir with `medium: Memory`, which kubelet mounts as a
// tmpfs under its pod's volumes directory; a container's /dev/shm, which containerd's CRI
// plugin, podman and Docker mount as a tmpfs for it) becomes a tmpfs in the guest, made as
// the host's is (size, root's mode and owner, flags), instead of a share of the host's
// directory: its memory is the VM's, which the pod's limits size, not the host's shared over
// 9p, and its files stay in the guest (the host directory stays empty). Kata Containers
// does the same for both (its "ephemeral" storage and sandbox shm); docs/storage.md,
// "Memory volumes".
import { createHash } from "node:crypto";
import { realpathSync, statSync } from "node:fs";
import { basename, dirname } from "node:path";
import type { MountEntry } from "../../shared/mountinfo.js";
import type { OciMount } from "./bundle.js";

/** A tmpfs the guest makes for the spec (the agent's GuestTmpfs). */
export interface GuestTmpfs {
  /** Derived from the host path: the same for every container of a pod that mounts the volume. */
  name: string;
  /** size= in bytes; 0 when the host's tmpfs has none (the kernel's default). */
  sizeBytes: bigint;
  mode: number;
  uid: number;
  gid: number;
  nosuid: boolean;
  nodev: boolean;
  noexec: boolean;
}

/** kubelet's directory of a pod's emptyDir volumes: `<pods dir>/<pod uid>/volumes/kubernetes.io~empty-dir/<volume>`. */
const EMPTY_DIR_PLUGIN_DIR = "kubernetes.io~empty-dir";

/**
 * What kind of memory volume a bind mount may be, from its paths alone (before the host's
 * mounts are read): "emptydir" for a source that is kubelet's emptyDir volume directory,
 * "shm" for a destination of /dev/shm; undefined for any other.
 */
export function memoryVolumeKind(mount: OciMount): "emptydir" | "shm" | undefined {
  const source = mount.source ?? "";
  if (basename(dirname(source)) === EMPTY_DIR_PLUGIN_DIR && basename(dirname(dirname(source))) === "volumes") return "emptydir";
  if (mount.destination.replace(/\/+$/, "") === "/dev/shm") return "shm";
  return undefined;
}

/**
 * The guest tmpfs for a bind mount of `source` that memoryVolumeKind named `kind`, if
 * `source` is itself the root of a tmpfs mount of the host (the top one at that path, in
 * `hostMounts`); undefined otherwise: an emptyDir on disk, or a subdirectory of a tmpfs
 * (kubelet's subPath binds) is shared as any directory is.
 */
export function memoryVolume(source: string, kind: "emptydir" | "shm", hostMounts: MountEntry[]): GuestTmpfs | undefined {
  let path: string;
  try {
    path = realpathSync(source);
  } catch {
    return undefined; // the bind's own check names a missing source
  }
  // The last entry at a mount point is the mount on top, the one a bind of the path sees.
  const top = hostMounts.findLast((entry) => entry.mountPoint === path);
  if (top?.fsType !== "tmpfs" || top.root !== "/") return undefined;
  const root = statSync(path);
  return {
    name: `${kind}-${createHash("sha256").update(path).digest("hex").slice(0, 16)}`,
    sizeBytes: tmpfsSizeBytes(top.superOptions),
    mode: root.mode & 0o7777,
    uid: root.uid,
    gid: root.gid,
    nosuid: top.mountOptions.includes("nosuid"),
    nodev: top.mountOptions.includes("nodev"),
    noexec: top.mountOptions.includes("noexec"),
  };
}

const SIZE_UNITS: Record<string, bigint> = { "": 1n, k: 1n << 10n, m: 1n << 20n, g: 1n << 30n, t: 1n << 40n, p: 1n << 50n, e: 1n << 60n };

/**
 * A tmpfs's size= option in bytes (the kernel shows it in KiB: "size=65536k"); 0 when it has
 * none, or one this does not read (a percentage, which the kernel never shows), so that the
 * guest's default applies.
 */
export function tmpfsSizeBytes(superOptions: string[]): bigint {
  const option = superOptions.find((item) => item.startsWith("size="));
  const match = option === undefined ? null : /^size=([0-9]{1,20})([kmgtpe]?)$/i.exec(option);
  if (!match) return 0n;
  return BigInt(match[1] ?? "0") * (SIZE_UNITS[(match[2] ?? "").toLowerCase()] ?? 1n);
}
