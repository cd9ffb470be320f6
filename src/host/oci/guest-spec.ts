// The spec the guest runs: the bundle's (or moat's default) with the root file system and
// every bind-mount source rewritten to where the agent mounts their 9p shares, and the list
// of those shares. A directory bind mount becomes a share of its own; other mounts (proc,
// tmpfs, devpts, …) are made in the guest as they are.
import { statSync } from "node:fs";
import { isAbsolute } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { shareGuestPath } from "../../shared/protocol/index.js";
import { Code } from "../../shared/ttrpc/index.js";
import { isBindMount, type OciMount, type OciSpec } from "./bundle.js";

export interface GuestShare {
  tag: string;
  hostPath: string;
  readOnly: boolean;
  /** Read-only on the host, writable in the guest through an overlay in guest memory. */
  overlay: boolean;
}

export const ROOTFS_TAG = "rootfs";

/**
 * Rewrites `spec` for the guest. `rootfs` is shared as the container's root: with `overlay`
 * (an image) read-only under an overlay in guest memory; otherwise (a bundle) read-write
 * even when root.readonly is set: crun, like runc, creates missing mount points in the root
 * before it makes the root read-only for the container, and it enforces root.readonly itself.
 */
export function guestSpec(containerId: string, spec: OciSpec, rootfs: string, overlay: boolean, where: string): { spec: OciSpec; shares: GuestShare[] } {
  const readOnlyRoot = spec.root.readonly === true;
  const shares: GuestShare[] = [{ tag: ROOTFS_TAG, hostPath: rootfs, readOnly: overlay, overlay }];
  const mounts = (spec.mounts ?? []).map((mount, index): OciMount => {
    if (!isBindMount(mount)) return mount;
    const source = mount.source ?? "";
    if (!isAbsolute(source)) throw bindError(where, index, `source must be an absolute path, got ${JSON.stringify(source)}`);
    let isDirectory: boolean;
    try {
      isDirectory = statSync(source).isDirectory();
    } catch {
      throw bindError(where, index, `source ${source} does not exist`);
    }
    if (!isDirectory) throw bindError(where, index, `source ${source} is a file; bind mounts of single files are not supported yet`);
    const tag = `m${index}`;
    const readOnly = (mount.options ?? []).includes("ro");
    shares.push({ tag, hostPath: source, readOnly, overlay: false });
    return { ...mount, source: shareGuestPath(containerId, tag) };
  });
  return {
    spec: { ...spec, root: { path: shareGuestPath(containerId, ROOTFS_TAG), readonly: readOnlyRoot }, ...(spec.mounts ? { mounts } : {}) },
    shares,
  };
}

function bindError(where: string, index: number, what: string): MoatError {
  return new MoatError("MOAT_BUNDLE_INVALID", `${where}: mounts[${index}]: ${what}`, { status: Code.INVALID_ARGUMENT });
}
