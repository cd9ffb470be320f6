// The host's cgroup hierarchies, from /proc/self/mountinfo: cgroup v2 (one unified tree) or
// v1 (one tree per controller set, plus name=systemd), or both on a hybrid host.
import { ownMounts, type MountEntry } from "../../shared/mountinfo.js";

export interface CgroupHierarchy {
  mountPoint: string;
  version: 1 | 2;
  /** v1: the controllers (and name=…) of this tree; v2: empty. */
  controllers: string[];
}

/** v1's controllers; the other super options of a v1 mount (rw, xattr, release_agent=…) are not. */
const V1_CONTROLLERS = new Set(["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio", "blkio", "perf_event", "hugetlb", "pids", "rdma", "misc"]);

/** Every cgroup hierarchy mounted, each once (the first mount of a tree wins). */
export function cgroupHierarchiesIn(mounts: MountEntry[]): CgroupHierarchy[] {
  const hierarchies: CgroupHierarchy[] = [];
  const seen = new Set<string>();
  for (const { mountPoint, fsType, superOptions } of mounts) {
    if (fsType !== "cgroup" && fsType !== "cgroup2") continue;
    const controllers = fsType === "cgroup" ? superOptions.filter((option) => V1_CONTROLLERS.has(option) || option.startsWith("name=")) : [];
    const key = fsType === "cgroup2" ? "v2" : [...controllers].sort().join(",");
    if (seen.has(key)) continue;
    seen.add(key);
    hierarchies.push({ mountPoint, version: fsType === "cgroup2" ? 2 : 1, controllers });
  }
  return hierarchies;
}

export async function cgroupHierarchies(): Promise<CgroupHierarchy[]> {
  return cgroupHierarchiesIn(await ownMounts());
}
