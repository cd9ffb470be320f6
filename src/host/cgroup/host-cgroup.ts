// A sandbox's host processes (QEMU, its share servers) in the host cgroup its spec names, as
// runc puts a container's processes there: the kubelet's pod cgroup then accounts for and
// limits the VM, and podman finds it where it looks. The container's own cgroup, with the
// spec's resources, is made by crun inside the guest.
//
// On a host run by systemd, systemd owns the tree: a systemd-form path becomes a transient
// scope unit, asked of systemd over D-Bus (busctl), and systemd removes it once its
// processes are gone. Anywhere else moat writes cgroupfs itself: it makes the directories in
// every hierarchy, moves the pids into each, and on release removes the leaf and the
// ancestors moat made. An ancestor one sandbox made may hold another's cgroup by the time
// the first is released, so each record lists every moat-made ancestor it sits in: the last
// sandbox out removes them.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { promisify } from "node:util";
import { retryWhile } from "../../shared/deadline.js";
import { isGone, MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import type { HostCgroupTarget } from "./cgroups-path.js";
import { cgroupHierarchies, type CgroupHierarchy } from "./hierarchies.js";

/** What a sandbox was given, kept in its state directory for whoever releases it. */
export interface HostCgroupRecord {
  /** The transient scope systemd made, on a systemd host. */
  systemdUnit?: string;
  /** cgroupfs: the directories the sandbox's pids were moved into, one per hierarchy. */
  leaves: string[];
  /** cgroupfs: ancestors that moat made (for this or another sandbox), parents first. */
  madeByMoat: string[];
}

const RECORD_FILE = "host-cgroup.json";

/** How long a leaf may stay busy after its processes were killed (their threads linger). */
const RELEASE_WAIT_MS = 5_000;
const RELEASE_POLL_MS = 50;

let fallbackNoted = false;

/**
 * Moves `pids` into the cgroup `target` names. The record goes to `stateDir` before anything
 * is made, so that releaseHostCgroup undoes a placement that failed half-way too (once the
 * caller has killed the pids). `stateRoot` holds the other sandboxes' records.
 */
export function placeInHostCgroup(target: HostCgroupTarget, pids: number[], dirs: { stateDir: string; stateRoot: string }, where: string, log: (line: string) => void): Promise<void> {
  return oneAtATime(() => place(target, pids, dirs, where, log));
}

async function place(target: HostCgroupTarget, pids: number[], dirs: { stateDir: string; stateRoot: string }, where: string, log: (line: string) => void): Promise<void> {
  if (target.systemd && systemdRunsHost()) {
    await startScope(target.systemd, pids, where);
    await saveRecord(dirs.stateDir, { systemdUnit: target.systemd.unit, leaves: [], madeByMoat: [] }, where);
    return;
  }
  if (target.systemd && !fallbackNoted) {
    fallbackNoted = true;
    log(`${where}: systemd cgroup path asked for, but this host is not run by systemd: moat makes the same cgroups (${target.path}) in cgroupfs`);
  }
  const hierarchies = await cgroupHierarchies();
  if (hierarchies.length === 0) throw new MoatError("MOAT_HOST_CGROUP", `${where}: no cgroup hierarchy is mounted on this host`, { status: Code.FAILED_PRECONDITION });
  const earlierMade = await madeByOtherSandboxes(dirs.stateRoot);
  const record: HostCgroupRecord = { leaves: [], madeByMoat: [] };
  for (const { mountPoint } of hierarchies) {
    for (const directory of ancestorsOf(mountPoint, target.path)) {
      if (!existsSync(directory) || earlierMade.has(directory)) record.madeByMoat.push(directory);
    }
    record.leaves.push(join(mountPoint, target.path));
  }
  await saveRecord(dirs.stateDir, record, where);
  try {
    for (const hierarchy of hierarchies) {
      for (const directory of [...ancestorsOf(hierarchy.mountPoint, target.path), join(hierarchy.mountPoint, target.path)]) await makeCgroup(directory, hierarchy);
      // cgroup.procs takes one pid a write, and moves all of that process's threads.
      for (const pid of pids) await writeFile(join(hierarchy.mountPoint, target.path, "cgroup.procs"), String(pid));
    }
  } catch (error) {
    throw new MoatError("MOAT_HOST_CGROUP", `${where}: cannot place its processes in cgroup ${target.path}`, { cause: error, status: Code.INTERNAL, hint: "is /sys/fs/cgroup writable here? (a rootless or restricted container host cannot give moat cgroups)" });
  }
}

async function saveRecord(stateDir: string, record: HostCgroupRecord, where: string): Promise<void> {
  try {
    await writeFile(join(stateDir, RECORD_FILE), JSON.stringify(record));
  } catch (error) {
    throw new MoatError("MOAT_STATE_DIR", `${where}: cannot record its host cgroup in ${stateDir}`, { cause: error, status: Code.INTERNAL });
  }
}

/** Undoes placeInHostCgroup for the sandbox whose state directory is `stateDir` (none recorded: nothing to do). */
export async function releaseHostCgroup(stateDir: string): Promise<void> {
  const record = await readRecord(join(stateDir, RECORD_FILE));
  if (record) await oneAtATime(() => releaseRecord(record));
}

/**
 * Placements and releases in this process, one after another: each reads which ancestors
 * exist and which other sandboxes' records claim them, then makes or removes directories, and
 * two interleaved would each decide on what the other is changing (a parent made by one and
 * left out of the other's record outlives both; a parent removed by one under the other's
 * new leaf fails it). Between processes, makeCgroup's filling of a cpuset found already made
 * is what keeps placements right.
 */
let queue: Promise<unknown> = Promise.resolve();

function oneAtATime<T>(step: () => Promise<T>): Promise<T> {
  const result = queue.then(step);
  queue = result.catch(() => undefined);
  return result;
}

/** The host cgroup placeInHostCgroup recorded for the sandbox whose state directory is `stateDir`; undefined when it has none. */
export function readHostCgroupRecord(stateDir: string): Promise<HostCgroupRecord | undefined> {
  return readRecord(join(stateDir, RECORD_FILE));
}

/** sd_booted(): systemd runs the host when /run/systemd/system exists. */
function systemdRunsHost(): boolean {
  return existsSync("/run/systemd/system");
}

const run = promisify(execFile);

async function startScope(systemd: { slice: string; unit: string }, pids: number[], where: string): Promise<void> {
  // Manager.StartTransientUnit(name, mode, properties a(sv), aux a(sa(sv))), as runc asks it.
  const properties = ["Slice", "s", systemd.slice, "Delegate", "b", "true", "PIDs", "au", String(pids.length), ...pids.map(String)];
  try {
    await run("busctl", ["call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "StartTransientUnit", "ssa(sv)a(sa(sv))", systemd.unit, "replace", "3", ...properties, "0"]);
  } catch (error) {
    throw new MoatError("MOAT_HOST_CGROUP", `${where}: systemd did not start scope ${systemd.unit} in ${systemd.slice}`, { cause: error, status: Code.INTERNAL, hint: `systemctl status ${systemd.unit}` });
  }
}

/** Each directory between the hierarchy's root and the cgroup, both excluded. */
function ancestorsOf(mountPoint: string, path: string): string[] {
  const parts = path.split("/").filter((part) => part.length > 0);
  return parts.slice(0, -1).map((_, index) => join(mountPoint, ...parts.slice(0, index + 1)));
}

/**
 * Makes one cgroup directory unless it is there. A new v1 cpuset starts with no CPUs and
 * takes its parent's. That is done for one found already made too: its maker (another
 * process) may not have filled it yet, and joining an empty cpuset fails with ENOSPC
 * (issue 10, item 6). Writing the parent's values twice is harmless.
 */
async function makeCgroup(directory: string, hierarchy: CgroupHierarchy): Promise<void> {
  await mkdir(directory).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "EEXIST") throw error;
  });
  if (hierarchy.version === 1 && hierarchy.controllers.includes("cpuset")) {
    for (const file of ["cpuset.cpus", "cpuset.mems"]) {
      if ((await readFile(join(directory, file), "utf8")).trim() === "") await writeFile(join(directory, file), await readFile(join(directory, "..", file), "utf8"));
    }
  }
}

