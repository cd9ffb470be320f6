#!/usr/bin/env bash
# Builds moat's guest kernel from Debian's linux-source-6.1: `make allnoconfig` plus
# image/kernel/moat.config, no modules. The uncompressed vmlinux is the product: QEMU boots
# it through the PVH entry point, which measured faster than the bzImage (docs/guest-image.md).
#
# Output: $MOAT_CACHE/kernel/<hash of inputs>/vmlinux (default cache /var/cache/moat).
# The path is printed on stdout; progress goes to stderr. Same inputs, same hash, no rebuild.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../progress.sh"

cache=${MOAT_CACHE:-/var/cache/moat}
tarball=/usr/src/linux-source-6.1.tar.xz
fragment=$here/moat.config
# Files compiled in a full build of this config, for the progress percentage only.
expected_files=1280

[ -r "$tarball" ] || fail kernel "$tarball not found" "apt-get install linux-source-6.1 (make setup does this)"
src_version=$(dpkg-query -W -f '${Version}' linux-source-6.1)
hash=$( { echo "$src_version $(stat -c %s "$tarball")"; cat "$fragment" "$0"; } | sha256sum | cut -c1-16)
out=$cache/kernel/$hash
if [ -f "$out/vmlinux" ]; then
  progress kernel "cached: $out/vmlinux"
  echo "$out/vmlinux"
  exit 0
fi

mkdir -p "$cache/kernel"
work=$(mktemp -d "$cache/kernel/build.XXXXXX")
trap 'rm -rf "$work" "${tmp:-}"' EXIT

progress kernel "unpacking linux-source-$src_version"
tar -xf "$tarball" -C "$work"
srcdir=$work/linux-source-6.1
obj=$work/obj

# Fixed build identity, so that the same inputs give the same bytes.
export KBUILD_BUILD_TIMESTAMP="1970-01-01" KBUILD_BUILD_USER=moat KBUILD_BUILD_HOST=moat
make -s -C "$srcdir" O="$obj" KCONFIG_ALLCONFIG="$fragment" allnoconfig >"$work/config.log" 2>&1 \
  || fail kernel "make allnoconfig failed: $(tail -3 "$work/config.log")"

# allnoconfig silently drops a line whose dependencies are off: refuse to go on with such a config.
missing=$(grep -E '^CONFIG_' "$fragment" | while read -r line; do
  grep -qxF "$line" "$obj/.config" || echo "$line"
done)
[ -z "$missing" ] || fail kernel "image/kernel/moat.config: these lines did not take effect (a dependency is off):
$missing"

progress kernel "compiling vmlinux with $(nproc) jobs"
make -C "$obj" -j"$(nproc)" vmlinux >"$work/build.log" 2>&1 &
build_pid=$!
watch_log kernel "$build_pid" "$work/build.log" '^ +CC ' "$expected_files"
wait "$build_pid" || fail kernel "compile failed: $(grep -m3 -E 'error|Error' "$work/build.log")"

tmp=$(mktemp -d "$cache/kernel/out.XXXXXX") && chmod 755 "$tmp"
cp "$obj/vmlinux" "$tmp/vmlinux"
cp "$obj/.config" "$tmp/config"
make -s -C "$obj" kernelrelease >"$tmp/release"
publish "$tmp" "$out" vmlinux
progress kernel "built $(cat "$out/release"): $out/vmlinux ($(du -m "$out/vmlinux" | cut -f1) MiB)"
echo "$out/vmlinux"
