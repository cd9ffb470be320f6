// Options every moat command takes, as commander parses them.
import type { Config } from "../config/index.js";

export interface GlobalOptions {
  /** --config: the configuration file to read instead of the default search. */
  config?: string;
  /** --root: the state root, overriding runtime.state_root. */
  root?: string;
  /** --debug: stack traces on errors. */
  debug?: boolean;
  /** --log: where runtime errors also go, as runc writes them (conmon shows them to users). */
  log?: string;
  /** --log-format: "text" or "json". */
  logFormat?: string;
  /** --systemd-cgroup: accepted for runc compatibility; a systemd-form cgroupsPath is recognised by its shape (src/host/cgroup). */
  systemdCgroup?: boolean;
}

/** Applies the command-line overrides to a loaded configuration. */
export function withOverrides(config: Config, global: GlobalOptions): Config {
  return global.root ? { ...config, runtime: { ...config.runtime, stateRoot: global.root } } : config;
}
