// Options every moat command takes, as commander parses them.
import { resolve } from "node:path";
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

/**
 * Applies the command-line overrides to a loaded configuration. --root is made absolute and
 * normal: a sandbox's socket directory is named by a hash of its state directory's path, which
 * must be the same string for every command and for the moatd they start.
 */
export function withOverrides(config: Config, global: GlobalOptions): Config {
  return global.root ? { ...config, runtime: { ...config.runtime, stateRoot: resolve(global.root) } } : config;
}
