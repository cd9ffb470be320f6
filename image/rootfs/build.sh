#!/usr/bin/env bash
# Builds moat's guest root filesystem from host files: moat-init (PID 1), moat-tty (the relay of
# a container's terminal), the host's node and the shared libraries it needs, the bundled
# agent, busybox, and crun with its libraries.
# Both shapes are made from one staging tree: an uncompressed erofs image (booted from
# virtio-blk, the default) and an uncompressed cpio initrd; docs/guest-image.md has the
# measurements behind that choice.
#
# Usage: build.sh AGENT_JS
# Output: $MOAT_CACHE/rootfs/<hash of the tree>/{rootfs.erofs,initrd.cpio}; the directory is
# printed on stdout. The hash is taken over the staged tree itself, so the same inputs give
# the same bytes and an unchanged tree is not rebuilt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../progress.sh"
. "$here/../busybox-base.sh"

agent_js=${1:?usage: build.sh AGENT_JS}
cache=${MOAT_CACHE:-/var/cache/moat}
[ -r "$agent_js" ] || fail rootfs "$agent_js not found" "npm run build bundles the agent"
for tool in busybox node crun mkfs.erofs cpio gcc qemu-x86_64; do
  command -v "$tool" >/dev/null || fail rootfs "$tool not found" "make setup installs the build dependencies"
done

mkdir -p "$cache/rootfs"
stage=$(mktemp -d "$cache/rootfs/stage.XXXXXX")
trap 'rm -rf "$stage" "${tmp:-}"' EXIT
progress rootfs "staging the guest tree"

# copy_binary PATH: the file and every shared library ldd names, at their own paths.
copy_binary() {
  install -D -m 0755 "$1" "$stage$1"
  ldd "$1" 2>/dev/null | grep -oE '/[^ ]+' | while read -r lib; do
    [ -e "$stage$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$stage$lib"
  done
}

mkdir -p "$stage"/{proc,sys,dev,run,tmp,etc,moat,sbin,bin,usr/bin,usr/sbin,root}
chmod 1777 "$stage/tmp"
gcc -static -Os -Wall -Wextra -Werror -o "$stage/sbin/moat-init" "$here/../../src/guest/init/moat-init.c" "$here/../../src/guest/init/vport-relay.c"
gcc -static -Os -Wall -Wextra -Werror -o "$stage/sbin/moat-tty" "$here/../../src/guest/tty/moat-tty.c"
strip "$stage/sbin/moat-init" "$stage/sbin/moat-tty"
# The agent's system calls (mount, the RNG, clock and hostname), against the headers of the
# node it runs on: the host's, copied below.
node_include=$(dirname "$(readlink -f "$(command -v node)")")/../include/node
[ -f "$node_include/node_api.h" ] || fail rootfs "Node's headers are not in $node_include" "install the Node.js package that ships them (NodeSource's nodejs, or Debian's libnode-dev)"
gcc -shared -fPIC -O2 -Wall -Wextra -Werror -I"$node_include" -o "$stage/moat/moat-sys.node" "$here/../../src/guest/sys/moat-sys.c"
strip "$stage/moat/moat-sys.node"
copy_binary "$(readlink -f "$(command -v node)")"
[ "$(readlink -f "$(command -v node)")" = /usr/bin/node ] || ln -s "$(readlink -f "$(command -v node)")" "$stage/usr/bin/node"
copy_binary "$(command -v crun)"
install -m 0644 "$agent_js" "$stage/moat/agent.js"
install_busybox_base "$stage" "$(command -v busybox)"
echo moat >"$stage/etc/hostname"

# Same bytes from the same inputs: fixed times, owners and order. The hash is taken before
# the V8 snapshot is added: the snapshot follows from node and agent.js, but V8 does not
# write it byte for byte the same twice.
find "$stage" -exec touch -h -d @0 {} +
hash=$(cd "$stage" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - . | sha256sum | cut -c1-16)
out=$cache/rootfs/$hash
if [ -f "$out/rootfs.erofs" ] && [ -f "$out/initrd.cpio" ]; then
  progress rootfs "cached: $out"
  echo "$out"
  exit 0
fi

# The agent's V8 startup snapshots: the guest's node starts from one instead of parsing and
# evaluating agent.js, about 0.8-1.3 s sooner under TCG (docs/guest-image.md). Node accepts a
# snapshot only on a CPU with the features it was built with, so there are two: agent.blob,
# built here, for KVM's `-cpu host`, and agent-tcg.blob, built under QEMU's user-mode
# emulator with `-cpu max`, the features a TCG guest's `-cpu max` has. moat-init picks one by
# the accelerator the host names (MOAT_ACCEL) and falls back to agent.js if node refuses it.
# Node warns that child_process and readline are "not yet fully verified" in snapshots; the
# integration tests exercise both from the snapshot (containers, exit reports).
build_snapshot() { # build_snapshot BLOB [EMULATOR...]: the emulator takes a path, not a name to look up
  local blob=$1
  shift
  "$@" "$(command -v node)" --snapshot-blob "$stage/moat/$blob" --build-snapshot "$stage/moat/agent.js" >"$stage/snapshot.log" 2>&1 \
    || fail rootfs "building the agent's snapshot $blob failed: $(tail -5 "$stage/snapshot.log")"
  rm "$stage/snapshot.log"
  touch -h -d @0 "$stage/moat/$blob"
}
progress rootfs "building the agent's V8 startup snapshot for KVM"
build_snapshot agent.blob
progress rootfs "building the agent's V8 startup snapshot for TCG (under qemu-x86_64 -cpu max)"
build_snapshot agent-tcg.blob qemu-x86_64 -cpu max

tmp=$(mktemp -d "$cache/rootfs/out.XXXXXX") && chmod 755 "$tmp"
progress rootfs "writing erofs image ($(du -sm "$stage" | cut -f1) MiB of files)"
mkfs.erofs --quiet --all-root -T0 -U 00000000-0000-0000-0000-00000000b0a7 "$tmp/rootfs.erofs" "$stage"
progress rootfs "writing cpio initrd"
(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null --create --format=newc --reproducible --owner=0:0 --quiet) >"$tmp/initrd.cpio"
publish "$tmp" "$out" rootfs.erofs initrd.cpio
progress rootfs "built $out (erofs $(du -m "$out/rootfs.erofs" | cut -f1) MiB, initrd $(du -m "$out/initrd.cpio" | cut -f1) MiB)"
echo "$out"
