// Paths in the guest, and the kernel parameter, that host and agent both rely on.

/** Where the agent keeps a container's bundle and mounts. */
export function containerGuestDir(containerId: string): string {
  return `/run/moat/containers/${containerId}`;
}

/**
 * The mount tag of a sandbox's one 9p device, which exports the host's per-sandbox shares
 * directory (docs/storage.md); the same in every VM, so that a template's clones have it too.
 */
export const SHARES_9P_TAG = "moat-shares";

/** Where the agent mounts that device, once per VM, on the first container's create. */
export const SHARES_9P_GUEST_ROOT = "/run/moat/shares";

/**
 * The tag of the second 9p device, which exports the same directory but which the guest
 * mounts without caching (cache=mmap), so that what the host changes in a share is seen at
 * once (volumes, ConfigMaps, /etc/resolv.conf); the first keeps cache=loose for the root file
 * system, whose host side nobody changes under a running container (docs/storage.md).
 */
export const SHARES_9P_LIVE_TAG = "moat-live";

/** Where the agent mounts the uncached device, once per VM, when a share first needs it. */
export const SHARES_9P_LIVE_GUEST_ROOT = "/run/moat/live";

/** Where a container's share `tag` is in the 9p device: the same subpath as on the host. */
export function shareSubpath(containerId: string, tag: string): string {
  return `${containerId}/${tag}`;
}

/** Where the agent mounts the share `tag` (9p or virtio-fs) for a container. */
export function shareGuestPath(containerId: string, tag: string): string {
  return `${containerGuestDir(containerId)}/shares/${tag}`;
}

/**
 * Where the agent mounts the guest's tmpfs `name` (CreateContainerRequest.tmpfs): one per VM,
 * outside every container's directory, since a pod's containers share it.
 */
export function tmpfsGuestPath(name: string): string {
  return `/run/moat/tmpfs/${name}`;
}

/**
 * On the kernel command line of a VM booted to become a template: its agent runs one container
 * before it serves (guest/agent/warm-up.ts), so that what that first container costs (crun and
 * its libraries read from the image, the agent's code for it compiled) is in the template's
 * memory, shared by every clone, instead of paid again by each.
 */
export const WARM_UP_KERNEL_PARAM = "moat.warm_up=1";
