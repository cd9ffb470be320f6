// The soak (issue 13 item 6), shared by bench/soak.ts (1,000 cycles) and
// issue-13-soak.test.ts (a few): create, start, exec and delete, `concurrency` containers at a
// time, through the OCI CLI (`moat create/start/exec/delete --bundle`, a subreaper playing
// conmon) or through containerd (`ctr run -d`, `ctr task exec`, `ctr task kill`, `ctr task
// rm`, `ctr container rm`). Every cycle's result is checked (the exec's output and status,
// the container's exit 137 after SIGKILL); moatd's RSS and descriptor count are sampled after
// every cycle; the census at the end must find nothing left.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { busyboxBundle } from "./bundle.js";
import { helperBinary } from "./c-helper.js";
import type { Containerd } from "./containerd.js";
import { runMoat } from "./moat-cli.js";
import { BUSYBOX_IMAGE } from "./oci-image.js";
import { createAsConmon } from "./oci-runtime.js";
import type { TestWorkspace } from "./state-root.js";

export interface SoakSample {
  cycle: number;
  pid: number;
  rssKiB: number;
  descriptors: number;
}

export interface SoakResult {
  path: "oci" | "containerd";
  cycles: number;
  concurrency: number;
  failures: string[];
  /** moatd with no container, before the first cycle and after the last. */
  start: SoakSample;
  end: SoakSample;
  maxRssKiB: number;
  maxDescriptors: number;
  samples: SoakSample[];
  wallMs: number;
}

/**
 * How much moatd may grow over a soak, stated here and checked by both the bench and the
 * test: its descriptors with no container must come back exactly to where they started, and
 * its RSS with no container may end at most this much above where it started (V8's heap
 * settles in steps; a leak of even 20 KiB a cycle crosses it within 1,000 cycles).
 */
export const RSS_GROWTH_BOUND_KIB = 20 * 1024;

/** moatd's pid, RSS and open descriptors now. */
export function sampleDaemon(workspace: TestWorkspace, cycle: number): SoakSample {
  const lines = workspace.daemonProcesses();
  assert.equal(lines.length, 1, `one moatd: ${lines.join("; ")}`);
  const pid = Number(lines[0]!.split(" ")[0]); // one, checked just above
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rss = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  assert.ok(rss, `VmRSS of moatd ${pid}`);
  const census = workspace.census();
  return { cycle, pid, rssKiB: Number(rss[1]), descriptors: census.daemon?.descriptors ?? -1 };
}

/** Waits until `moatd` with no container (its own sockets only) has settled: the census finds nothing left. */
async function settled(workspace: TestWorkspace, daemonFiles: string[]): Promise<void> {
  await workspace.assertNothingLeftWithin(60_000, daemonFiles);
}

export interface SoakOptions {
  workspace: TestWorkspace;
  cycles: number;
  concurrency: number;
  /** Through containerd (its harness, started, busybox imported) instead of the OCI CLI. */
  containerd?: Containerd;
  daemonFiles: string[];
  /** Told of every finished cycle (the bench prints progress). */
  progress?: (done: number) => void;
}

export async function soak(options: SoakOptions): Promise<SoakResult> {
  const { workspace, cycles, concurrency, containerd } = options;
  const path = containerd ? "containerd" : "oci";
  const failures: string[] = [];
  const samples: SoakSample[] = [];
  let done = 0;
  let cycleFn: (slot: number, cycle: number) => Promise<void>;
  if (containerd) {
    // moatd is started by the first shim: a first task brings it up before the baseline.
    const warm = await containerd.run(["--rm", BUSYBOX_IMAGE, `soak-warm`, "true"]);
    assert.equal(warm.code, 0, warm.stderr);
    cycleFn = (_slot, cycle) => containerdCycle(containerd, `soak-${cycle}`, cycle);
  } else {
    const subreaper = helperBinary(workspace.dir, "subreaper");
    const bundles = Array.from({ length: concurrency }, (_, slot) => busyboxBundle(join(workspace.dir, "soak", `slot-${slot}`), ["sleep", "1000"]));
    // One cycle alone first: it starts moatd and builds the VM template, which ten cold boots
    // at once under TCG would each wait for (and time out), and is not what a soak measures.
    // moatd started outside the subreaper (playing conmon), which would otherwise wait for it as its orphan.
    const list = await runMoat(["--root", workspace.stateRoot, "list"]);
    assert.equal(list.code, 0, list.stderr);
    await ociCycle(workspace, subreaper, bundles[0]!, "soak-warm", -1); // concurrency >= 1
    cycleFn = (slot, cycle) => ociCycle(workspace, subreaper, bundles[slot]!, `soak-${cycle}`, cycle); // slot < concurrency
  }
  await settled(workspace, options.daemonFiles);
  const start = sampleDaemon(workspace, 0);
  const started = performance.now();
  // Each of the `concurrency` workers keeps its own bundle (slot): a bundle serves one container at a time.
  let nextCycle = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, cycles) }, async (_, slot) => {
      while (nextCycle < cycles) {
        const cycle = nextCycle++;
        try {
          await cycleFn(slot, cycle);
        } catch (error) {
          failures.push(`cycle ${cycle}: ${error instanceof Error ? error.message : String(error)}`);
        }
        done++;
        try {
          samples.push(sampleDaemon(workspace, done));
        } catch (error) {
          // moatd gone (crashed, or another one): a failure of the soak, not of this worker, which goes on.
          failures.push(`after cycle ${cycle}: ${error instanceof Error ? error.message : String(error)}`);
        }
        options.progress?.(done);
      }
    }),
  );
  const wallMs = performance.now() - started;
  try {
    await settled(workspace, options.daemonFiles);
  } catch (error) {
    // Something outlived its cycle: a finding, reported with the result (and moatd's log lines about it).
    const what = error instanceof Error ? error.message.split("\n")[0] : String(error);
    const names = [...new Set([...String(error).matchAll(/-name moat-(\S+?),/g)].map((match) => match[1]))];
    const lines = workspace.daemonLog().split("\n").filter((line) => names.some((name) => line.includes(`${name}:`) || line.includes(` ${name} `)));
    failures.push(`after the last cycle: ${what}: ${names.join(", ")}\n${lines.slice(-40).join("\n")}`);
  }
  const end = sampleDaemon(workspace, cycles);
  return {
    path,
    cycles,
    concurrency,
    failures,
    start,
    end,
    maxRssKiB: Math.max(start.rssKiB, ...samples.map((sample) => sample.rssKiB)),
    maxDescriptors: Math.max(start.descriptors, ...samples.map((sample) => sample.descriptors)),
    samples,
    wallMs,
  };
}

