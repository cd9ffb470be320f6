// bench/pods: Kubernetes pods through a real containerd's CRI (Debian's 1.6, the test suite's
// CRI node: harness/cri.ts), as kubelet drives it. moat (handler `moat`, moat's configuration
// as shipped: VMs restored from a template) beside containerd's runc shim with runc (handler
// `runc`), interleaved in the same run. gVisor runs no pod on this machine (GVISOR_NOTE).
//
// 1. Pod start: RunPodSandbox, then CreateContainer and StartContainer of each container, of
//    the seeds' pod (busybox `sh -c "echo Hello from Kata && sleep 3600"`) and of a pod of two
//    such containers; the time until every container is RUNNING (ContainerStatus) and until
//    every container's CRI log holds its line. Each pod is removed before the next.
// 2. Pod density: --pods idle seeds' pods at once; the host PSS of everything the node runs
//    for them (every process whose command line names the node's directory, and their
//    descendants, containerd itself excepted: for moat each pod's QEMU, shim and relays, and
//    moatd; for runc each pod's shim with its pause and container processes) divided by the
//    pods, by process. moat's figure is the RuntimeClass's
//    overhead.podFixed.memory (deploy/runtimeclass.yaml, rounded up).
//
//   node dist/bench/pods.js [--runs N] [--pods K] [--dial-timeout SECONDS]
//
// Failed runs are counted, not hidden; every pod is removed and the node's census checked at
// the end, also on Ctrl-C.
import { existsSync, readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { ContainerState, type PodSandboxConfig } from "../src/shared/protocol/gen/k8s/cri/v1/api_pb.js";
import { CriNode } from "../test/integration/harness/cri.js";
import { TestWorkspace } from "../test/integration/harness/state-root.js";
import { criLogMessages, perPodBreakdown, podFixedMemory, processLabel } from "./support/pod-figures.js";
import { availableMiB, pidsMatching, pssMiB, withDescendants } from "./support/pss.js";
import { printTable, writeResult, type Row } from "./support/report.js";
import { summarize } from "./support/stats.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "10" }, pods: { type: "string", default: "10" }, "dial-timeout": { type: "string" } } });
const runs = Number(values.runs);
const podCount = Number(values.pods);
const dialTimeout = values["dial-timeout"] === undefined ? undefined : Number(values["dial-timeout"]);
if (dialTimeout !== undefined && !(Number.isInteger(dialTimeout) && dialTimeout >= 1 && dialTimeout <= 600)) throw new Error(`bench/pods: --dial-timeout takes seconds, 1 to 600 (got ${values["dial-timeout"]})`);
if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(podCount) || podCount < 1) throw new Error(`bench/pods: --runs and --pods take a whole number ≥ 1 (got ${values.runs}, ${values.pods})`);
const SETTLE_MS = 5000;
/** How long one pod may take to have every container RUNNING and logged before the run counts as failed. */
const POD_DEADLINE_MS = 240_000;
/** What the machine must keep available after the density phase's pods (a moat pod is assumed to cost at most this). */
const RESERVE_MIB = 4096;
const ASSUMED_POD_MIB = 300;

const handlers = {
  moat: `moat (handler moat: moat's shim, VM from a template, configuration as shipped${dialTimeout === undefined ? "" : ` but the agent's dial_timeout = ${dialTimeout} s`})`,
  runc: "runc (handler runc: io.containerd.runc.v2)",
};
type Handler = keyof typeof handlers;
const order: Handler[] = ["moat", "runc"];
/** The seeds' pod's one container, and a pod of two containers of the same shape. */
const shapes = {
  one: { title: "the seeds' pod (1 container)", containers: [{ name: "sandboxed-app", line: "Hello from Kata" }] },
  two: {
    title: "a pod of 2 containers",
    containers: [
      { name: "app", line: "Hello from app" },
      { name: "sidecar", line: "Hello from sidecar" },
    ],
  },
};
type Shape = keyof typeof shapes;
const shapeNames: Shape[] = ["one", "two"];

const workspace = new TestWorkspace();
const node = new CriNode(workspace);
/**
 * Why gVisor has no row, as the bench prints it: tried on this machine (runsc 2022-12 as
 * containerd's runc shim's BinaryName, as bench/ctr-run.ts runs it for single tasks).
 */
