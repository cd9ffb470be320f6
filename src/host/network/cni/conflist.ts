// CNI network configuration lists (CNI spec 1.0.0, "Section 1: Network configuration format"):
// read from a conf dir, found by network name as libcni finds them (files ending .conf, .conflist
// or .json, in lexical order, the first with the name wins), and checked before any plugin runs,
// so that a bad file is one error naming the file and the field, and nothing is made.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { MoatError } from "../../../shared/errors.js";
import { isPlainObject } from "../../../shared/json-object.js";
import { Code } from "../../../shared/ttrpc/index.js";

/**
 * The versions whose result format moat reads (0.3.0 and later: `interfaces`, `ips`, `routes`).
 * 0.1.0 and 0.2.0 results have another shape; Debian's plugins (1.1.1) speak all of these.
 */
export const SUPPORTED_CNI_VERSIONS: readonly string[] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/** Network names and plugin types, as the spec allows them (a type is also a file name in CNI_PATH). */
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const PLUGIN_TYPE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const CONF_EXTENSIONS = [".conf", ".conflist", ".json"];
/** A conflist is a few hundred bytes; a file far larger is not one. */
const MAX_CONF_BYTES = 1024 * 1024;

/** One plugin of a list: its own JSON kept whole (the plugin reads its own keys). */
export interface PluginConf {
  type: string;
  /** The capability args it takes through runtimeConfig (`portMappings`, …). */
  capabilities: Record<string, boolean>;
  raw: Record<string, unknown>;
}

/** A network configuration list, checked. */
export interface Conflist {
  cniVersion: string;
  name: string;
  disableCheck: boolean;
  plugins: PluginConf[];
}

/** A network found in a conf dir: the list and the file it came from (named in every error). */
export interface CniNetwork {
  file: string;
  conflist: Conflist;
}

function invalid(file: string, field: string, what: string): MoatError {
  return new MoatError("MOAT_CNI_CONFIG", `${file}: ${field}: ${what}`, {
    hint: "see the CNI spec's network configuration format, and docs/networking.md for a conflist that works",
    status: Code.INVALID_ARGUMENT,
  });
}

/**
 * Checks `value` (a parsed .conflist, or a single plugin's .conf, which is turned into a list of
 * one as libcni does) and returns the list. `file` names it in the errors.
 */
export function checkConflist(value: unknown, file: string): Conflist {
  if (!isPlainObject(value)) throw invalid(file, "(top level)", "must be a JSON object");
  const single = value.plugins === undefined && value.type !== undefined;
  const { cniVersion, name, disableCheck } = value;
  if (typeof cniVersion !== "string") throw invalid(file, "cniVersion", "must be a string");
  if (!SUPPORTED_CNI_VERSIONS.includes(cniVersion)) throw invalid(file, "cniVersion", `${JSON.stringify(cniVersion)} is not supported (supported: ${SUPPORTED_CNI_VERSIONS.join(", ")})`);
  if (typeof name !== "string" || !NETWORK_NAME.test(name)) throw invalid(file, "name", "must be a string of letters, digits, '_', '.' and '-', starting with a letter or digit");
  if (disableCheck !== undefined && typeof disableCheck !== "boolean") throw invalid(file, "disableCheck", "must be a boolean");
  const list = single ? [value] : value.plugins;
  if (!Array.isArray(list) || list.length === 0) throw invalid(file, "plugins", "must be a non-empty array of plugin objects");
  const plugins = list.map((entry: unknown, index): PluginConf => {
    const field = single ? "" : `plugins[${index}].`;
    if (!isPlainObject(entry)) throw invalid(file, `plugins[${index}]`, "must be a JSON object");
    const { type, capabilities } = entry;
    if (typeof type !== "string" || !PLUGIN_TYPE.test(type)) throw invalid(file, `${field}type`, "must be a plugin's file name (letters, digits, '_', '.', '-')");
    if (capabilities !== undefined && !isPlainObject(capabilities)) throw invalid(file, `${field}capabilities`, "must be an object of booleans");
    const checked: Record<string, boolean> = {};
    for (const [key, on] of Object.entries(capabilities ?? {})) {
      if (typeof on !== "boolean") throw invalid(file, `${field}capabilities.${key}`, "must be a boolean");
      checked[key] = on;
    }
    const ipam = entry.ipam;
    if (ipam !== undefined && (!isPlainObject(ipam) || typeof ipam.type !== "string" || !PLUGIN_TYPE.test(ipam.type))) {
      throw invalid(file, `${field}ipam.type`, "must be an IPAM plugin's file name");
    }
    return { type, capabilities: checked, raw: entry };
  });
  return { cniVersion, name, disableCheck: disableCheck ?? false, plugins };
}

/**
 * Finds network `name` in `confDir`: the first file (lexical order) of .conf, .conflist or
 * .json whose `name` is it, checked. A file that is not JSON is skipped unless no file has the
 * name, in which case the error lists it (it may be the one that was meant).
 */
export async function loadNetwork(confDir: string, name: string): Promise<CniNetwork> {
  const where = `CNI network ${JSON.stringify(name)}`;
  const hint = `put a conflist with "name": ${JSON.stringify(name)} in ${confDir} (docs/networking.md shows one), or pass --cni-conf-dir`;
  if (!NETWORK_NAME.test(name)) throw new MoatError("MOAT_CNI_CONFIG", `${where}: not a CNI network name (letters, digits, '_', '.', '-')`, { status: Code.INVALID_ARGUMENT });
  const entries = await readdir(confDir).catch((error: NodeJS.ErrnoException) => {
    throw new MoatError("MOAT_CNI_NOT_FOUND", `${where}: conf dir ${confDir} cannot be read (${error.code ?? error.message})`, { hint, status: Code.NOT_FOUND });
  });
  const unreadable: string[] = [];
  for (const entry of entries.filter((file) => CONF_EXTENSIONS.some((ext) => file.endsWith(ext))).sort()) {
    const file = join(confDir, entry);
    let value: unknown;
    try {
      const text = await readFile(file, "utf8");
      if (text.length > MAX_CONF_BYTES) throw new Error(`larger than ${MAX_CONF_BYTES} bytes`);
      value = JSON.parse(text);
    } catch (error) {
      unreadable.push(`${file} (${error instanceof Error ? error.message : String(error)})`);
      continue;
    }
    if (isPlainObject(value) && value.name === name) return { file, conflist: checkConflist(value, file) };
  }
  const skipped = unreadable.length === 0 ? "" : `; not JSON, skipped: ${unreadable.join(", ")}`;
  throw new MoatError("MOAT_CNI_NOT_FOUND", `${where}: no .conf, .conflist or .json file in ${confDir} names it${skipped}`, { hint, status: Code.NOT_FOUND });
}
