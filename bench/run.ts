// bench/run: `moat run --rm busybox echo hi` (a container in its own VM, start to exit, the
// whole CLI process) by each way its VM can start: taken from moatd's warm pool, restored from
// a template, booted cold; with --sizes also a sandbox of another size (2 vCPUs, 768 MiB) the
// first time (it builds its size's template) and later (it restores from it). Beside `runc
// run` and gVisor's `runsc run` of the same busybox command on the same machine, interleaved
// in the same run.
//
//   node dist/bench/run.js [--runs N] [--sizes]     (make bench)
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { repoRoot } from "../test/integration/harness/moat-cli.js";
import { busyboxBundle, gvisorBaseline, runcBaseline } from "./support/baselines.js";
import { report } from "./support/report.js";
import { summarize } from "./support/stats.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "10" }, sizes: { type: "boolean", default: false } } });
const runs = Number(values.runs);
const work = mkdtempSync(join(tmpdir(), "moat-bench-run-"));
const moat = join(repoRoot, "bin", "moat");
const POOL_SIZE = 1;
const POOL_FILL_WAIT_MS = 120_000;
const SIZE_ARGS = ["--cpus", "2", "--memory", "768m"];

/** A configuration file with its own state root. */
function configFile(name: string, factory: string): { config: string; stateRoot: string } {
  const config = join(work, `${name}.toml`);
  const stateRoot = join(work, name);
  writeFileSync(config, `[runtime]\nstate_root = "${stateRoot}"\n\n[factory]\n${factory}\n`);
  return { config, stateRoot };
}

/** One `moat run` timed; its `sandbox` trace line says which path it took, which must be `expect`. */
function moatRun(config: string, expect: RegExp, extra: string[] = []): { ms: number; trace: string } {
  const started = performance.now();
  const result = spawnSync(moat, ["--config", config, "run", "--rm", ...extra, "busybox", "echo", "hi"], { encoding: "utf8", env: { ...process.env, MOAT_TRACE: "sandbox" } });
  const elapsed = performance.now() - started;
  if (result.status !== 0 || result.stdout !== "hi\n") throw new Error(`moat run: exit ${result.status}: ${result.stderr}`);
  if (!expect.test(result.stderr)) throw new Error(`moat run did not start ${expect.source}: ${result.stderr}`);
  return { ms: elapsed, trace: result.stderr };
}

/** Waits until the pool's moatd has its pool full again, so that each pooled sample takes a ready VM. */
async function poolFull(config: string): Promise<void> {
  const deadline = Date.now() + POOL_FILL_WAIT_MS;
  for (;;) {
    const status = spawnSync(moat, ["--config", config, "factory", "status"], { encoding: "utf8" }).stdout;
    if (new RegExp(`^warm pool: ${POOL_SIZE} of ${POOL_SIZE} VMs ready`, "m").test(status)) return;
    if (Date.now() > deadline) throw new Error(`the warm pool did not fill within ${POOL_FILL_WAIT_MS} ms: ${status}`);
    await sleep(200);
  }
}

