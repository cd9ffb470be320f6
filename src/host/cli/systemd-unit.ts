// The systemd unit `moat install --systemd` writes for moatd. moatd otherwise starts on
// demand (the CLI and the shim start it when none answers) and exits when idle; under systemd
// it runs for good and restarts when it dies.
//
// KillMode=process: systemd stops or restarts only moatd itself. QEMU and virtiofsd run in
// their own sessions but in the unit's cgroup, and the default (control-group) would kill
// every sandbox with the daemon; a restarted moatd re-adopts them instead (daemon.ts).

export interface MoatdUnitOptions {
  /** The node binary that runs moatd. */
  node: string;
  /** dist/bundle/moatd.mjs. */
  moatd: string;
  stateRoot: string;
  /** A configuration file for moatd, if not the default search. */
  config: string | undefined;
}

export function moatdUnit(options: MoatdUnitOptions): string {
  const args = [options.node, options.moatd, "--root", options.stateRoot, "--idle-exit-seconds", "0", ...(options.config ? ["--config", options.config] : [])];
  return [
    "[Unit]",
    "Description=moat host daemon: every sandbox VM on this host",
    "Documentation=file://" + options.moatd.replace(/\/dist\/bundle\/moatd\.mjs$/, "/README.md"),
    "After=local-fs.target",
    "",
    "[Service]",
    `ExecStart=${args.map(quote).join(" ")}`,
    "KillMode=process",
    "Restart=on-failure",
    "RestartSec=1",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}

/** systemd's quoting for an ExecStart word. */
function quote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `"${word.replace(/(["\\])/g, "\\$1")}"`;
}
