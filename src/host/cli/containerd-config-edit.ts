// How `moat node install` adds moat's runtimes to containerd's config.toml, and how `moat node
// uninstall` takes them out again (issue 12 item 5). The file is edited as text, not parsed and
// re-serialised: a re-serialised file would lose the operator's comments, key order and
// formatting, and the uninstall could not give the original back byte for byte. What is added
// is one block of tables appended at the end of the file, between two marker comments; TOML
// allows a table anywhere after the root keys, so appending never moves anything else. smol-toml
// parses the file before (to find what is already there and refuse what cannot work) and the
// result after (so that a file whose own shape forbids the new tables, an inline `runtimes = {…}`
// say, is refused instead of written).
import { parse, TomlError } from "smol-toml";
import { MoatError } from "../../shared/errors.js";
import { isPlainObject } from "../../shared/json-object.js";
import { Code } from "../../shared/ttrpc/index.js";

/** The CRI runtime handlers the installer knows: `moat`, and `kata` so that Kata's pod YAML (runtimeClassName: kata) runs unchanged. */
export const NODE_RUNTIME_TYPES = {
  moat: "io.containerd.moat.v2",
  kata: "io.containerd.kata.v2",
} as const;
export type NodeRuntimeName = keyof typeof NODE_RUNTIME_TYPES;

/** Where the CRI plugin keeps its runtime tables, by config.toml version (containerd 1.6/1.7: 2; containerd 2: 3). */
const RUNTIMES_TABLE: Record<number, string[]> = {
  2: ["plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes"],
  3: ["plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes"],
};

export const BLOCK_BEGIN = "# moat node install: begin (moat's runtimes for the CRI plugin; `moat node uninstall` removes this block)";
export const BLOCK_END = "# moat node install: end";

export interface RuntimeAddition {
  /** The new file text (the original when nothing was missing). */
  text: string;
  /** The exact text appended (what uninstall removes), or undefined when nothing was missing. */
  block: string | undefined;
  /** The handlers added, and those found already configured for moat (left as they are). */
  added: NodeRuntimeName[];
  present: NodeRuntimeName[];
}

/**
 * Adds the runtime tables for `names` that `original` (config.toml at `path`; undefined when the
 * file does not exist) lacks. Throws, having changed nothing, when the file is not TOML, is a
 * version 1 file, has a table of that name for another runtime type, or sets runtime_root under
 * a runtime served by moat (containerd 1.6 then refuses the CRI plugin's whole configuration).
 */
export function addRuntimes(path: string, original: string | undefined, names: readonly NodeRuntimeName[]): RuntimeAddition {
  const base = original ?? "version = 2\n";
  const document = parseConfig(path, base);
  const tablePath = runtimesTablePath(path, document);
  const runtimes = tableAt(document, tablePath);
  refuseRuntimeRoot(path, tablePath, runtimes);
  const added: NodeRuntimeName[] = [];
  const present: NodeRuntimeName[] = [];
  for (const name of names) {
    const existing = runtimes[name];
    if (existing === undefined) {
      added.push(name);
      continue;
    }
    const runtimeType = isPlainObject(existing) ? existing.runtime_type : undefined;
    if (runtimeType !== NODE_RUNTIME_TYPES[name]) {
      throw new MoatError("MOAT_NODE_RUNTIME_CONFLICT", `${path}: ${keyOf(tablePath, name)}: already configured with runtime_type ${JSON.stringify(runtimeType ?? null)}, not ${NODE_RUNTIME_TYPES[name]}`, {
        hint: `that handler belongs to another runtime; remove its table, or install only the other handler (--runtimes ${name === "moat" ? "kata" : "moat"})`,
        status: Code.ALREADY_EXISTS,
      });
    }
    present.push(name);
  }
  if (added.length === 0) return { text: base, block: undefined, added, present };
  const block = [
    base === "" || base.endsWith("\n") ? "" : "\n",
    "\n",
    BLOCK_BEGIN,
    "\n",
    ...added.map((name) => runtimeTable(tablePath, name)),
    BLOCK_END,
    "\n",
  ].join("");
  const text = base + block;
  // What the block does to this file, checked: it parses, and containerd will find each table where it looks.
  let after: unknown;
  try {
    after = parse(text);
  } catch (error) {
    throw new MoatError("MOAT_NODE_CONFIG_INVALID", `${path}: moat's runtime tables cannot be added to this file${error instanceof TomlError ? ` (${error.message.split("\n")[0]})` : ""}`, {
      hint: `the file defines ${tablePath.join(".")} in a form TOML cannot extend (an inline table or dotted keys); write it as [${keyOf(tablePath).replace(/\.$/, "")}] tables, or add the snippet in deploy/containerd-snippet.toml by hand`,
      status: Code.FAILED_PRECONDITION,
    });
  }
  for (const name of added) {
    const table = tableAt(after, tablePath)[name];
    if (!isPlainObject(table) || table.runtime_type !== NODE_RUNTIME_TYPES[name]) {
      throw new MoatError("MOAT_NODE_CONFIG_INVALID", `${path}: ${keyOf(tablePath, name)}: not found where containerd reads it after adding moat's block`, { status: Code.INTERNAL });
    }
  }
  return { text, block, added, present };
}