/** Fails, saying which bound, if moatd grew over the soak or a cycle failed. */
export function assertSoakFlat(result: SoakResult): void {
  assert.deepEqual(result.failures, [], "every cycle's result is right");
  assert.equal(result.end.pid, result.start.pid, "the same moatd served every cycle");
  assert.equal(result.end.descriptors, result.start.descriptors, `moatd's descriptors with no container: ${result.start.descriptors} before, ${result.end.descriptors} after`);
  assert.ok(result.end.rssKiB - result.start.rssKiB <= RSS_GROWTH_BOUND_KIB, `moatd's RSS grew from ${result.start.rssKiB} KiB to ${result.end.rssKiB} KiB, more than ${RSS_GROWTH_BOUND_KIB} KiB`);
}

async function ociCycle(workspace: TestWorkspace, subreaper: string, bundle: string, id: string, cycle: number): Promise<void> {
  const moat = (args: string[]) => runMoat(["--root", workspace.stateRoot, ...args]);
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, id, "");
  const standIn = container.standIn;
  standIn.catch(() => undefined); // awaited below once the create succeeded; a failed create has none
  const created = await container.created;
  if (created !== 0) throw new Error(`create: exit ${created}: ${container.stderr().trim()}`);
  // A step that fails is the cycle's failure, and the container is still deleted: what the
  // census then finds is what a delete left, not a container nobody deleted (issue 13: an exec
  // that failed once made its cycle's QEMU look like a leak of delete).
  let failed: Error | undefined;
  try {
    const start = await moat(["start", id]);
    if (start.code !== 0) throw new Error(`start: exit ${start.code}: ${start.stderr.trim()}`);
    const exec = await moat(["exec", id, "sh", "-c", `echo cycle ${cycle}; exit 7`]);
    if (exec.code !== 7 || exec.stdout !== `cycle ${cycle}\n`) throw new Error(`exec: exit ${exec.code}, stdout ${JSON.stringify(exec.stdout)}: ${exec.stderr.trim()}`);
  } catch (error) {
    failed = error instanceof Error ? error : new Error(String(error));
  }
  const deleted = await moat(["delete", "--force", id]);
  if (deleted.code !== 0) throw new Error(`${failed ? `${failed.message}; then ` : ""}delete: exit ${deleted.code}: ${deleted.stderr.trim()}`);
  if (failed) throw failed;
  const { exitStatus } = await standIn;
  if (exitStatus !== 137) throw new Error(`stand-in exit ${exitStatus}, not 137`);
}

async function containerdCycle(containerd: Containerd, id: string, cycle: number): Promise<void> {
  const run = await containerd.run(["-d", BUSYBOX_IMAGE, id, "sleep", "1000"]);
  if (run.code !== 0) throw new Error(`ctr run -d: exit ${run.code}: ${run.stderr.trim()}`);
  const exec = await containerd.ctr(["task", "exec", "--exec-id", `e${cycle}`, "--fifo-dir", containerd.fifoDir, id, "sh", "-c", `echo cycle ${cycle}; exit 7`]);
  if (exec.code !== 7 || exec.stdout !== `cycle ${cycle}\n`) throw new Error(`ctr task exec: exit ${exec.code}, stdout ${JSON.stringify(exec.stdout)}: ${exec.stderr.trim()}`);
  const kill = await containerd.ctr(["task", "kill", "-s", "SIGKILL", id]);
  if (kill.code !== 0) throw new Error(`ctr task kill: exit ${kill.code}: ${kill.stderr.trim()}`);
  // The kill is asynchronous: the task is listed STOPPED once its exit reached containerd.
  while (!new RegExp(`^${id}\\s+\\d+\\s+STOPPED`, "m").test((await containerd.ctr(["task", "ls"])).stdout)) await sleep(100);
  // Debian's `ctr task rm` (1.6) warns with the task's exit status when it is not 0, and exits 0.
  const removed = await containerd.ctr(["task", "rm", id]);
  if (removed.code !== 0 || !/exit code 137/.test(removed.stderr)) throw new Error(`ctr task rm: exit ${removed.code}, not the task's 137: ${removed.stderr.trim()}`);
  const container = await containerd.ctr(["container", "rm", id]);
  if (container.code !== 0) throw new Error(`ctr container rm: exit ${container.code}: ${container.stderr.trim()}`);
}
