// bench/pool-network: what the warm pool saves a networked start. `moat run --bundle` of a
// busybox `echo hi` whose spec names a network namespace with one veth (on a test bridge of
// 198.18.0.0/15, made by the bench) by each way its VM can start: taken from moatd's warm pool
// of VMs with one NIC ([factory] vm_cache_networked = 1; its throwaway tap moves into the
// namespace), restored from the one-NIC template. Beside `runc run` of the same bundle in the
// same namespace, interleaved in the same run. Only addresses on this machine are used.
//
//   node dist/bench/pool-network.js [--runs N]
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { repoRoot } from "../test/integration/harness/moat-cli.js";
import { busyboxBundle, runcBaseline } from "./support/baselines.js";
import { report } from "./support/report.js";
import { summarize } from "./support/stats.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "10" } } });
const runs = Number(values.runs);
const work = mkdtempSync(join(tmpdir(), "moat-bench-pool-network-"));
const moat = join(repoRoot, "bin", "moat");
const POOL_FILL_WAIT_MS = 300_000;
const suffix = randomBytes(3).toString("hex");
const bridge = `mbb${suffix}`;
const hostEnd = `mbh${suffix}`;
const netns = `moat-bench-${suffix}`;
const ip = (...args: string[]) => execFileSync("ip", args, { encoding: "utf8" });

/** A configuration file with its own state root. */
function configFile(name: string, factory: string): { config: string; stateRoot: string } {
  const config = join(work, `${name}.toml`);
  const stateRoot = join(work, name);
  writeFileSync(config, `[runtime]\nstate_root = "${stateRoot}"\n\n[factory]\n${factory}\n`);
  return { config, stateRoot };
}

let runCount = 0;
/** One `moat run --bundle` timed; its `sandbox` trace line says which path it took, which must be `expect`. */
function moatRun(config: string, bundle: string, expect: RegExp): { ms: number; ready: number } {
  const started = performance.now();
  const result = spawnSync(moat, ["--config", config, "run", "--bundle", bundle, `bench-${suffix}-${++runCount}`], { encoding: "utf8", env: { ...process.env, MOAT_TRACE: "sandbox" } });
  const elapsed = performance.now() - started;
  if (result.status !== 0 || result.stdout !== "hi\n") throw new Error(`moat run: exit ${result.status}: ${result.stderr}`);
  if (!expect.test(result.stderr)) throw new Error(`moat run did not start ${expect.source}: ${result.stderr}`);
  return { ms: elapsed, ready: Number(/agent ready after (\d+) ms/.exec(result.stderr)?.[1]) };
}

/** Waits until the pool's moatd has its networked VM again, so that each pooled sample takes a ready VM. */
async function poolFull(config: string): Promise<void> {
  const deadline = Date.now() + POOL_FILL_WAIT_MS;
  for (;;) {
    const status = spawnSync(moat, ["--config", config, "factory", "status"], { encoding: "utf8" }).stdout;
    if (/^warm pool: 1 of 1 VMs ready/m.test(status)) return;
    if (Date.now() > deadline) throw new Error(`the warm pool did not fill within ${POOL_FILL_WAIT_MS} ms: ${status}`);
    await sleep(200);
  }
}

