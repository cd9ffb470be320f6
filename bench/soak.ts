// bench/soak: N create/start/exec/delete cycles (1,000 by default), 10 at a time, through the
// OCI CLI and then through containerd; moatd's RSS and descriptor count sampled after every
// cycle, start/end/max printed, and the run fails if moatd grew beyond the bound stated in
// test/integration/harness/soak.ts (descriptors back exactly, RSS within RSS_GROWTH_BOUND_KIB),
// if any cycle's result was wrong, or if the census finds anything left. Not a timing test:
// the wall time is printed as a figure only.
//
//   node dist/bench/soak.js [--cycles 1000] [--concurrency 10] [--path oci|containerd|both]
// With SOAK_KEEP_LOG=PREFIX, moatd's log of each path is kept as PREFIX-<path>.log (run it with
// MOAT_TRACE=daemon,sandbox for the step lines) before the workspace goes.
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Containerd } from "../test/integration/harness/containerd.js";
import { assertSoakFlat, RSS_GROWTH_BOUND_KIB, soak, type SoakResult } from "../test/integration/harness/soak.js";
import { DAEMON_FILES, TestWorkspace } from "../test/integration/harness/state-root.js";
import { writeResult } from "./support/report.js";

const { values } = parseArgs({ options: { cycles: { type: "string", default: "1000" }, concurrency: { type: "string", default: "10" }, path: { type: "string", default: "both" } } });
const cycles = Number(values.cycles);
const concurrency = Number(values.concurrency);
const paths = values.path === "both" ? ["oci", "containerd"] : [values.path];

function print(result: SoakResult): void {
  const mib = (kib: number) => (kib / 1024).toFixed(1);
  process.stdout.write(
    `\n${result.path}: ${result.cycles} cycles, ${result.concurrency} at a time, ${(result.wallMs / 1000).toFixed(0)} s, ${result.failures.length} failed\n` +
      `  moatd RSS MiB        start ${mib(result.start.rssKiB)}  end ${mib(result.end.rssKiB)}  max ${mib(result.maxRssKiB)}  (bound: end - start <= ${mib(RSS_GROWTH_BOUND_KIB)})\n` +
      `  moatd descriptors    start ${result.start.descriptors}  end ${result.end.descriptors}  max ${result.maxDescriptors}  (bound: end = start)\n`,
  );
  for (const failure of result.failures.slice(0, 10)) process.stdout.write(`  ${failure}\n`);
}

const results: SoakResult[] = [];
let failed = false;
for (const path of paths) {
  const workspace = new TestWorkspace();
  const containerd = path === "containerd" ? new Containerd(workspace) : undefined;
  try {
    if (containerd) {
      await containerd.start();
      await containerd.importBusybox();
    }
    const result = await soak({
      workspace,
      cycles,
      concurrency,
      containerd,
      daemonFiles: DAEMON_FILES,
      progress: (done) => {
        if (done % 50 === 0) process.stdout.write(`${path}: ${done}/${cycles}\n`);
      },
    });
    print(result);
    results.push(result);
    try {
      assertSoakFlat(result);
      if (containerd) await containerd.assertNothingLeft();
      else workspace.assertCensusClean({ daemonDescriptors: result.start.descriptors });
    } catch (error) {
      failed = true;
      process.stdout.write(`FAILED: ${error instanceof Error ? error.message : String(error)}\n`);
    }
  } finally {
    await containerd?.stop();
    await workspace.stopDaemon();
    if (process.env.SOAK_KEEP_LOG) writeFileSync(`${process.env.SOAK_KEEP_LOG}-${path}.log`, workspace.daemonLog());
    workspace.remove();
  }
}
writeResult("soak", {
  cycles,
  concurrency,
  rssGrowthBoundKiB: RSS_GROWTH_BOUND_KIB,
  results: results.map(({ samples, ...rest }) => ({ ...rest, samples: samples.filter((_, index) => index % Math.max(1, Math.floor(samples.length / 100)) === 0) })),
});
if (failed) process.exit(1);