/** The ancestors other sandboxes' records say moat made. */
async function madeByOtherSandboxes(stateRoot: string): Promise<Set<string>> {
  const made = new Set<string>();
  const entries = await readdir(stateRoot, { withFileTypes: true }).catch(() => []);
  for (const entry of entries.filter((candidate) => candidate.isDirectory())) {
    const record = await readRecord(join(stateRoot, entry.name, RECORD_FILE));
    for (const directory of record?.madeByMoat ?? []) made.add(directory);
  }
  return made;
}

/** A record as this module wrote it; anything else is not ours to act on. */
async function readRecord(file: string): Promise<HostCgroupRecord | undefined> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, "utf8"));
  } catch {
    return undefined;
  }
  const record = parsed as Partial<HostCgroupRecord>;
  const strings = (value: unknown) => Array.isArray(value) && value.every((item) => typeof item === "string" && isAbsolute(item));
  if (!strings(record.leaves) || !strings(record.madeByMoat)) return undefined;
  return { leaves: record.leaves as string[], madeByMoat: record.madeByMoat as string[], ...(typeof record.systemdUnit === "string" ? { systemdUnit: record.systemdUnit } : {}) }; // both checked just above
}

async function releaseRecord(record: HostCgroupRecord): Promise<void> {
  if (record.systemdUnit) {
    // An empty transient scope is gone already; stopping one that is not is no error here.
    await run("busctl", ["call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "StopUnit", "ss", record.systemdUnit, "replace"]).catch(() => undefined);
  }
  for (const leaf of record.leaves) await removeLeaf(leaf);
  // Deepest first; one still in use by another sandbox (or anyone) stays, and is removed by the last one out.
  for (const directory of [...record.madeByMoat].reverse()) {
    await rmdir(directory).catch((error: NodeJS.ErrnoException) => {
      if (!isGone(error) && error.code !== "ENOTEMPTY" && error.code !== "EBUSY") throw error;
    });
  }
}

/**
 * A task's pid holder (moat-task-pid, standin/task-pid.ts) whose moatd died between starting it
 * and recording its exec (moatd SIGKILLed within an exec start) has no owner left to end it:
 * it would keep the sandbox's leaf busy for ever (issue 13 item 5). Only holders are ended
 * here; anything else in the leaf is not moat's to kill.
 */
async function endOrphanedHolders(leaf: string): Promise<void> {
  const procs = await readFile(join(leaf, "cgroup.procs"), "utf8").catch(() => "");
  for (const pid of procs.split("\n").filter((line) => /^\d+$/.test(line)).map(Number)) {
    const comm = await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "");
    if (comm.trim() !== "moat-task-pid") continue;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
}

/** A leaf's processes were just killed: the directory is busy until their last thread is gone. */
async function removeLeaf(leaf: string): Promise<void> {
  await endOrphanedHolders(leaf);
  await retryWhile(() => rmdir(leaf), (error) => (error as NodeJS.ErrnoException).code === "EBUSY", RELEASE_WAIT_MS, RELEASE_POLL_MS).catch((error: unknown) => {
    if (!isGone(error)) throw new MoatError("MOAT_HOST_CGROUP", `cannot remove cgroup ${leaf}`, { cause: error, status: Code.INTERNAL });
  });
}
