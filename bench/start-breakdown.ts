// bench/start-breakdown: where a container's start goes (issue 14, item 1), as the host and the
// guest see it, and what of it is TCG translating guest code for the first time. Each round
// starts three `echo hi` containers one after the other in one VM (a pod: the first is its
// sandbox container, in a VM restored from the template; the second and third join that VM
// as members), through the OCI commands as CRI-O drives them (`moat create` under a subreaper
// playing conmon, `moat start`, the stand-in's exit), and one `moat run --rm busybox echo hi`
// (the best start path: one crun call). Every part comes from moatd's `daemon` trace (its
// `timing` line per container: src/host/sandbox/start-timeline.ts). runc and gVisor run the
// same busybox command in the same rounds, for scale.
//
//   node dist/bench/start-breakdown.js [--runs N]
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { OciSpec } from "../src/host/oci/index.js";
import type { TimedStep } from "../src/host/sandbox/index.js";
import { busyboxBundle } from "../test/integration/harness/bundle.js";
import { helperBinary } from "../test/integration/harness/c-helper.js";
import { repoRoot, runMoat } from "../test/integration/harness/moat-cli.js";
import { createAsConmon } from "../test/integration/harness/oci-runtime.js";
import { TestWorkspace } from "../test/integration/harness/state-root.js";
import { busyboxBundle as baselineBundle, gvisorBaseline, runcBaseline } from "./support/baselines.js";
import { writeResult } from "./support/report.js";
import { summarize } from "./support/stats.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "5" } } });
const runs = Number(values.runs);
// moatd is started by the first moat command below and inherits this: its timing lines go to moatd.log.
process.env.MOAT_TRACE = "daemon";
const workspace = new TestWorkspace();
// Every moat command (and the moatd the first one starts) reads this. A guest that boots (the
// template's, once) gets longer than the default 30 s to answer: on a shared 2-core machine
// under TCG, a loaded moment can starve it past that.
process.env.MOAT_CONFIG = workspace.configFile("bench", "[agent.moat]\ndial_timeout = 180\n");
const subreaper = helperBinary(workspace.dir, "subreaper");
const moat = join(repoRoot, "bin", "moat");
const CRIO_TYPE = "io.kubernetes.cri-o.ContainerType";
const CRIO_SANDBOX = "io.kubernetes.cri-o.SandboxID";
/** Which container of a round: the VM's first (restored from the template), its second, its third; and `moat run`'s. */
const KINDS = ["first", "second", "third", "run"] as const;
type Kind = (typeof KINDS)[number];

interface Timeline {
  host: TimedStep[];
  guest: TimedStep[];
  refused?: string[];
}

/** The timing lines moatd traced so far, by container id. */
function timelines(): Map<string, Timeline> {
  const found = new Map<string, Timeline>();
  for (const [, id, json] of workspace.daemonLog().matchAll(/ daemon (\S+): timing (\{.*\})$/gm)) found.set(id!, JSON.parse(json!) as Timeline); // both groups exist on a match
  return found;
}

function bundle(id: string, annotations: Record<string, string>): string {
  return busyboxBundle(join(workspace.dir, "bundles", id), ["echo", "hi"], (spec: OciSpec) => {
    spec.annotations = annotations;
  });
}

async function ok(args: string[]): Promise<void> {
  const result = await runMoat(["--root", workspace.stateRoot, ...args]);
  assert.equal(result.code, 0, `moat ${args.join(" ")}: ${result.stderr}`);
}

/** `moat create` (as conmon), `moat start`, the stand-in's exit: the whole of it, in ms. */
async function createStartWait(id: string, annotations: Record<string, string>): Promise<number> {
  const path = bundle(id, annotations);
  const started = performance.now();
  const container = createAsConmon(subreaper, workspace.stateRoot, path, id, "");
  assert.equal(await container.created, 0, `create ${id}: ${container.stderr()}`);
  await ok(["start", id]);
  assert.equal((await container.standIn).exitStatus, 0, `${id}: exit`);
  const ms = performance.now() - started;
  assert.equal(container.stdout(), "hi\n", `${id}: output`);
  return ms;
}

const wall: Record<Kind, number[]> = { first: [], second: [], third: [], run: [] };
const parts: Record<Kind, Map<string, number[]>> = { first: new Map(), second: new Map(), third: new Map(), run: new Map() };
const baselines = { runc: [] as number[], gvisor: [] as number[] };

/** Adds a container's timeline to its kind's parts: each step's length, and the host's and the guest's totals. */
function record(kind: Kind, timeline: Timeline | undefined, id: string): void {
  if (!timeline) throw new Error(`no timing line for ${id} in moatd.log`);
  if (timeline.refused) throw new Error(`${id}: guest steps refused: ${timeline.refused.join("; ")}`);
  const add = (name: string, ms: number) => parts[kind].set(name, [...(parts[kind].get(name) ?? []), ms]);
  for (const step of timeline.host) add(`host: ${step.name}`, step.ms);
  for (const step of timeline.guest) add(`guest: ${step.name}`, step.ms);
  add("host: total of the steps", timeline.host.reduce((sum, step) => sum + step.ms, 0));
}

