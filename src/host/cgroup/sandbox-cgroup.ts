// After placement (host-cgroup.ts): more host processes into a sandbox's host cgroup (the
// pid a containerd task reports, src/host/standin/task-pid.ts, which tools look up in
// /proc/PID/cgroup), and the CPU limits a container's resources update asks for, written
// there too, as runc writes them on the container's cgroup.
//
// Only CPU limits carry over to a VM: a CFS quota/period, shares (v2: weight) and a cpuset
// bound the VM's vCPUs as they bound the container's processes. Memory and pids limits do not:
// the VM's memory is fixed when it starts (its size), its footprint on the host is guest RAM
// plus QEMU's own, and QEMU's threads are not the container's processes; a host memory limit
// at the container's value would have the host OOM killer take the whole VM. Those stay the
// guest's to enforce (crun in the guest). A sandbox with no host cgroup (its spec named no
// cgroupsPath) runs in moatd's own cgroup, which is not the sandbox's to change: nothing is
// written then.
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { cgroupHierarchies, type CgroupHierarchy } from "./hierarchies.js";
import { readHostCgroupRecord } from "./host-cgroup.js";

/** The part of an OCI LinuxResources this module writes on the host. */
export interface HostCpuLimits {
  quota?: number;
  period?: number;
  shares?: number;
  cpus?: string;
  mems?: string;
}

/** One cgroup file write: the file's name in the cgroup directory, and what goes in. */
export interface CgroupWrite {
  file: string;
  value: string;
}

const run = promisify(execFile);

/** Reads the CPU limits out of an OCI LinuxResources object (already parsed JSON; anything else ignored). */
export function hostCpuLimits(resources: Record<string, unknown>): HostCpuLimits {
  const cpu = resources.cpu;
  if (typeof cpu !== "object" || cpu === null) return {};
  const fields = cpu as Record<string, unknown>; // an object, checked just above
  const int = (value: unknown) => (typeof value === "number" && Number.isSafeInteger(value) ? value : undefined);
  const text = (value: unknown) => (typeof value === "string" && value !== "" ? value : undefined);
  const limits: HostCpuLimits = {};
  const [quota, period, shares, cpus, mems] = [int(fields.quota), int(fields.period), int(fields.shares), text(fields.cpus), text(fields.mems)];
  if (quota !== undefined) limits.quota = quota;
  if (period !== undefined && period > 0) limits.period = period;
  if (shares !== undefined && shares > 0) limits.shares = shares;
  if (cpus !== undefined) limits.cpus = cpus;
  if (mems !== undefined) limits.mems = mems;
  return limits;
}

/**
 * The writes for one cgroup directory holding `present` files: v1's cpu.cfs_* and cpu.shares,
 * or v2's cpu.max and cpu.weight, and the cpuset files of either. The period goes before the
 * quota (the kernel checks the quota against the period it has).
 */
export function cpuLimitWrites(limits: HostCpuLimits, present: (file: string) => boolean): CgroupWrite[] {
  const writes: CgroupWrite[] = [];
  if (present("cpu.cfs_quota_us")) {
    if (limits.period !== undefined) writes.push({ file: "cpu.cfs_period_us", value: String(limits.period) });
    if (limits.quota !== undefined) writes.push({ file: "cpu.cfs_quota_us", value: String(limits.quota > 0 ? limits.quota : -1) });
    if (limits.shares !== undefined) writes.push({ file: "cpu.shares", value: String(limits.shares) });
  } else if (present("cpu.max")) {
    // cpu.max takes "QUOTA [PERIOD]" ("max": none); a quota alone keeps the period. A period
    // alone is not written: it would need the quota there is, which this write would reset.
    if (limits.quota !== undefined) {
      const quota = limits.quota > 0 ? String(limits.quota) : "max";
      writes.push({ file: "cpu.max", value: limits.period === undefined ? quota : `${quota} ${limits.period}` });
    }
    // runc's mapping of shares (2..262144) onto weight (1..10000).
    if (limits.shares !== undefined) writes.push({ file: "cpu.weight", value: String(1 + Math.floor(((Math.min(Math.max(limits.shares, 2), 262144) - 2) * 9999) / 262142)) });
  }
  if (present("cpuset.cpus") && limits.cpus !== undefined) writes.push({ file: "cpuset.cpus", value: limits.cpus });
  if (present("cpuset.mems") && limits.mems !== undefined) writes.push({ file: "cpuset.mems", value: limits.mems });
  return writes;
}

