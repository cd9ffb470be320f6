// The spec the guest runs: the bundle's (or moat's default) with the root file system and
// every bind-mount source rewritten to where the agent mounts their shares, and the list
// of those shares. A directory bind mount becomes a share of its own. A bind mount of a single
// file (podman's /etc/hosts, /etc/resolv.conf) cannot be a share (9p and virtio-fs export
// directories): the file is bind-mounted onto a file of the same name in the sandbox's files
// directory, which is one share, so the container sees the caller's file itself, later
// updates included, as with runc (issue 11). A bind of a host tmpfs that stands for memory
// (a memory emptyDir, /dev/shm) becomes a bind of a tmpfs made in the guest (memory-volume.ts).
// Other mounts (proc, tmpfs, devpts, …) are made in the guest as they are.
import { statSync } from "node:fs";
import { basename, isAbsolute } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { ownMountsSync, type MountEntry } from "../../shared/mountinfo.js";
import { shareGuestPath, tmpfsGuestPath } from "../../shared/protocol/index.js";
import { hostCgroupTarget, type HostCgroupTarget } from "../cgroup/index.js";
import { Code } from "../../shared/ttrpc/index.js";
import { isBindMount, type OciMount, type OciSpec } from "./bundle.js";
import { guestLinux } from "./guest-resources.js";
import { GUEST_HOOKS } from "./hooks.js";
import { memoryVolume, memoryVolumeKind, type GuestTmpfs } from "./memory-volume.js";

export interface GuestShare {
  tag: string;
  hostPath: string;
  readOnly: boolean;
  /** Read-only on the host, writable in the guest through an overlay in guest memory. */
  overlay: boolean;
  /**
   * Changes the host makes must be seen in the guest (9p: the uncached device): read-only
   * volumes (kubelet's ConfigMaps, Secrets, projected and downward-API volumes) and the files
   * share (resolv.conf, hosts, hostname). The root file system and read-write volumes stay
   * cached: uncached 9p costs `stat` 170× and loses inotify (docs/storage.md, "Decision").
   */
  live: boolean;
}

/** A single file bind-mounted into the sandbox's files directory before the VM starts. */
export interface FileBind {
  /** The name in the files directory. */
  name: string;
  source: string;
  readOnly: boolean;
}

/**
 * Shares are named by position: "s0" is the root file system, then the files share (if any),
 * then each directory bind mount in order. Short, and the same whatever the spec's paths: a
 * 9p share is a subdirectory of that name in the sandbox's shares directory, a virtio-fs
 * share a device with that tag (at most 31 characters).
 */
export function shareTag(slot: number): string {
  return `s${slot}`;
}

export interface GuestSpecInput {
  containerId: string;
  spec: OciSpec;
  rootfs: string;
  /** An image: the root is shared read-only under an overlay in guest memory. */
  overlay: boolean;
  /** Names the spec's source in errors: a config.json path or an image. */
  where: string;
  /** The host directory the single-file binds are bind-mounted into (the sandbox's), shared as one. */
  filesDir: string;
  /** The host's mounts, where memory volumes are recognised; this process's (/proc/self/mountinfo), read only if a bind may be one, when not given. */
  hostMounts?: MountEntry[];
}

/**
 * Rewrites `spec` for the guest. `rootfs` is shared as the container's root: with `overlay`
 * (an image) or root.readonly, read-only on the host under an overlay in guest memory, so
 * that not even the guest's kernel can write it (crun, like runc, creates missing mount
 * points in the root before it makes it read-only for the container: they land in the
 * overlay); otherwise (a bundle's writable root) read-write.
 */