/**
 * Takes out the block addRuntimes appended: the file as it was, byte for byte, when nothing
 * else changed; the operator's later edits elsewhere in the file are kept. Throws when the
 * block is no longer in the file as written (edited by hand: moat will not guess).
 */
export function removeBlock(path: string, text: string, block: string): string {
  if (text.endsWith(block)) return text.slice(0, text.length - block.length);
  const at = text.indexOf(block);
  if (at === -1 || text.indexOf(block, at + 1) !== -1) {
    throw new MoatError("MOAT_NODE_UNINSTALL", `${path}: the block moat added (from "${BLOCK_BEGIN.slice(0, 24)}…" to "${BLOCK_END}") is no longer in the file as moat wrote it`, {
      hint: "remove moat's runtime tables by hand; the block moat wrote is in the install state file (node-install.json)",
      status: Code.FAILED_PRECONDITION,
    });
  }
  return text.slice(0, at) + text.slice(at + block.length);
}

/** The containerd snippet for `name`, as appended (also the text of deploy/containerd-snippet.toml). */
export function runtimeTable(tablePath: string[], name: NodeRuntimeName): string {
  return [
    `[${keyOf(tablePath, name)}]`,
    `  runtime_type = "${NODE_RUNTIME_TYPES[name]}"`,
    // The VM has its own devices: a privileged pod must not be handed the host's.
    "  privileged_without_host_devices = true",
    // CRI passes a pod's annotations to the runtime only where listed: the sizing overrides (docs/kubernetes.md).
    '  pod_annotations = ["io.katacontainers.*", "io.moat.*"]',
    '  container_annotations = ["io.katacontainers.*", "io.moat.*"]',
    "",
  ].join("\n");
}

export const CRI_RUNTIMES_V2 = RUNTIMES_TABLE[2]!; // a key of the literal above

function parseConfig(path: string, text: string): Record<string, unknown> {
  try {
    return parse(text);
  } catch (error) {
    if (error instanceof TomlError) {
      const what = error.message.split("\n")[0]!.replace(/^Invalid TOML document: /, ""); // split always has a first element
      throw new MoatError("MOAT_NODE_CONFIG_INVALID", `${path}:${error.line}:${error.column}: not TOML: ${what}`, {
        hint: "containerd would not start with this file either; fix it, then run the installer again",
        status: Code.INVALID_ARGUMENT,
      });
    }
    throw error;
  }
}

function runtimesTablePath(path: string, document: Record<string, unknown>): string[] {
  const version = document.version;
  if (version === undefined || version === 1) {
    throw new MoatError("MOAT_NODE_CONFIG_INVALID", `${path}: a version 1 configuration (${version === undefined ? "no `version` key" : "version = 1"}), whose plugin names (plugins.cri) moat's installer does not write`, {
      hint: "add `version = 2` as the first line and rename [plugins.cri…] tables to [plugins.\"io.containerd.grpc.v1.cri\"…] (containerd 1.6 reads a file without `version` as version 1), then run the installer again",
      status: Code.FAILED_PRECONDITION,
    });
  }
  const table = typeof version === "number" ? RUNTIMES_TABLE[version] : undefined;
  if (!table) {
    throw new MoatError("MOAT_NODE_CONFIG_INVALID", `${path}: version: ${JSON.stringify(version)} is not a containerd configuration version moat knows (2 or 3)`, { status: Code.INVALID_ARGUMENT });
  }
  return table;
}

function refuseRuntimeRoot(path: string, tablePath: string[], runtimes: Record<string, unknown>): void {
  const served = new Set<unknown>(Object.values(NODE_RUNTIME_TYPES));
  for (const [name, runtime] of Object.entries(runtimes)) {
    if (!isPlainObject(runtime) || !served.has(runtime.runtime_type) || runtime.runtime_root === undefined) continue;
    throw new MoatError("MOAT_NODE_RUNTIME_ROOT", `${path}: ${keyOf(tablePath, name)}.runtime_root: containerd 1.6 refuses runtime_root for ${String(runtime.runtime_type)} (it only works for io.containerd.runtime.v1.linux), and then its CRI plugin does not load; nothing was changed`, {
      hint: "remove the runtime_root line (moat keeps its state under its own state root, /run/moat), then run the installer again",
      status: Code.FAILED_PRECONDITION,
    });
  }
}

/** The dotted key containerd's documentation writes, quoting the names that hold dots. */
function keyOf(tablePath: string[], name?: string): string {
  return [...tablePath, ...(name === undefined ? [] : [name])].map((part) => (/^[A-Za-z0-9_-]+$/.test(part) ? part : `"${part}"`)).join(".");
}

function tableAt(document: unknown, path: string[]): Record<string, unknown> {
  let current: unknown = document;
  for (const name of path) current = isPlainObject(current) ? current[name] : undefined;
  return isPlainObject(current) ? current : {};
}