const pooled = configFile("pool", "vm_cache_networked = 1");
const templated = configFile("template", "enable_template = true");
try {
  // The namespace a caller (podman, CNI) would have made: one veth on a bridge of its own.
  ip("link", "add", bridge, "type", "bridge");
  ip("addr", "add", "198.19.253.1/24", "dev", bridge);
  ip("link", "set", bridge, "up");
  ip("netns", "add", netns);
  ip("link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", netns);
  ip("link", "set", hostEnd, "master", bridge, "up");
  ip("-n", netns, "link", "set", "eth0", "up");
  ip("-n", netns, "addr", "add", "198.19.253.2/24", "dev", "eth0");
  const bundle = busyboxBundle(join(work, "bundle"), ["/bin/echo", "hi"]);
  const configPath = join(bundle, "config.json");
  const spec = JSON.parse(readFileSync(configPath, "utf8")) as { linux: { namespaces: Array<{ type: string; path?: string }> } }; // runc spec's
  spec.linux.namespaces = spec.linux.namespaces.map((entry) => (entry.type === "network" ? { type: "network", path: `/run/netns/${netns}` } : entry));
  writeFileSync(configPath, JSON.stringify(spec));
  const runc = runcBaseline(bundle, join(work, "runc"));
  const samples = { pool: [] as number[], template: [] as number[], runc: [] as number[] };
  const ready = { pool: [] as number[], template: [] as number[] };
  process.stdout.write(`bench/pool-network: ${runs} runs of echo hi on a namespace with one veth\n`);
  moatRun(templated.config, bundle, /from a template|cold boot/); // builds the one-NIC template, not measured
  moatRun(pooled.config, bundle, /./); // starts moatd, which builds its template and fills its pool; not measured
  const failures: string[] = [];
  const sample = (what: string, take: () => void) => {
    try {
      take();
    } catch (error) {
      failures.push(`${what}: ${String(error).split("\n")[0]}`);
      process.stdout.write(`  ${what} failed: ${String(error).split("\n")[0]}\n`);
    }
  };
  for (let run = 0; run < runs; run++) {
    await poolFull(pooled.config);
    for (const [path, config, expect] of [["pool", pooled.config, /\(from the warm pool, /], ["template", templated.config, /\(from a template, /]] as const) {
      sample(`run ${run + 1} ${path}`, () => {
        const result = moatRun(config, bundle, expect);
        samples[path].push(result.ms);
        ready[path].push(result.ready);
      });
    }
    samples.runc.push(runc.run(`run-${run}`));
    process.stdout.write(`  run ${run + 1}/${runs}: pool ${samples.pool.at(-1)?.toFixed(0)} ms (ready ${ready.pool.at(-1)}), template ${samples.template.at(-1)?.toFixed(0)} ms (ready ${ready.template.at(-1)}), runc ${samples.runc.at(-1)?.toFixed(0)} ms\n`);
  }
  report(
    "pool-network",
    "A networked start (one veth in the spec's namespace), whole command: moat run --bundle echo hi taken from the warm pool of one-NIC VMs vs restored from the one-NIC template, vs runc run of the same bundle",
    [
      { name: "moat run, warm pool (one NIC)", summary: summarize(samples.pool) },
      { name: "moat run, template (one NIC)", summary: summarize(samples.template) },
      { name: "runc run (same namespace)", summary: summarize(samples.runc) },
    ],
    "moat run, warm pool (one NIC)",
    { failures, what: "warm pool: moatd with vm_cache_networked = 1, its pool full before each sample; template: restored from the one-NIC template (built before the runs)" },
  );
  report(
    "pool-network-agent-ready",
    "The same runs: the sandbox's VM started (taken from the pool, restored) to its agent answering with the guest's network configured (the sandbox trace's 'agent ready after')",
    [
      { name: "warm pool (one NIC)", summary: summarize(ready.pool) },
      { name: "template (one NIC)", summary: summarize(ready.template) },
    ],
    "warm pool (one NIC)",
    { what: "from bench/pool-network.ts's moat run samples, the start path's own part of them" },
  );
} finally {
  for (const { stateRoot } of [pooled, templated]) {
    const daemons = spawnSync("pgrep", ["-f", `moatd.mjs --root ${stateRoot} `], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
    for (const pid of daemons) process.kill(Number(pid), "SIGTERM");
    while (spawnSync("pgrep", ["-f", `moatd.mjs --root ${stateRoot} `]).status === 0) await sleep(100);
  }
  for (const undo of [() => ip("link", "del", hostEnd), () => ip("netns", "del", netns), () => ip("link", "del", bridge)]) {
    try {
      undo();
    } catch {
      // Never made.
    }
  }
  rmSync(work, { recursive: true, force: true });
}
