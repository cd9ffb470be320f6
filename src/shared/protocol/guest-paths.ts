// Paths in the guest that host and agent both rely on.

/** Where the agent keeps a container's bundle and mounts. */
export function containerGuestDir(containerId: string): string {
  return `/run/moat/containers/${containerId}`;
}

/** Where the agent mounts the share `tag` (9p or virtio-fs) for a container. */
export function shareGuestPath(containerId: string, tag: string): string {
  return `${containerGuestDir(containerId)}/shares/${tag}`;
}
