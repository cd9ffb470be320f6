// Issue 10, item 6: sandboxes created at once under one new parent cgroup. On a cgroup v1 host
// a new cpuset directory has no CPUs until someone fills it; a create that found the parent
// already made by another (still filling it) joined it empty and failed with ENOSPC. Real
// processes are placed in the host's real cgroup hierarchies, as a sandbox's QEMU would be:
// from one process (moatd's creates), and under a parent another process made but has not
// filled yet.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { hostCgroupTarget, placeInHostCgroup, releaseHostCgroup } from "../../src/host/cgroup/index.js";
import { cgroupHierarchies } from "../../src/host/cgroup/hierarchies.js";

const SANDBOXES = 8;
const stateRoot = mkdtempSync(join(tmpdir(), "moat-it-cgroup-"));
const sleepers: ChildProcess[] = [];
const stateDirs: string[] = [];

after(async () => {
  for (const sleeper of sleepers) sleeper.kill("SIGKILL");
  await Promise.all(stateDirs.map((stateDir) => releaseHostCgroup(stateDir).catch(() => undefined)));
  rmSync(stateRoot, { recursive: true, force: true });
});

interface Placement {
  pid: number;
  stateDir: string;
  cgroupsPath: string;
}

/** Places SANDBOXES sleeping processes under one new parent with `place`, checks each, then releases them all at once. */
async function placeAtOnce(name: string, place: (placement: Placement) => Promise<void>): Promise<void> {
  const parent = `/moat-test-${name}-${process.pid}`;
  const placements = Array.from({ length: SANDBOXES }, (_, index) => {
    const sleeper = spawn("sleep", ["300"], { stdio: "ignore" });
    sleepers.push(sleeper);
    const stateDir = join(stateRoot, `${name}-${index}`);
    mkdirSync(stateDir);
    stateDirs.push(stateDir);
    return { sleeper, pid: sleeper.pid!, stateDir, cgroupsPath: `${parent}/sandbox-${index}` }; // spawned just above: it has a pid
  });
  const results = await Promise.allSettled(placements.map((placement) => place(placement)));
  const failures = results.flatMap((result, index) => (result.status === "rejected" ? [`sandbox ${index}: ${String(result.reason)}`] : []));
  assert.deepEqual(failures, [], "every placement succeeds");
  for (const { pid, cgroupsPath } of placements) {
    for (const line of readFileSync(`/proc/${pid}/cgroup`, "utf8").trim().split("\n")) {
      assert.ok(line.endsWith(`:${cgroupsPath}`), `pid ${pid} is in ${cgroupsPath} in every hierarchy: ${line}`);
    }
  }
  for (const { sleeper } of placements) {
    sleeper.kill("SIGKILL");
    await once(sleeper, "exit");
  }
  await Promise.all(placements.map(({ stateDir }) => releaseHostCgroup(stateDir)));
  for (const { mountPoint } of await cgroupHierarchies()) assert.equal(existsSync(join(mountPoint, parent)), false, `${mountPoint}${parent} removed by the last sandbox out`);
}

test("sandboxes placed at once by one process under a new parent cgroup each get theirs; the last out removes the parent", async () => {
  await placeAtOnce("one-process", ({ pid, stateDir, cgroupsPath }) =>
    placeInHostCgroup(hostCgroupTarget(cgroupsPath, stateDir), [pid], { stateDir, stateRoot }, `sandbox ${stateDir}`, () => undefined),
  );
});

test("a parent cpuset another process has made but not filled yet is filled, not joined empty", async (t) => {
  // The moment item 6's failure hit: the parent exists (another create made it) with no CPUs yet.
  const cpuset = (await cgroupHierarchies()).find(({ version, controllers }) => version === 1 && controllers.includes("cpuset"));
  if (!cpuset) return t.skip("no cgroup v1 cpuset hierarchy on this host");
  const parent = join(cpuset.mountPoint, `moat-test-unfilled-${process.pid}`);
  mkdirSync(parent);
  try {
    assert.equal(readFileSync(join(parent, "cpuset.cpus"), "utf8").trim(), "", "a new v1 cpuset starts empty");
    const sleeper = spawn("sleep", ["300"], { stdio: "ignore" });
    sleepers.push(sleeper);
    const stateDir = join(stateRoot, "unfilled");
    mkdirSync(stateDir);
    stateDirs.push(stateDir);
    const cgroupsPath = `/moat-test-unfilled-${process.pid}/sandbox`;
    await placeInHostCgroup(hostCgroupTarget(cgroupsPath, stateDir), [sleeper.pid!], { stateDir, stateRoot }, `sandbox ${stateDir}`, () => undefined); // spawned above: a pid
    assert.match(readFileSync(`/proc/${sleeper.pid}/cgroup`, "utf8"), new RegExp(`:cpuset:${cgroupsPath}\n`));
    sleeper.kill("SIGKILL");
    await once(sleeper, "exit");
    await releaseHostCgroup(stateDir);
  } finally {
    rmdirSync(parent); // it was not moat's: the release leaves it
  }
});
