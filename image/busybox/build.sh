#!/usr/bin/env bash
# Builds the built-in `busybox` container image's root file system from Debian's
# busybox-static: /bin/busybox with a link per applet, /etc/passwd and /etc/group, and the
# directories a container expects. No registry needed.
#
# Output: $MOAT_CACHE/images/busybox/<hash>/rootfs, printed on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../progress.sh"
. "$here/../busybox-base.sh"

cache=${MOAT_CACHE:-/var/cache/moat}
busybox=/bin/busybox
[ -x "$busybox" ] || fail busybox-image "$busybox not found" "apt-get install busybox-static (make setup does this)"
hash=$( { sha256sum "$busybox"; cat "$0" "$here/../busybox-base.sh"; } | sha256sum | cut -c1-16)
out=$cache/images/busybox/$hash
if [ -d "$out/rootfs" ]; then
  progress busybox-image "cached: $out/rootfs"
  echo "$out/rootfs"
  exit 0
fi
mkdir -p "$cache/images/busybox"
stage=$(mktemp -d "$cache/images/busybox/stage.XXXXXX") && chmod 755 "$stage"
trap 'rm -rf "$stage"' EXIT
root=$stage/rootfs
mkdir -p "$root"/{bin,etc,dev,proc,sys,tmp,root,run,var,home,usr/bin,usr/sbin,sbin}
chmod 1777 "$root/tmp"
install_busybox_base "$root" "$busybox"
publish "$stage" "$out" rootfs
trap - EXIT
progress busybox-image "built $out/rootfs"
echo "$out/rootfs"
