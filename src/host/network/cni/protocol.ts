// What moat hands a CNI plugin and reads back (CNI spec 1.0.0, "Section 2: Execution Protocol",
// "Section 3: Execution of Network Configurations", "Section 5: Result Types"): the environment,
// the configuration on stdin (the list's name and cniVersion, prevResult, runtimeConfig with the
// capability args the plugin asks for), the result on stdout, and the error JSON of a failure.
// Pure: the runner (run.ts) does the exec.
import { MoatError } from "../../../shared/errors.js";
import { isPlainObject } from "../../../shared/json-object.js";
import { Code } from "../../../shared/ttrpc/index.js";
import type { Conflist } from "./conflist.js";

export type CniCommand = "ADD" | "DEL";

/** One container's attachment to one network: what the CNI_* variables carry. */
export interface CniAttachment {
  /** CNI_CONTAINERID: unique per container (moat's sandbox id). */
  containerId: string;
  /** CNI_NETNS: the network namespace's path. */
  netns: string;
  /** CNI_IFNAME: the interface the plugins make in the namespace. */
  ifName: string;
  /** CNI_ARGS, as key=value pairs (`IgnoreUnknown=1` and the like). */
  args: Array<[string, string]>;
  /** CNI_PATH: where the plugins' binaries are looked for, in order. */
  cniPath: string[];
  /** Capability args, given in runtimeConfig to the plugins whose `capabilities` name them. */
  capabilityArgs: { portMappings?: PortMapping[] };
}

/** A published port, in the `portMappings` capability's spelling (the portmap plugin's). */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp";
  hostIP?: string;
}

/** A result, kept as the plugin printed it (the next plugin gets it whole as prevResult). */
export type CniResult = Record<string, unknown>;

const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const ARG_PART = /^[^;=\s]+$/;

/** Checks an attachment's fields as the spec restricts them; `where` names the caller's object. */
export function checkAttachment(attachment: CniAttachment, where: string): void {
  const bad = (field: string, what: string) => new MoatError("MOAT_CNI_CONFIG", `${where}: ${field}: ${what}`, { status: Code.INVALID_ARGUMENT });
  if (!CONTAINER_ID.test(attachment.containerId)) throw bad("CNI_CONTAINERID", `${JSON.stringify(attachment.containerId)} is not letters, digits, '_', '.', '-'`);
  if (!attachment.netns.startsWith("/")) throw bad("CNI_NETNS", `${JSON.stringify(attachment.netns)} is not an absolute path`);
  if (!/^[^/\s:]{1,15}$/.test(attachment.ifName) || attachment.ifName === "." || attachment.ifName === "..") throw bad("CNI_IFNAME", `${JSON.stringify(attachment.ifName)} is not an interface name (1-15 bytes, no '/', ':' or space)`);
  for (const [key, value] of attachment.args) if (!ARG_PART.test(key) || !ARG_PART.test(value)) throw bad("CNI_ARGS", `${JSON.stringify(`${key}=${value}`)} has ';', '=' or a space in it`);
  if (attachment.cniPath.length === 0 || attachment.cniPath.some((dir) => !dir.startsWith("/") || dir.includes(":"))) throw bad("CNI_PATH", "must be absolute directories without ':'");
}

/** The CNI_* variables for `command` (the runner adds PATH: plugins run iptables and the like). */
export function pluginEnv(command: CniCommand, attachment: CniAttachment): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: attachment.containerId,
    CNI_NETNS: attachment.netns,
    CNI_IFNAME: attachment.ifName,
    CNI_ARGS: attachment.args.map(([key, value]) => `${key}=${value}`).join(";"),
    CNI_PATH: attachment.cniPath.join(":"),
  };
}

/** True when `version` (a supported one) is at least 0.4.0: DEL then gets prevResult too. */
function delTakesPrevResult(version: string): boolean {
  return version === "0.4.0" || version === "1.0.0";
}

/**
 * The configuration plugin `index` of `conflist` reads on stdin: its own JSON, with the list's
 * `name` and `cniVersion`, `prevResult` when there is one (for DEL only from 0.4.0), and
 * `runtimeConfig` holding the capability args it declares (and only those, as the spec says).
 */