const GVISOR_NOTE = `${existsOnPath("containerd-shim-runsc-v1") ? "containerd-shim-runsc-v1 is installed but not measured here" : "Debian's runsc ships no containerd-shim-runsc-v1"}; runsc as the runc shim's binary runs no pod on this machine: with its netstack every RunPodSandbox fails ("cannot run with network enabled in root network namespace"), with --network=none the pod's container never starts (StartContainer runs into containerd's deadline) and the pod cannot be removed`;
/** The signal that interrupted the bench: the loops stop at their next pod. */
let interruptedBy: NodeJS.Signals | undefined;

/** Polls `probe` until it holds; false if `deadline` (performance.now()) passed first. */
async function until(probe: () => Promise<boolean> | boolean, deadline: number, intervalMs: number): Promise<boolean> {
  for (;;) {
    if (await probe()) return true;
    if (performance.now() > deadline) return false;
    await sleep(intervalMs);
  }
}

function logHolds(path: string, line: string): boolean {
  try {
    return criLogMessages(readFileSync(path, "utf8")).includes(line);
  } catch {
    return false; // not created yet
  }
}

/** Starts a pod of `shape` with `handler`: its id, config, and the time until all RUNNING and until all logged (ms). */
async function startPod(handler: Handler, shape: Shape, name: string): Promise<{ pod: { id: string; config: PodSandboxConfig }; runningMs: number; loggedMs: number }> {
  if (interruptedBy) throw new Error(`stopped by ${interruptedBy}`);
  const started = performance.now();
  const deadline = started + POD_DEADLINE_MS;
  const pod = await node.runPod(handler, { name });
  try {
    const ids: string[] = [];
    for (const container of shapes[shape].containers) ids.push(await node.startContainer(pod, { name: container.name, command: ["sh", "-c", `echo ${container.line} && sleep 3600`] }));
    const running = await until(
      async () => (await Promise.all(ids.map((containerId) => node.cri.runtime.containerStatus({ containerId })))).every(({ status }) => status?.state === ContainerState.CONTAINER_RUNNING),
      deadline,
      10,
    );
    const runningMs = performance.now() - started;
    if (!running) throw new Error(`${name}: not every container RUNNING after ${POD_DEADLINE_MS} ms`);
    const logged = await until(() => shapes[shape].containers.every((container) => logHolds(join(pod.config.logDirectory, `${container.name}.log`), container.line)), deadline, 10);
    const loggedMs = performance.now() - started;
    if (!logged) throw new Error(`${name}: a container's log lacks its line after ${POD_DEADLINE_MS} ms`);
    return { pod, runningMs, loggedMs };
  } catch (error) {
    await node.removePod(pod.id).catch(() => undefined); // the failure is what is reported
    throw error;
  }
}

/** Pids of everything the node runs beyond containerd (see the header). */
function nodeProcesses(): number[] {
  const containerd = new Set(pidsMatching(`containerd --config ${node.containerd.configPath}`));
  return withDescendants(pidsMatching(workspace.dir).filter((pid) => !containerd.has(pid))).filter((pid) => !containerd.has(pid));
}

function argv(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((arg, index, all) => arg.length > 0 || index < all.length - 1);
  } catch {
    return []; // gone since it was listed
  }
}

interface PodStartSamples {
  runningMs: number[];
  loggedMs: number[];
  failures: string[];
}

async function podStarts(): Promise<Record<string, PodStartSamples>> {
  const samples: Record<string, PodStartSamples> = {};
  const key = (handler: Handler, shape: Shape) => `${handler}/${shape}`;
  for (const handler of order) for (const shape of shapeNames) samples[key(handler, shape)] = { runningMs: [], loggedMs: [], failures: [] };
  // A warm-up pod of each handler, not counted: moat builds its template and starts moatd on its first.
  for (const handler of order) {
    try {
      const { pod } = await startPod(handler, "one", `warm-up-${handler}`);
      await node.removePod(pod.id);
    } catch (error) {
      process.stdout.write(`  warm-up ${handler}: ${String(error)}\n`);
    }
  }
  for (let run = 0; run < runs; run++) {
    const line: string[] = [];
    for (const shape of shapeNames) {
      for (const handler of order) {
        const entry = samples[key(handler, shape)]!; // made above for every pair
        try {
          const { pod, runningMs, loggedMs } = await startPod(handler, shape, `${handler}-${shape}-${run}`);
          await node.removePod(pod.id);
          entry.runningMs.push(runningMs);
          entry.loggedMs.push(loggedMs);
          line.push(`${handler}/${shape} ${loggedMs.toFixed(0)}`);
        } catch (error) {
          if (interruptedBy) throw error;
          entry.failures.push(String(error));
          line.push(`${handler}/${shape} FAILED`);
          process.stdout.write(`  run ${run + 1}, ${handler}, ${shape}: ${String(error)}\n`);
        }
      }
    }
    process.stdout.write(`  run ${run + 1}/${runs} (ms to logged): ${line.join(", ")}\n`);
  }
  return samples;
}

