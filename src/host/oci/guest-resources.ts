// An OCI LinuxResources object (a spec's linux.resources, or an update's) as the guest's crun
// on cgroup v2 takes it, with runc's reading of it. Docker fills every field it has, with 0
// for "not set" (moby's toContainerdResources: `docker update --cpus 1` also sends a memory
// limit of 0). runc reads 0 (and "") as "leave it"; crun writes it: memory.max = 0, which
// OOM-kills the container, and with any blockIO at all it opens io.max, which the guest
// kernel has not (no block device throttling: a container's files are on shares, not guest
// disks). Kernel memory is cgroup v1 only (deprecated by the runtime spec; runc ignores it on
// v2, crun refuses it). So unset values are dropped, with sections left empty by that; a
// value that asks for something is left for crun to apply or refuse by name.

type Json = Record<string, unknown>;

/** The sections and fields in which 0 (or "", or an empty list) means "not set", as runc reads them. */
const UNSET_MEANS_NOTHING: Record<string, string[]> = {
  memory: ["limit", "reservation", "swap", "kernel", "kernelTCP"],
  cpu: ["shares", "quota", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems"],
  pids: ["limit"],
  blockIO: ["weight", "leafWeight", "weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice", "throttleWriteIOPSDevice"],
};

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isUnset(value: unknown): boolean {
  return value === 0 || value === "" || value === null || (Array.isArray(value) && value.length === 0);
}

export function guestResources(resources: Json): Json {
  const result: Json = { ...resources };
  for (const [name, fields] of Object.entries(UNSET_MEANS_NOTHING)) {
    const section = resources[name];
    if (!isObject(section)) continue;
    const kept = Object.fromEntries(Object.entries(section).filter(([key, value]) => !(fields.includes(key) && isUnset(value))));
    // An empty blockIO still makes crun open io.max; other empty sections change nothing.
    if (Object.keys(kept).length === 0) delete result[name];
    else result[name] = kept;
  }
  return result;
}

/** A spec's `linux` with its resources made guestResources; anything else as it is. */
export function guestLinux(linux: unknown): unknown {
  if (!isObject(linux) || !isObject(linux.resources)) return linux;
  return { ...linux, resources: guestResources(linux.resources) };
}