export function guestSpec({ containerId, spec, rootfs, overlay, where, filesDir, hostMounts }: GuestSpecInput): {
  spec: OciSpec;
  shares: GuestShare[];
  files: FileBind[];
  /** The guest's tmpfs file systems that memory volumes' binds name, each once. */
  tmpfs: GuestTmpfs[];
  hostCgroup: HostCgroupTarget | undefined;
  /** The network namespace the spec names by path: the sandbox's VM is connected to it (docs/networking.md). */
  networkNamespace: string | undefined;
  /** The spec asks for a new network namespace (an entry without a path). */
  newNetworkNamespace: boolean;
} {
  const readOnlyRoot = spec.root.readonly === true;
  const memory = memoryVolumes(spec.mounts ?? [], hostMounts);
  const binds = (spec.mounts ?? []).map((mount, index) => (isBindMount(mount) && !memory.has(index) ? { index, isDirectory: bindIsDirectory(mount, index, where) } : undefined));
  const filesTag = binds.some((bind) => bind && !bind.isDirectory) ? shareTag(1) : undefined;
  const files: FileBind[] = [];
  const hostReadOnlyRoot = overlay || readOnlyRoot;
  const shares: GuestShare[] = [{ tag: shareTag(0), hostPath: rootfs, readOnly: hostReadOnlyRoot, overlay: hostReadOnlyRoot, live: false }];
  // Read-write: each file in it is its own bind mount, read-only on the host where the spec says so.
  if (filesTag) shares.push({ tag: filesTag, hostPath: filesDir, readOnly: false, overlay: false, live: true });
  const tmpfs = new Map<string, GuestTmpfs>();
  const mounts = (spec.mounts ?? []).map((mount, index): OciMount => {
    const volume = memory.get(index);
    if (volume) {
      tmpfs.set(volume.name, volume);
      return { ...mount, source: tmpfsGuestPath(volume.name) };
    }
    const bind = binds[index];
    if (!bind) return mount;
    const source = mount.source ?? ""; // checked by bindIsDirectory
    if (!bind.isDirectory) {
      const name = `${index}-${basename(source)}`;
      files.push({ name, source, readOnly: (mount.options ?? []).includes("ro") });
      return { ...mount, source: `${shareGuestPath(containerId, filesTag ?? "")}/${name}` }; // filesTag is set when any bind is a file
    }
    const tag = shareTag(shares.length);
    const readOnly = (mount.options ?? []).includes("ro");
    shares.push({ tag, hostPath: source, readOnly, overlay: false, live: readOnly });
    return { ...mount, source: shareGuestPath(containerId, tag) };
  });
  // The sandbox's QEMU goes into the spec's cgroup on the host; crun in the guest, which has
  // no systemd to ask, gets the same path, a systemd-form one expanded as systemd would.
  const cgroupsPath = specCgroupsPath(spec, where);
  const hostCgroup = cgroupsPath === undefined ? undefined : hostCgroupTarget(cgroupsPath, where);
  const network = specNetworkNamespace(spec, where);
  const rewritten = hostCgroup?.systemd || network.namespaces;
  const linux = guestLinux(rewritten ? { ...(spec.linux as object), ...(hostCgroup?.systemd ? { cgroupsPath: hostCgroup.path } : {}), ...(network.namespaces ? { namespaces: network.namespaces } : {}) } : spec.linux);
  // The hooks the runtime spec runs in the runtime's namespace are host programs (Docker's is
  // `/proc/<dockerd>/exe libnetwork-setkey`): moatd runs them on the host (hooks.ts). Those
  // that run in the container's namespaces (createContainer, startContainer) go to crun in
  // the guest, where their binary must be in the container's root, as the spec says.
  const { hooks: _hooks, ...unhooked } = spec;
  const guestHooks = guestOnlyHooks(spec.hooks);
  return {
    spec: { ...unhooked, ...(guestHooks ? { hooks: guestHooks } : {}), root: { path: shareGuestPath(containerId, shareTag(0)), readonly: readOnlyRoot }, ...(spec.mounts ? { mounts } : {}), ...(linux === undefined ? {} : { linux }) },
    shares,
    files,
    tmpfs: [...tmpfs.values()],
    hostCgroup,
    networkNamespace: network.path,
    newNetworkNamespace: network.isNew,
  };
}

/**
 * The spec's binds that are memory volumes, by index. The host's mounts are read only when a
 * bind's paths say it may be one (most specs have none, and mountinfo can be long).
 */
function memoryVolumes(mounts: OciMount[], hostMounts: MountEntry[] | undefined): Map<number, GuestTmpfs> {
  const found = new Map<number, GuestTmpfs>();
  let known = hostMounts;
  mounts.forEach((mount, index) => {
    // A relative or missing source is left to the bind's own check, which names it.
    if (!isBindMount(mount) || mount.source === undefined || !isAbsolute(mount.source)) return;
    const kind = memoryVolumeKind(mount);
    if (kind === undefined) return;
    known ??= ownMountsSync();
    const volume = memoryVolume(mount.source, kind, known);
    if (volume) found.set(index, volume);
  });
  return found;
}