const pooled = configFile("pool", `vm_cache_number = ${POOL_SIZE}`);
const templated = configFile("template", "enable_template = true");
const cold = configFile("cold", "enable_template = false");
try {
  const bundle = busyboxBundle(join(work, "bundle"), ["/bin/echo", "hi"]);
  const runc = runcBaseline(bundle, join(work, "runc"));
  const gvisor = gvisorBaseline(bundle, join(work, "runsc"));
  const samples = { pool: [] as number[], template: [] as number[], cold: [] as number[], sizeFirst: [] as number[], sizeLater: [] as number[], runc: [] as number[], gvisor: [] as number[] };
  // The part of each start the path decides: from `moat run`'s start of the VM to its agent answering (the sandbox trace).
  const ready = { pool: [] as number[], template: [] as number[], cold: [] as number[] };
  const timed = (path: keyof typeof ready, result: { ms: number; trace: string }) => {
    ready[path].push(Number(/agent ready after (\d+) ms/.exec(result.trace)?.[1]));
    return result.ms;
  };
  process.stdout.write(`bench/run: ${runs} runs of echo hi${values.sizes ? ", with sizes" : ""}\n`);
  moatRun(templated.config, /from a template|cold boot/); // builds the VM template, not measured
  moatRun(pooled.config, /./); // starts moatd, which builds its template and fills its pool; not measured
  /** A run that fails is counted and said, not dropped silently, and does not end the benchmark. */
  const failures: string[] = [];
  const sample = (what: string, into: number[], take: () => number) => {
    try {
      into.push(take());
    } catch (error) {
      failures.push(`${what}: ${String(error).split("\n")[0]}`);
      process.stdout.write(`  ${what} failed: ${String(error).split("\n")[0]}\n`);
    }
  };
  for (let run = 0; run < runs; run++) {
    await poolFull(pooled.config);
    sample(`run ${run + 1} warm pool`, samples.pool, () => timed("pool", moatRun(pooled.config, /\(from the warm pool, /)));
    sample(`run ${run + 1} template`, samples.template, () => timed("template", moatRun(templated.config, /\(from a template, /)));
    sample(`run ${run + 1} cold boot`, samples.cold, () => timed("cold", moatRun(cold.config, /\(cold boot: /)));
    if (values.sizes) {
      // First use of the size: its template is built; removed again after (all of .templates' sized ones), so that every run is a first use.
      const sized = /\(from a template, [0-9a-f]{16}: 2 vCPUs, 768 MiB/;
      sample(`run ${run + 1} size first use`, samples.sizeFirst, () => moatRun(templated.config, sized, SIZE_ARGS).ms);
      sample(`run ${run + 1} size later use`, samples.sizeLater, () => moatRun(templated.config, sized, SIZE_ARGS).ms);
      const status = spawnSync(moat, ["--config", templated.config, "factory", "status"], { encoding: "utf8" }).stdout;
      for (const [, key] of status.matchAll(/^([0-9a-f]{16}) {2}sized /gm)) rmSync(join(templated.stateRoot, ".templates", key!), { recursive: true, force: true }); // group 1 exists on a match
    }
    samples.runc.push(runc.run(`run-${run}`));
    samples.gvisor.push(gvisor.run(`run-${run}`));
    process.stdout.write(`  run ${run + 1}/${runs}: pool ${samples.pool.at(-1)?.toFixed(0)} ms, template ${samples.template.at(-1)?.toFixed(0)} ms, cold ${samples.cold.at(-1)?.toFixed(0)} ms\n`);
  }
  const sizeRows = values.sizes
    ? [
        { name: "moat run --cpus 2 --memory 768m, first use (builds its template)", summary: summarize(samples.sizeFirst) },
        { name: "moat run --cpus 2 --memory 768m, later uses (its template)", summary: summarize(samples.sizeLater) },
      ]
    : [];
  report(
    "run",
    "Container start to exit, whole command: moat run --rm busybox echo hi by start path vs runc run and gVisor runsc run of the same busybox bundle",
    [
      { name: "moat run, warm pool", summary: summarize(samples.pool) },
      { name: "moat run, template", summary: summarize(samples.template) },
      { name: "moat run, cold boot", summary: summarize(samples.cold) },
      ...sizeRows,
      { name: "runc run (busybox echo hi)", summary: summarize(samples.runc) },
      { name: "gVisor runsc run (ptrace)", summary: summarize(samples.gvisor) },
    ],
    "moat run, warm pool",
    {
      failures,
      what: `warm pool: moatd with vm_cache_number = ${POOL_SIZE}, its pool full before each sample (refilled between samples); template: restored from the default size's template (built before the runs); cold boot: enable_template = false${values.sizes ? "; sizes: 2 vCPUs and 768 MiB, its template removed after each first use" : ""}`,
    },
  );
  report(
    "run-agent-ready",
    "The same runs: the sandbox's VM started (taken from the pool, restored, booted) to its agent answering and, for a clone, having taken its identity (the sandbox trace's 'agent ready after')",
    [
      { name: "warm pool", summary: summarize(ready.pool) },
      { name: "template", summary: summarize(ready.template) },
      { name: "cold boot", summary: summarize(ready.cold) },
    ],
    "warm pool",
    { what: "from bench/run.ts's moat run samples, the start path's own part of them" },
  );
} finally {
  // Every moat run starts its state root's moatd; the pool's kills its pool VMs when it exits.
  for (const { stateRoot } of [pooled, templated, cold]) {
    const daemons = spawnSync("pgrep", ["-f", `moatd.mjs --root ${stateRoot} `], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
    for (const pid of daemons) process.kill(Number(pid), "SIGTERM");
    while (spawnSync("pgrep", ["-f", `moatd.mjs --root ${stateRoot} `]).status === 0) await sleep(100);
  }
  rmSync(work, { recursive: true, force: true });
}
