// What `moat install` checks in containerd's configuration. A runtime table written for Kata
// may carry `runtime_root`, which containerd 1.6 refuses for every shim v2 runtime ("invalid
// plugin config: `runtime_root` only works for runtime io.containerd.runtime.v1.linux"), and
// then its CRI plugin does not load at all: the user must drop that line.
import { parse } from "smol-toml";
import { isPlainObject } from "../../shared/json-object.js";

/** The runtime types moat serves. */
const MOAT_RUNTIME_TYPES = new Set(["io.containerd.moat.v2", "io.containerd.kata.v2"]);

export interface ConfigFinding {
  /** The TOML key path, as containerd's documentation writes it. */
  key: string;
  problem: string;
  fix: string;
}

/** Problems in containerd's config.toml `text` for moat's runtimes; none if it does not parse as TOML (containerd says why). */
export function containerdConfigFindings(text: string): ConfigFinding[] {
  let document: unknown;
  try {
    document = parse(text);
  } catch {
    return [];
  }
  const runtimes = tableAt(document, ["plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes"]);
  const findings: ConfigFinding[] = [];
  for (const [name, runtime] of Object.entries(runtimes)) {
    if (!isPlainObject(runtime) || !MOAT_RUNTIME_TYPES.has(String(runtime.runtime_type)) || runtime.runtime_root === undefined) continue;
    findings.push({
      key: `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.${name}.runtime_root`,
      problem: `containerd 1.6 refuses runtime_root for ${String(runtime.runtime_type)} (it only works for io.containerd.runtime.v1.linux), and then its CRI plugin does not load`,
      fix: "remove the runtime_root line; moat keeps its state under its own state root (/run/moat)",
    });
  }
  return findings;
}


function tableAt(document: unknown, path: string[]): Record<string, unknown> {
  let current: unknown = document;
  for (const name of path) current = isPlainObject(current) ? current[name] : undefined;
  return isPlainObject(current) ? current : {};
}
