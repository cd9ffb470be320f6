// A container on the sandbox's network shares the guest's network namespace (the host drops the
// spec's namespace path: docs/networking.md), and crun sets `net.*` sysctls only in a namespace
// it creates ("the sysctl `net.ipv4.ping_group_range` requires a new network namespace", which
// podman's every spec has; Docker sets net.ipv4.ip_unprivileged_port_start on every bridge
// container). That namespace is the sandbox's alone, as the caller's namespace
// is the container's on a runc host, so the agent sets them there itself, before crun runs,
// and crun gets the spec without them.
import { writeFile } from "node:fs/promises";
import { MoatError } from "../../shared/errors.js";
import { isPlainObject } from "../../shared/json-object.js";
import { Code } from "../../shared/ttrpc/index.js";

/** A sysctl name as the kernel spells its /proc/sys path, dots for slashes (runc's rule). */
const SYSCTL_NAME = /^net(\.[A-Za-z0-9_-]+)+$/;
const MAX_VALUE_BYTES = 4096;

/**
 * The `net.*` sysctls of `spec` that the agent sets (the spec has no network namespace entry:
 * the container shares the guest's), and the spec crun gets without them. Anything else is
 * left to crun. A bad name or value is refused naming it.
 */
export function guestNetworkSysctls(spec: Record<string, unknown>, where: string): { spec: Record<string, unknown>; sysctls: Array<{ name: string; path: string; value: string }> } {
  const linux = spec.linux;
  if (!isPlainObject(linux) || !isPlainObject(linux.sysctl)) return { spec, sysctls: [] };
  const namespaces = Array.isArray(linux.namespaces) ? linux.namespaces : [];
  if (namespaces.some((entry: unknown) => isPlainObject(entry) && entry.type === "network")) return { spec, sysctls: [] };
  const kept: Record<string, unknown> = {};
  const sysctls: Array<{ name: string; path: string; value: string }> = [];
  for (const [name, value] of Object.entries(linux.sysctl)) {
    if (!name.startsWith("net.")) {
      kept[name] = value;
      continue;
    }
    if (!SYSCTL_NAME.test(name)) throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: linux.sysctl: ${JSON.stringify(name)} is not a sysctl name`, { status: Code.INVALID_ARGUMENT });
    if (typeof value !== "string" || Buffer.byteLength(value) > MAX_VALUE_BYTES) throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: linux.sysctl.${name}: must be a string of at most ${MAX_VALUE_BYTES} bytes`, { status: Code.INVALID_ARGUMENT });
    sysctls.push({ name, path: `/proc/sys/${name.replace(/\./g, "/")}`, value });
  }
  if (sysctls.length === 0) return { spec, sysctls };
  return { spec: { ...spec, linux: { ...linux, sysctl: kept } }, sysctls };
}

/** Sets them in the agent's (the guest's) network namespace. */
export async function setGuestNetworkSysctls(sysctls: Array<{ name: string; path: string; value: string }>, where: string): Promise<void> {
  for (const { name, path, value } of sysctls) {
    await writeFile(path, value).catch((error: unknown) => {
      throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: linux.sysctl.${name}: cannot set it in the guest`, { cause: error, status: Code.INVALID_ARGUMENT });
    });
  }
}
