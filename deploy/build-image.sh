#!/bin/bash
# Builds the node installer's image (deploy/Dockerfile) from this checkout's built moat.
#   deploy/build-image.sh [--tag TAG] [--context-only DIR]
# Run `make build guest` first. The context holds a copy of the moat files the installer puts on
# a node (links to the build cache followed), this host's node and kubectl, and the Dockerfile;
# `docker build` needs debian:bookworm-slim, which must be pulled (or loaded) beforehand: the
# machine moat is developed on has no registry access, so there the context is all it makes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=moat-node-installer:latest
context=""
while [ $# -gt 0 ]; do
  case "$1" in
  --tag) tag=$2; shift 2 ;;
  --context-only) context=$2; shift 2 ;;
  *) echo "usage: $0 [--tag TAG] [--context-only DIR]" >&2; exit 2 ;;
  esac
done
keep=${context:+yes}
context=${context:-$(mktemp -d)}
[ -n "$keep" ] || trap 'rm -rf "$context"' EXIT
for part in package.json bin dist/bin dist/bundle dist/guest dist/images deploy/node-entry.sh; do
  [ -e "$root/$part" ] || { echo "$root/$part is missing: run make build guest" >&2; exit 1; }
done
mkdir -p "$context/moat/dist/images" "$context/moat/deploy"
cp -R "$root/package.json" "$root/bin" "$context/moat/"
cp -R "$root/dist/bin" "$root/dist/bundle" "$context/moat/dist/"
cp -RL "$root/dist/guest" "$context/moat/dist/" # links into the build cache, to single files
for image in "$root"/dist/images/*/; do
  # The image's rootfs is a link into the build cache; the links inside it (busybox's applets) stay links.
  name=$(basename "$image")
  mkdir -p "$context/moat/dist/images/$name"
  cp -a "$(readlink -f "$image/rootfs")" "$context/moat/dist/images/$name/rootfs"
done
cp "$root/deploy/node-entry.sh" "$context/moat/deploy/"
cp -L "$(command -v node)" "$context/node"
cp -L "$(command -v kubectl)" "$context/kubectl"
cp "$root/deploy/Dockerfile" "$context/Dockerfile"
if [ -n "$keep" ]; then
  echo "context in $context"
else
  docker build -t "$tag" "$context"
fi