export function pluginConfig(conflist: Conflist, index: number, command: CniCommand, prevResult: CniResult | undefined, capabilityArgs: CniAttachment["capabilityArgs"]): Record<string, unknown> {
  const plugin = conflist.plugins[index];
  if (plugin === undefined) throw new RangeError(`plugin ${index} of ${conflist.plugins.length}`);
  const config: Record<string, unknown> = { ...plugin.raw, cniVersion: conflist.cniVersion, name: conflist.name };
  delete config.prevResult;
  delete config.runtimeConfig;
  if (prevResult !== undefined && (command === "ADD" || delTakesPrevResult(conflist.cniVersion))) config.prevResult = prevResult;
  const runtimeConfig: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(capabilityArgs)) {
    if (value !== undefined && plugin.capabilities[key] === true) runtimeConfig[key] = value;
  }
  if (Object.keys(runtimeConfig).length > 0) config.runtimeConfig = runtimeConfig;
  return config;
}

/**
 * Checks what a plugin printed for ADD: a result object with the spec's fields where present
 * (`interfaces` with names, `ips` with CIDR addresses, `routes` with a dst). Returned whole.
 */
export function parseResult(stdout: string, where: string): CniResult {
  const bad = (what: string) => new MoatError("MOAT_CNI_RESULT", `${where}: ${what}`, { status: Code.INTERNAL });
  let value: unknown;
  try {
    value = JSON.parse(stdout);
  } catch {
    throw bad(`printed no JSON result: ${JSON.stringify(stdout.slice(0, 200))}`);
  }
  if (!isPlainObject(value)) throw bad("printed a result that is not a JSON object");
  const list = (field: string, check: (item: Record<string, unknown>) => boolean) => {
    const items = value[field];
    if (items === undefined) return;
    if (!Array.isArray(items) || !items.every((item) => isPlainObject(item) && check(item))) throw bad(`result's ${field} is not as the spec says`);
  };
  list("interfaces", (item) => typeof item.name === "string");
  list("ips", (item) => typeof item.address === "string" && item.address.includes("/") && (item.interface === undefined || Number.isInteger(item.interface)));
  list("routes", (item) => typeof item.dst === "string");
  return value;
}

/**
 * The message of a failed plugin: its error JSON (`code`, `msg`, `details`) when it printed
 * one on stdout, otherwise its stderr, otherwise its exit status.
 */
export function pluginFailure(stdout: string, stderr: string, exit: string): string {
  let value: unknown;
  try {
    value = JSON.parse(stdout);
  } catch {
    value = undefined;
  }
  if (isPlainObject(value) && typeof value.msg === "string") {
    const details = typeof value.details === "string" && value.details !== "" ? `: ${value.details}` : "";
    const code = typeof value.code === "number" ? ` (CNI error ${value.code})` : "";
    return `${value.msg}${details}${code}`;
  }
  const text = stderr.trim() || stdout.trim();
  return text === "" ? exit : `${text.slice(0, 2000)} (${exit})`;
}

/**
 * Parses one `-p` value, `[IP:]HOST:CONTAINER[/tcp|udp]` (an IPv6 address in brackets), into
 * a port mapping.
 */
export function parsePortMapping(text: string): PortMapping {
  const bad = (what: string) => new MoatError("MOAT_CNI_PORT", `-p ${JSON.stringify(text)}: ${what}`, { hint: "-p [IP:]HOST:CONTAINER[/tcp|udp], e.g. -p 127.0.0.1:8080:80", status: Code.INVALID_ARGUMENT });
  const match = /^(?:(\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(\d+):(\d+)(?:\/(tcp|udp))?$/.exec(text);
  if (match === null) throw bad("not [IP:]HOST:CONTAINER[/tcp|udp]");
  const [, ip, host, container, protocol] = match;
  const port = (value: string | undefined, which: string) => {
    const number = Number(value);
    if (!Number.isInteger(number) || number < 1 || number > 65535) throw bad(`${which} port must be 1-65535`);
    return number;
  };
  const mapping: PortMapping = { hostPort: port(host, "host"), containerPort: port(container, "container"), protocol: protocol === "udp" ? "udp" : "tcp" };
  if (ip !== undefined) {
    const address = ip.startsWith("[") ? ip.slice(1, -1) : ip;
    if (!ip.startsWith("[") && !/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(address)) throw bad(`${ip} is not an IPv4 address`);
    if (!ip.startsWith("[") && address.split(".").some((part) => Number(part) > 255)) throw bad(`${ip} is not an IPv4 address`);
    mapping.hostIP = address;
  }
  return mapping;
}