/** The spec's createContainer and startContainer hooks, if it has any. */
function guestOnlyHooks(hooks: unknown): Record<string, unknown> | undefined {
  if (typeof hooks !== "object" || hooks === null) return undefined;
  const kept = Object.fromEntries(GUEST_HOOKS.flatMap((kind) => {
    const list = (hooks as Record<string, unknown>)[kind]; // an object, checked just above
    return Array.isArray(list) && list.length > 0 ? [[kind, list]] : [];
  }));
  return Object.keys(kept).length > 0 ? kept : undefined;
}

/**
 * `spec` without its network namespace entry: the container shares the guest's own namespace,
 * which the agent set up as the sandbox's host namespace is (a new namespace that the
 * sandbox owns, once hooks put interfaces in it).
 */
export function withoutNetworkNamespace(spec: OciSpec): OciSpec {
  const linux = spec.linux;
  if (typeof linux !== "object" || linux === null) return spec;
  const namespaces = (linux as { namespaces?: unknown }).namespaces;
  if (!Array.isArray(namespaces)) return spec;
  return { ...spec, linux: { ...linux, namespaces: namespaces.filter((item: unknown) => !(typeof item === "object" && item !== null && (item as { type?: unknown }).type === "network")) } }; // checked to be an object just above
}

/**
 * The network namespace the spec names by path, and its namespaces without that entry: the
 * host path means nothing in the guest, where the container shares the guest's own network
 * namespace, which the agent set up as that one is (the tcfilter model). An entry without a
 * path stays: a new, empty namespace in the guest, loopback only.
 */
function specNetworkNamespace(spec: OciSpec, where: string): { path: string | undefined; namespaces: unknown[] | undefined; isNew: boolean } {
  const linux = spec.linux;
  if (typeof linux !== "object" || linux === null) return { path: undefined, namespaces: undefined, isNew: false };
  const namespaces = (linux as { namespaces?: unknown }).namespaces;
  if (!Array.isArray(namespaces)) return { path: undefined, namespaces: undefined, isNew: false };
  const entry = namespaces.find((item: unknown) => typeof item === "object" && item !== null && (item as { type?: unknown }).type === "network") as { path?: unknown } | undefined; // found by its type just above
  if (entry?.path === undefined || entry.path === "") return { path: undefined, namespaces: undefined, isNew: entry !== undefined };
  if (typeof entry.path !== "string" || !isAbsolute(entry.path)) throw new MoatError("MOAT_BUNDLE_INVALID", `${where}: linux.namespaces: the network namespace's path must be an absolute path, got ${JSON.stringify(entry.path)}`, { status: Code.INVALID_ARGUMENT });
  return { path: entry.path, namespaces: namespaces.filter((item) => item !== entry), isNew: false };
}

/** The spec's linux.cgroupsPath, if it sets one; `where` names the spec in errors. */
function specCgroupsPath(spec: OciSpec, where: string): string | undefined {
  const linux = spec.linux;
  if (typeof linux !== "object" || linux === null) return undefined;
  const path = (linux as { cgroupsPath?: unknown }).cgroupsPath;
  if (path === undefined || path === "") return undefined;
  if (typeof path !== "string") throw new MoatError("MOAT_BUNDLE_INVALID", `${where}: linux.cgroupsPath must be a string`, { status: Code.INVALID_ARGUMENT });
  return path;
}

/** Whether a bind mount's source is a directory; refuses a relative or missing source by name. */
function bindIsDirectory(mount: OciMount, index: number, where: string): boolean {
  const source = mount.source ?? "";
  if (!isAbsolute(source)) throw bindError(where, index, `source must be an absolute path, got ${JSON.stringify(source)}`);
  try {
    return statSync(source).isDirectory();
  } catch {
    throw bindError(where, index, `source ${source} does not exist`);
  }
}

function bindError(where: string, index: number, what: string): MoatError {
  return new MoatError("MOAT_BUNDLE_INVALID", `${where}: mounts[${index}]: ${what}`, { status: Code.INVALID_ARGUMENT });
}
