#!/bin/sh
# The DaemonSet's entry (deploy/daemonset.yaml): a thin shell around `moat node install` and
# `moat node uninstall`, which do the work (src/host/cli/node-install.ts).
#   install            install, then sleep until stopped
#   uninstall-on-stop  the preStop hook: uninstall when MOAT_UNINSTALL_ON_STOP is "true"
#   uninstall          uninstall now
# Paths are the container's: /opt/moat and /etc/containerd are the host's at the same paths,
# the host's /usr/local/bin is at /host/usr/local/bin. The MOAT_* variables below change them
# (test/integration/issue-12-deploy.test.ts runs this script outside a container with them).
set -eu
source=${MOAT_SOURCE:-/moat}
install_dir=${MOAT_INSTALL_DIR:-/opt/moat}
prefix=${MOAT_PREFIX:-/host/usr/local/bin}
config=${MOAT_CONTAINERD_CONFIG:-/etc/containerd/config.toml}
moat="node $source/dist/bundle/moat.mjs"
restart=${MOAT_RESTART_COMMAND:-systemctl restart containerd}
case "${1:-install}" in
install)
  # /opt/moat is a hostPath (DirectoryOrCreate), so it exists before the installer runs.
  $moat node install --source "$source" --install-dir "$install_dir" --prefix "$prefix" \
    --containerd-config "$config" --runtimes "${MOAT_RUNTIMES:-moat,kata}" \
    --restart-command "$restart" ${NODE_NAME:+--node-name "$NODE_NAME"}
  echo "moat is installed on ${NODE_NAME:-this node}; sleeping until stopped"
  trap 'kill $! 2>/dev/null; exit 0' TERM INT
  while :; do sleep 3600 & wait $! || true; done
  ;;
uninstall-on-stop)
  [ "${MOAT_UNINSTALL_ON_STOP:-false}" = true ] || exit 0
  exec $moat node uninstall --install-dir "$install_dir" --restart-command "$restart"
  ;;
uninstall)
  exec $moat node uninstall --install-dir "$install_dir" --restart-command "$restart"
  ;;
*)
  echo "usage: $0 install | uninstall | uninstall-on-stop" >&2
  exit 2
  ;;
esac