interface Density {
  pods: number;
  started: number;
  mibPerPod: number;
  processes: number;
  breakdown: ReturnType<typeof perPodBreakdown>;
  failures: string[];
}

/** `podCount` idle seeds' pods of `handler` at once; the node's PSS for them, per pod. */
async function density(handler: Handler): Promise<Density> {
  const before = new Set(nodeProcesses());
  const pods: string[] = [];
  const failures: string[] = [];
  try {
    for (let index = 0; index < podCount; index++) {
      try {
        pods.push((await startPod(handler, "one", `idle-${handler}-${index}`)).pod.id);
      } catch (error) {
        if (interruptedBy) throw error;
        failures.push(String(error));
      }
    }
    await sleep(SETTLE_MS);
    // What this phase started, and for moat also moatd, which serves every pod and was started
    // by pod start's warm-up (it idles through the other runtimes' phases).
    const moatd = new Set(handler === "moat" ? pidsMatching(`moatd.mjs --root ${workspace.stateRoot}`) : []);
    // A moatd on another state root would serve these pods unseen, and the figure would miss it and every QEMU.
    if (handler === "moat" && pods.length > 0 && moatd.size === 0) throw new Error(`bench/pods: no moatd on ${workspace.stateRoot}: moat's pods are served from another state root`);
    const pids = nodeProcesses().filter((pid) => !before.has(pid) || moatd.has(pid));
    const measured = pids.map((pid) => ({ label: processLabel(argv(pid)), pssMiB: pssMiB(pid) }));
    const total = measured.reduce((sum, sample) => sum + sample.pssMiB, 0);
    const started = pods.length;
    if (started === 0) return { pods: podCount, started, mibPerPod: Number.NaN, processes: pids.length, breakdown: [], failures };
    return { pods: podCount, started, mibPerPod: total / started, processes: pids.length, breakdown: perPodBreakdown(measured, started), failures };
  } finally {
    for (const id of pods) await node.removePod(id).catch((error: unknown) => process.stdout.write(`  removing ${id}: ${String(error)}\n`));
  }
}

let cleaning: Promise<string[]> | undefined;
/** Removes every pod, checks the census, stops containerd and moatd, removes the workspace; returns what was left. */
function cleanup(): Promise<string[]> {
  cleaning ??= (async () => {
    let left: string[] = [];
    try {
      await node.assertNothingLeft();
    } catch (error) {
      left = await node.leftovers().catch(() => []);
      if (left.length === 0) left = [String(error).split("\n")[0] ?? "?"]; // the census itself failed
    }
    try {
      await node.stop();
    } finally {
      await workspace.stopDaemon();
      // What a failed pod left running (seen with gVisor: a sandbox that never started and that
      // its shim could not delete) is ended here: listed above, and gone after the bench.
      for (const pid of withDescendants(pidsMatching(workspace.dir))) killQuietly(pid);
      workspace.remove();
    }
    return left;
  })();
  return cleaning;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    interruptedBy = signal;
    process.stdout.write(`\nbench/pods: ${signal}: removing every pod\n`);
    void cleanup().then(
      (left) => {
        if (left.length > 0) process.stdout.write(`left behind:\n${left.join("\n")}\n`);
        process.exit(130);
      },
      () => process.exit(130),
    );
  });
}

