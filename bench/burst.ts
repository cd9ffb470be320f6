// bench/burst: N containers started at once on this machine (20 by default, 2 cores here):
// each one's start-to-exit time (p50, p95) and the wall time until all have exited, for
// `moat run --rm busybox echo hi` with VMs restored from a template and booted cold, beside
// N `runc run` and N `runsc run` of the same busybox bundle at once.
//
//   node dist/bench/burst.js [--count 20]     (make bench)
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { repoRoot } from "../test/integration/harness/moat-cli.js";
import { busyboxBundle } from "./support/baselines.js";
import { report } from "./support/report.js";
import { summarize } from "./support/stats.js";

const { values } = parseArgs({ options: { count: { type: "string", default: "20" } } });
const count = Number(values.count);
const work = mkdtempSync(join(tmpdir(), "moat-bench-burst-"));
const moat = join(repoRoot, "bin", "moat");

/** Runs a command to its end; resolves with its wall time, rejects if it failed. */
function timed(command: string, args: string[]): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.once("error", reject);
    child.once("close", (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`${command} ${args.join(" ")}: exit ${code}: ${stderr.trim()}`))));
  });
}

interface Burst {
  /** The start-to-exit times of those that succeeded. */
  each: number[];
  wallMs: number;
  /** Those that failed, with what the first of them said: a finding, not a reason to stop. */
  failed: number;
  firstError: string | undefined;
}

/** Starts `count` at once; each one's time, and the wall time until the last has ended. */
async function burst(start: (index: number) => Promise<number>): Promise<Burst> {
  const started = performance.now();
  const settled = await Promise.allSettled(Array.from({ length: count }, (_, index) => start(index)));
  const each = settled.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
  const errors = settled.flatMap((result) => (result.status === "rejected" ? [String(result.reason)] : []));
  return { each, wallMs: performance.now() - started, failed: errors.length, firstError: errors[0] };
}

/**
 * Templates on or off. 20 cold boots at once on 2 cores under TCG take longer than the
 * default 30 s the agent is given to answer, so the bench allows 300 s: it measures how long
 * they take rather than failing.
 */
function moatConfig(enableTemplate: boolean): string {
  const path = join(work, `templates-${enableTemplate}.toml`);
  writeFileSync(path, `[factory]\nenable_template = ${enableTemplate}\n\n[agent.moat]\ndial_timeout = 300\n`);
  return path;
}

try {
  const bundle = busyboxBundle(join(work, "bundle"), ["/bin/echo", "hi"]);
  const [templated, cold] = [moatConfig(true), moatConfig(false)];
  const moatRun = (config: string) => () => timed(moat, ["--config", config, "--root", join(work, "moat"), "run", "--rm", "busybox", "echo", "hi"]);
  await moatRun(templated)(); // builds the VM template, not measured
  process.stdout.write(`bench/burst: ${count} containers started at once, ${count} at a time per row\n`);
  const results = {
    template: await burst(moatRun(templated)),
    cold: await burst(moatRun(cold)),
    runc: await burst((index) => timed("runc", ["--root", join(work, "runc"), "run", "--bundle", bundle, `burst-${index}`])),
    gvisor: await burst((index) => timed("runsc", ["--root", join(work, "runsc"), "--platform=ptrace", "--network=none", "run", "--bundle", bundle, `burst-${index}`])),
  };
  const names: Record<keyof typeof results, string> = {
    template: `moat run --rm busybox echo hi, ${count} at once (template)`,
    cold: `moat run, ${count} at once (cold boot)`,
    runc: `runc run, ${count} at once`,
    gvisor: `gVisor runsc run (ptrace), ${count} at once`,
  };
  for (const [key, { wallMs, failed, firstError }] of Object.entries(results)) {
    const failures = failed > 0 ? `; ${failed} of ${count} failed, the first with: ${firstError}` : "";
    process.stdout.write(`  ${names[key as keyof typeof results]}: all done after ${Math.round(wallMs)} ms${failures}\n`); // keys of results
  }
  report(
    "burst",
    `${count} containers started at once: each one's start-to-exit time`,
    Object.entries(results)
      .filter(([, { each }]) => each.length > 0) // a row whose every start failed has only its error, in the JSON
      .map(([key, { each }]) => ({ name: names[key as keyof typeof results], summary: summarize(each) })), // keys of results
    names.template,
    {
      count,
      wallMs: Object.fromEntries(Object.entries(results).map(([key, { wallMs }]) => [key, Math.round(wallMs)])),
      failed: Object.fromEntries(Object.entries(results).map(([key, { failed, firstError }]) => [key, { failed, firstError }])),
    },
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
