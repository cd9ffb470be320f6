// A container that shares the guest's network namespace (its sandbox's network was carried into
// the guest, docs/networking.md) may still ask for `net.*` sysctls: Docker sets
// net.ipv4.ip_unprivileged_port_start on every bridge container. crun refuses a `net.*` sysctl
// without a network namespace of the container's own, which protects a host's namespace; here
// the guest's namespace is the sandbox's, this container's alone, so the agent sets them there
// itself before crun runs, and crun gets the spec without them.
import { writeFile } from "node:fs/promises";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

/** A net.* key as /proc/sys names it: dotted words, nothing that could leave /proc/sys/net. */
const NET_KEY = /^net(\.[A-Za-z0-9_-]+)+$/;
const MAX_VALUE_BYTES = 4096;

/**
 * Splits the spec's `net.*` sysctls off when it has no network namespace entry: returns the
 * spec crun gets and the sysctls the agent sets. A spec with its own network namespace is left
 * alone (crun sets them in it).
 */
export function splitNetSysctls(spec: Record<string, unknown>, where: string): { spec: Record<string, unknown>; sysctls: Array<[string, string]> } {
  const linux = spec.linux;
  if (typeof linux !== "object" || linux === null) return { spec, sysctls: [] };
  const { namespaces, sysctl } = linux as { namespaces?: unknown; sysctl?: unknown };
  if (typeof sysctl !== "object" || sysctl === null) return { spec, sysctls: [] };
  const ownNetns = Array.isArray(namespaces) && namespaces.some((entry: unknown) => typeof entry === "object" && entry !== null && (entry as { type?: unknown }).type === "network"); // an object, checked just before
  if (ownNetns) return { spec, sysctls: [] };
  const kept: Record<string, unknown> = {};
  const sysctls: Array<[string, string]> = [];
  for (const [key, value] of Object.entries(sysctl)) {
    if (!key.startsWith("net.")) {
      kept[key] = value;
      continue;
    }
    if (!NET_KEY.test(key) || typeof value !== "string" || Buffer.byteLength(value) > MAX_VALUE_BYTES) {
      throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: linux.sysctl: ${JSON.stringify(key).slice(0, 200)}: not a net.* sysctl name with a string value`, { status: Code.INVALID_ARGUMENT });
    }
    sysctls.push([key, value]);
  }
  if (sysctls.length === 0) return { spec, sysctls };
  return { spec: { ...spec, linux: { ...linux, sysctl: kept } }, sysctls };
}

/** Writes each sysctl in the agent's (the guest's) network namespace. */
export async function setNetSysctls(sysctls: Array<[string, string]>, where: string): Promise<void> {
  for (const [key, value] of sysctls) {
    const path = `/proc/sys/${key.replace(/\./g, "/")}`;
    await writeFile(path, value).catch((error: unknown) => {
      throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: linux.sysctl ${key}: cannot be set in the guest (${path})`, { cause: error, status: Code.INVALID_ARGUMENT });
    });
  }
}