/**
 * The directories of the sandbox's host cgroup, one per hierarchy: the leaves placement made
 * in cgroupfs, or on a systemd host the scope's, as /proc/`memberPid`/cgroup names them.
 * Empty when the sandbox has no host cgroup.
 */
async function sandboxCgroupDirs(stateDir: string, memberPid: number): Promise<{ record: { systemdUnit?: string }; dirs: string[] } | undefined> {
  const record = await readHostCgroupRecord(stateDir);
  if (!record) return undefined;
  if (!record.systemdUnit) return { record, dirs: record.leaves };
  const unit = record.systemdUnit;
  const membership = await readFile(`/proc/${memberPid}/cgroup`, "utf8");
  const dirs = cgroupDirsIn(membership, await cgroupHierarchies()).filter((dir) => dir.endsWith(`/${unit}`));
  return { record, dirs };
}

/** /proc/PID/cgroup's lines ("ID:CONTROLLERS:PATH") as directories under the hierarchies' mount points. */
export function cgroupDirsIn(membership: string, hierarchies: CgroupHierarchy[]): string[] {
  const dirs: string[] = [];
  for (const line of membership.split("\n")) {
    const match = /^\d+:([^:]*):(\/.*)$/.exec(line);
    if (!match) continue;
    const [, controllers = "", path = "/"] = match;
    const names = controllers.split(",").filter((name) => name !== "").sort().join(",");
    const hierarchy = hierarchies.find((candidate) => (candidate.version === 2 ? names === "" : [...candidate.controllers].sort().join(",") === names));
    if (hierarchy) dirs.push(join(hierarchy.mountPoint, path));
  }
  return dirs;
}

/** Puts `pid` into the host cgroup of the sandbox whose state directory is `stateDir` (none: nothing to do). */
export async function joinHostCgroup(stateDir: string, memberPid: number, pid: number, where: string): Promise<void> {
  const found = await sandboxCgroupDirs(stateDir, memberPid).catch((error: unknown) => {
    throw new MoatError("MOAT_HOST_CGROUP", `${where}: cannot find its host cgroup`, { cause: error, status: Code.INTERNAL });
  });
  if (!found) return;
  try {
    if (found.record.systemdUnit) {
      // A running scope takes more processes through systemd, which keeps its own books on them.
      await run("busctl", ["call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "AttachProcessesToUnit", "ssau", found.record.systemdUnit, "/", "1", String(pid)]);
      return;
    }
    for (const dir of found.dirs) await writeFile(join(dir, "cgroup.procs"), String(pid));
  } catch (error) {
    throw new MoatError("MOAT_HOST_CGROUP", `${where}: cannot move pid ${pid} into its host cgroup`, { cause: error, status: Code.INTERNAL });
  }
}

/**
 * Writes the CPU limits in `resources` (an OCI LinuxResources) on the sandbox's host cgroup.
 * Says (through `log`) when the host cgroup has no controller for a limit asked for.
 */
export async function limitHostCgroup(stateDir: string, memberPid: number, resources: Record<string, unknown>, where: string, log: (line: string) => void): Promise<void> {
  const limits = hostCpuLimits(resources);
  if (Object.keys(limits).length === 0) return;
  const found = await sandboxCgroupDirs(stateDir, memberPid).catch((error: unknown) => {
    throw new MoatError("MOAT_HOST_CGROUP", `${where}: cannot find its host cgroup`, { cause: error, status: Code.INTERNAL });
  });
  if (!found) return;
  let written = 0;
  for (const dir of found.dirs) {
    for (const { file, value } of cpuLimitWrites(limits, (name) => existsSync(join(dir, name)))) {
      const path = join(dir, file);
      try {
        await writeFile(path, value);
        written++;
      } catch (error) {
        throw new MoatError("MOAT_HOST_CGROUP", `${where}: cannot write ${JSON.stringify(value)} to ${path}`, { cause: error, status: Code.INVALID_ARGUMENT });
      }
    }
  }
  if (written === 0) log(`${where}: its host cgroup (${found.dirs.join(", ") || "none found"}) has no cpu or cpuset controller: the CPU limits hold in the guest only`);
}
