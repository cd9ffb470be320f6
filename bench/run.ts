// bench/run: `moat run --rm busybox echo hi` (a container in its own VM, start to exit, the
// whole CLI process), its VM restored from a template and booted cold, beside `runc run` and
// gVisor's `runsc run` of the same busybox command on the same machine, interleaved in the
// same run.
//
//   node dist/bench/run.js [--runs N]     (make bench)
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { repoRoot } from "../test/integration/harness/moat-cli.js";
import { busyboxBundle, gvisorBaseline, runcBaseline } from "./support/baselines.js";
import { report } from "./support/report.js";
import { summarize } from "./support/stats.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "10" } } });
const runs = Number(values.runs);
const work = mkdtempSync(join(tmpdir(), "moat-bench-run-"));

/** A configuration file with VM templates on or off. */
function configFile(enableTemplate: boolean): string {
  const path = join(work, `templates-${enableTemplate}.toml`);
  writeFileSync(path, `[factory]\nenable_template = ${enableTemplate}\n`);
  return path;
}

function moatRun(stateRoot: string, config: string): number {
  const started = performance.now();
  const result = spawnSync(join(repoRoot, "bin", "moat"), ["--config", config, "--root", stateRoot, "run", "--rm", "busybox", "echo", "hi"], { encoding: "utf8" });
  const elapsed = performance.now() - started;
  if (result.status !== 0 || result.stdout !== "hi\n") throw new Error(`moat run: exit ${result.status}: ${result.stderr}`);
  return elapsed;
}

try {
  const bundle = busyboxBundle(join(work, "bundle"), ["/bin/echo", "hi"]);
  const runc = runcBaseline(bundle, join(work, "runc"));
  const gvisor = gvisorBaseline(bundle, join(work, "runsc"));
  const samples = { moat: [] as number[], cold: [] as number[], runc: [] as number[], gvisor: [] as number[] };
  const [templated, cold] = [configFile(true), configFile(false)];
  process.stdout.write(`bench/run: ${runs} runs of echo hi\n`);
  moatRun(join(work, "moat"), templated); // builds the VM template, not measured
  for (let run = 0; run < runs; run++) {
    samples.moat.push(moatRun(join(work, "moat"), templated));
    samples.cold.push(moatRun(join(work, "moat"), cold));
    samples.runc.push(runc.run(`run-${run}`));
    samples.gvisor.push(gvisor.run(`run-${run}`));
    process.stdout.write(`  run ${run + 1}/${runs}: moat ${samples.moat.at(-1)!.toFixed(0)} ms, cold ${samples.cold.at(-1)!.toFixed(0)} ms\n`); // just pushed
  }
  report(
    "run",
    "Container start to exit, whole command: moat run --rm busybox echo hi vs runc run and gVisor runsc run of the same busybox bundle",
    [
      { name: "moat run --rm busybox echo hi", summary: summarize(samples.moat) },
      { name: "moat run, VM booted cold", summary: summarize(samples.cold) },
      { name: "runc run (busybox echo hi)", summary: summarize(samples.runc) },
      { name: "gVisor runsc run (ptrace)", summary: summarize(samples.gvisor) },
    ],
    "moat run --rm busybox echo hi",
    { what: "the first row restores each VM from a template (built before the runs); the second boots each cold; no warm pool yet" },
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