try {
  const loadAtStart = loadavg();
  process.stdout.write(`bench/pods: ${runs} runs of each pod start, ${podCount} idle pods of each runtime; load average ${loadAtStart.map((value) => value.toFixed(2)).join(" ")}\n`);
  process.stdout.write(`  gVisor: not measured: ${GVISOR_NOTE}\n`);
  await node.start();
  // moat's configuration as shipped (the CRI node sets small VMs for the tests; no moatd runs
  // yet), but for --dial-timeout: on a machine loaded by others a guest's agent can take longer
  // than the shipped 30 s to answer under TCG, and a start that gives up measures nothing.
  node.containerd.useMoatConfig(dialTimeout === undefined ? "" : `[agent.moat]\ndial_timeout = ${dialTimeout}\n`);
  const starts = await podStarts();
  const loadAfterStarts = loadavg();
  if (availableMiB() - podCount * ASSUMED_POD_MIB < RESERVE_MIB) throw new Error(`bench/pods: ${podCount} pods at up to ${ASSUMED_POD_MIB} MiB each would leave less than ${RESERVE_MIB} MiB available`);
  const densities: Partial<Record<Handler, Density>> = {};
  for (const handler of order) {
    densities[handler] = await density(handler);
    const figure = densities[handler]!; // just set
    process.stdout.write(`  ${handler}: ${figure.started}/${podCount} idle pods, ${figure.mibPerPod.toFixed(1)} MiB each (${figure.processes} processes)\n`);
    for (const part of figure.breakdown) process.stdout.write(`    ${part.label}: ${part.mibPerPod.toFixed(1)} MiB per pod (${part.processes} processes)\n`);
  }
  const loadAtEnd = loadavg();
  const tables: Record<string, ReturnType<typeof printTable>> = {};
  for (const shape of shapeNames) {
    for (const [metric, field, what] of [
      ["running", "runningMs", "every container RUNNING"],
      ["logged", "loggedMs", "every container's log holds its line"],
    ] as const) {
      const rows: Row[] = order.filter((handler) => starts[`${handler}/${shape}`]![field].length > 0).map((handler) => ({ name: handlers[handler], summary: summarize(starts[`${handler}/${shape}`]![field]) })); // every pair was made by podStarts
      if (rows.length > 0) tables[`${shape}/${metric}`] = printTable(`Pod start, ${shapes[shape].title}: RunPodSandbox to ${what} (ms)`, rows, handlers.moat);
    }
  }
  const densityRows: Row[] = order.filter((handler) => Number.isFinite(densities[handler]?.mibPerPod)).map((handler) => ({ name: handlers[handler], summary: summarize([densities[handler]!.mibPerPod]) })); // filtered to those measured
  tables.density = printTable(`Host memory (PSS, MiB) per idle seeds' pod, ${podCount} running at once`, densityRows, handlers.moat, "MiB");
  const moatPerPod = densities.moat?.mibPerPod ?? Number.NaN;
  const overhead = Number.isFinite(moatPerPod) ? podFixedMemory(moatPerPod) : "not measured";
  process.stdout.write(`\nRuntimeClass overhead.podFixed.memory from this run: ${overhead} (moat, ${moatPerPod.toFixed(1)} MiB per idle pod)\n`);
  const left = await cleanup();
  if (left.length > 0) process.stdout.write(`\nleft behind:\n${left.join("\n")}\n`);
  else process.stdout.write("census: every pod removed, nothing left\n");
  writeResult("pods", {
    context: {
      containerd: "Debian 1.6.20 with its CRI plugin (test/integration/harness/cri.ts: CNI bridge, pause image built here)",
      accelerator: "TCG on this machine (no usable KVM)",
      gvisor: `not measured: ${GVISOR_NOTE}`,
      moatConfiguration: `as shipped (templates on, default_vcpus 1, default_memory 512)${dialTimeout === undefined ? "" : `, but [agent.moat] dial_timeout = ${dialTimeout} (shipped: 30)`}`,
      runs,
      pods: podCount,
      loadAverage: { atStart: loadAtStart, afterPodStarts: loadAfterStarts, atEnd: loadAtEnd },
      failures: Object.fromEntries(Object.entries(starts).map(([name, entry]) => [name, entry.failures])),
      densityMeasure: "PSS from /proc/<pid>/smaps_rollup of every process whose command line names the node's directory, with descendants, containerd excepted (moat: moatd included), divided by the pods started",
      leftBehind: left,
    },
    podStart: tables,
    density: densities,
    runtimeClassOverhead: { podFixedMemory: overhead, from: "moat's MiB per idle pod, rounded up to the next 10 Mi" },
  });
  if (left.length > 0) process.exitCode = 1;
} finally {
  await cleanup();
}

function existsOnPath(command: string): boolean {
  return (process.env.PATH ?? "").split(":").some((dir) => dir.length > 0 && existsSync(join(dir, command)));
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Gone already.
  }
}