try {
  const runcBundle = baselineBundle(join(workspace.dir, "runc-bundle"), ["/bin/echo", "hi"]);
  const runc = runcBaseline(runcBundle, join(workspace.dir, "runc"));
  const gvisor = gvisorBaseline(runcBundle, join(workspace.dir, "runsc"));
  process.stdout.write(`bench/start-breakdown: ${runs} rounds, load average ${loadavg().map((load) => load.toFixed(1)).join(" ")}\n`);
  // Not measured: starts moatd and builds the template.
  // It says the guest's clock source too: with jiffies (a TSC the guest kernel found unstable) the guest's steps have a 4 ms grain.
  const warmUp = spawnSync(moat, ["--root", workspace.stateRoot, "run", "--rm", "busybox", "cat", "/sys/devices/system/clocksource/clocksource0/current_clocksource"], { encoding: "utf8" });
  assert.equal(warmUp.status, 0, `the first moat run (not measured): ${warmUp.stderr}\nmoatd.log:\n${workspace.daemonLog().slice(-3000)}`);
  const clocksource = warmUp.stdout.trim();
  process.stdout.write(`the guest's clock source: ${clocksource}\n`);
  for (let round = 0; round < runs; round++) {
    const pod = `pod${round}`;
    const ids: Record<Exclude<Kind, "run">, string> = { first: pod, second: `${pod}-b`, third: `${pod}-c` };
    wall.first.push(await createStartWait(ids.first, { [CRIO_TYPE]: "sandbox", [CRIO_SANDBOX]: pod }));
    wall.second.push(await createStartWait(ids.second, { [CRIO_TYPE]: "container", [CRIO_SANDBOX]: pod }));
    wall.third.push(await createStartWait(ids.third, { [CRIO_TYPE]: "container", [CRIO_SANDBOX]: pod }));
    for (const id of [ids.third, ids.second, ids.first]) await ok(["delete", id]);
    const runId = `run${round}`;
    const started = performance.now();
    const run = spawnSync(moat, ["--root", workspace.stateRoot, "run", "--rm", "--name", runId, "busybox", "echo", "hi"], { encoding: "utf8" });
    wall.run.push(performance.now() - started);
    assert.equal(run.stdout, "hi\n", `moat run: exit ${run.status}: ${run.stderr}`);
    baselines.runc.push(runc.run(`runc-${round}`));
    baselines.gvisor.push(gvisor.run(`runsc-${round}`));
    const found = timelines();
    for (const kind of KINDS) record(kind, found.get(kind === "run" ? runId : ids[kind]), kind === "run" ? runId : ids[kind]);
    process.stdout.write(`  round ${round + 1}/${runs}: first ${wall.first.at(-1)!.toFixed(0)} ms, second ${wall.second.at(-1)!.toFixed(0)} ms, third ${wall.third.at(-1)!.toFixed(0)} ms, moat run ${wall.run.at(-1)!.toFixed(0)} ms, runc ${baselines.runc.at(-1)!.toFixed(0)} ms, gVisor ${baselines.gvisor.at(-1)!.toFixed(0)} ms\n`); // each array got its sample just above
  }
  const median = (samples: number[] | undefined) => (samples ? summarize(samples).medianMs : Number.NaN);
  const names = [...new Set(KINDS.flatMap((kind) => [...parts[kind].keys()]))];
  const firstTotal = median(parts.first.get("host: total of the steps"));
  process.stdout.write(`\nmedians of ${runs} rounds, ms | first in its VM | second | third | share of the first's host total | moat run --rm\n`);
  for (const name of names) {
    const row = KINDS.map((kind) => median(parts[kind].get(name)));
    const share = ((row[0]! / firstTotal) * 100).toFixed(0); // KINDS has four entries
    process.stdout.write(`${name} | ${row.slice(0, 3).map((ms) => ms.toFixed(1)).join(" | ")} | ${share} % | ${row[3]!.toFixed(1)}\n`); // as above
  }
  process.stdout.write(`whole command (create as conmon, start, exit; moat run) | ${KINDS.slice(0, 3).map((kind) => median(wall[kind]).toFixed(0)).join(" | ")} | | ${median(wall.run).toFixed(0)}\n`);
  process.stdout.write(`runc run ${median(baselines.runc).toFixed(0)} ms, gVisor runsc run (ptrace) ${median(baselines.gvisor).toFixed(0)} ms\n`);
  writeResult("start-breakdown", {
    context: {
      what: "three echo hi containers one after the other in one VM (a pod through the OCI commands: the first restored from the template, the second and third members), and one moat run --rm busybox echo hi, per round; parts from moatd's timing trace (host steps on moatd's clock, guest steps on the guest's monotonic clock)",
      runs,
      guestClocksource: clocksource,
      loadAverage: loadavg(),
    },
    unit: "ms",
    parts: Object.fromEntries(names.map((name) => [name, Object.fromEntries(KINDS.map((kind) => [kind, summarize(parts[kind].get(name) ?? [Number.NaN])]))])),
    wholeCommand: Object.fromEntries(KINDS.map((kind) => [kind, summarize(wall[kind])])),
    baselines: { "runc run (busybox echo hi)": summarize(baselines.runc), "gVisor runsc run (ptrace)": summarize(baselines.gvisor) },
  });
} finally {
  await workspace.stopDaemon();
  workspace.remove();
}
