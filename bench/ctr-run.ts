// bench/ctr-run: `ctr run --rm busybox echo hi` through a real containerd, whole ctr command,
// with moat's shim (io.containerd.moat.v2: a VM per task) beside containerd's runc shim
// (io.containerd.runc.v2 with runc) and the same shim driving gVisor (BinaryName = a runsc
// with --platform=ptrace, which needs no KVM), interleaved in the same run.
//
//   node dist/bench/ctr-run.js [--runs N]     (make bench)
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Containerd } from "../test/integration/harness/containerd.js";
import { BUSYBOX_IMAGE } from "../test/integration/harness/oci-image.js";
import { TestWorkspace } from "../test/integration/harness/state-root.js";
import { report } from "./support/report.js";
import { summarize } from "./support/stats.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "10" } } });
const runs = Number(values.runs);
const workspace = new TestWorkspace();
const containerd = new Containerd(workspace);

/** runsc as the runc shim calls runc, with the flags gVisor needs here. */
const runscPtrace = join(workspace.dir, "runsc-ptrace");
writeFileSync(runscPtrace, '#!/bin/sh\nexec runsc --platform=ptrace --network=none "$@"\n');
chmodSync(runscPtrace, 0o755);

const runtimes = {
  moat: ["--runtime", "io.containerd.moat.v2"],
  runc: ["--runtime", "io.containerd.runc.v2"],
  gvisor: ["--runtime", "io.containerd.runc.v2", "--runc-binary", runscPtrace],
};

async function ctrRun(runtime: keyof typeof runtimes, id: string): Promise<number> {
  const started = performance.now();
  const result = await containerd.ctr(["run", "--rm", "--fifo-dir", containerd.fifoDir, ...runtimes[runtime], BUSYBOX_IMAGE, id, "echo", "hi"]);
  const elapsed = performance.now() - started;
  if (result.code !== 0 || result.stdout !== "hi\n") throw new Error(`ctr run (${runtime}): exit ${result.code}: ${result.stderr}`);
  return elapsed;
}

try {
  await containerd.start();
  await containerd.importBusybox();
  const samples = { moat: [] as number[], runc: [] as number[], gvisor: [] as number[] };
  process.stdout.write(`bench/ctr-run: ${runs} runs of ctr run --rm busybox echo hi\n`);
  for (let run = 0; run < runs; run++) {
    for (const runtime of ["moat", "runc", "gvisor"] as const) samples[runtime].push(await ctrRun(runtime, `${runtime}-${run}`));
    process.stdout.write(`  run ${run + 1}/${runs}: moat ${samples.moat.at(-1)!.toFixed(0)} ms\n`); // just pushed
  }
  report(
    "ctr-run",
    "containerd, whole `ctr run --rm busybox echo hi`: moat's shim vs the runc shim with runc and with gVisor",
    [
      { name: "moat (io.containerd.moat.v2)", summary: summarize(samples.moat) },
      { name: "runc (io.containerd.runc.v2)", summary: summarize(samples.runc) },
      { name: "gVisor (runc shim, runsc ptrace)", summary: summarize(samples.gvisor) },
    ],
    "moat (io.containerd.moat.v2)",
    { what: "cold boot per task: no templates, no warm pool yet; moatd already running after the first run", containerd: "Debian 1.6.20" },
  );
} finally {
  await containerd.stop();
  await workspace.stopDaemon();
  workspace.remove();
}
