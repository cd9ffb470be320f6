// bench/ctr-run: `ctr run --rm busybox echo hi` through a real containerd, whole ctr command,
// with moat's shim (io.containerd.moat.v2: a VM per task; its sandbox restored from a VM
// template, booted cold through a per-task ConfigPath with templates off, and, in a second
// phase with moatd restarted on a configuration that keeps a warm pool, taken from it) beside
// containerd's runc shim (io.containerd.runc.v2 with runc) and the same shim driving gVisor
// (BinaryName = a runsc with --platform=ptrace, which needs no KVM), interleaved in the same
// run. Then host PSS per idle container: --idle tasks of each runtime kept running (`sleep`),
// and everything that serves them summed (moat: each QEMU and moatd; runc and gVisor: each
// task's shim with its descendants: runc's container, gVisor's sandbox and gofer).
//
//   node dist/bench/ctr-run.js [--runs N] [--idle N] [--pool N]     (make bench)
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { Containerd } from "../test/integration/harness/containerd.js";
import { BUSYBOX_IMAGE } from "../test/integration/harness/oci-image.js";
import { TestWorkspace } from "../test/integration/harness/state-root.js";
import { pidsMatching, pssMiB, withDescendants } from "./support/pss.js";
import { report } from "./support/report.js";
import { summarize } from "./support/stats.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "10" }, idle: { type: "string", default: "3" }, pool: { type: "string", default: "2" } } });
const runs = Number(values.runs);
const idle = Number(values.idle);
const poolSize = Number(values.pool);
/** How long a pool VM may take to be restored again before the next run takes one. */
const POOL_REFILL_MS = 3000;
const SETTLE_MS = 5000;
// moatd inherits this through containerd and the shim: its log then says which path each start took.
process.env.MOAT_TRACE = "sandbox";
const workspace = new TestWorkspace();
const containerd = new Containerd(workspace);

/** runsc as the runc shim calls runc, with the flags gVisor needs here. */
const runscPtrace = join(workspace.dir, "runsc-ptrace");
writeFileSync(runscPtrace, '#!/bin/sh\nexec runsc --platform=ptrace --network=none "$@"\n');
chmodSync(runscPtrace, 0o755);
/** A task's own moat configuration (runtime ConfigPath): the same VM, booted cold. */
const coldConfig = workspace.configFile("cold", "[factory]\nenable_template = false\n");

const runtimes = {
  moat: ["--runtime", "io.containerd.moat.v2"],
  moatCold: ["--runtime", "io.containerd.moat.v2", "--runtime-config-path", coldConfig],
  runc: ["--runtime", "io.containerd.runc.v2"],
  gvisor: ["--runtime", "io.containerd.runc.v2", "--runc-binary", runscPtrace],
};
type Runtime = keyof typeof runtimes;
const names: Record<Runtime | "moatPool", string> = {
  moatPool: `moat, from the warm pool (vm_cache_number = ${poolSize})`,
  moat: "moat, from a template",
  moatCold: "moat, cold boot",
  runc: "runc (io.containerd.runc.v2)",
  gvisor: "gVisor (runc shim, runsc ptrace)",
};

async function ctrRun(runtime: Runtime, id: string): Promise<number> {
  const started = performance.now();
  const result = await containerd.ctr(["run", "--rm", "--fifo-dir", containerd.fifoDir, ...runtimes[runtime], BUSYBOX_IMAGE, id, "echo", "hi"]);
  const elapsed = performance.now() - started;
  if (result.code !== 0 || result.stdout !== "hi\n") throw new Error(`ctr run (${runtime}): exit ${result.code}: ${result.stderr}`);
  return elapsed;
}

/** Host PSS per idle task of `runtime`, in MiB, with `idle` of them running. */
async function idlePss(runtime: Runtime): Promise<number[]> {
  const ids = Array.from({ length: idle }, (_, index) => `idle-${runtime}-${index}`);
  try {
    for (const id of ids) {
      const result = await containerd.ctr(["run", "-d", "--fifo-dir", containerd.fifoDir, ...runtimes[runtime], BUSYBOX_IMAGE, id, "sleep", "3600"]);
      if (result.code !== 0) throw new Error(`ctr run -d (${runtime}): ${result.stderr}`);
    }
    await sleep(SETTLE_MS);
    const pids = runtime.startsWith("moat")
      ? [...pidsMatching(`qemu-system.*${workspace.stateRoot}/`), ...pidsMatching(`moatd.mjs --root ${workspace.stateRoot}`)]
      : withDescendants(ids.flatMap((id) => pidsMatching(`containerd-shim-runc-v2 -namespace \\S+ -id ${id} `)));
    const total = pids.reduce((sum, pid) => sum + pssMiB(pid), 0);
    return [total / idle];
  } finally {
    for (const id of ids) {
      await containerd.ctr(["tasks", "kill", "--signal", "SIGKILL", id]);
      for (let tries = 0; tries < 100 && (await containerd.ctr(["tasks", "delete", id])).code !== 0; tries++) await sleep(100);
      await containerd.ctr(["containers", "delete", id]);
    }
  }
}

try {
  await containerd.start();
  await containerd.importBusybox();
  const order: Runtime[] = ["moat", "moatCold", "runc", "gvisor"];
  const samples = Object.fromEntries(order.map((runtime) => [runtime, [] as number[]])) as Record<Runtime, number[]>;
  process.stdout.write(`bench/ctr-run: ${runs} runs of ctr run --rm busybox echo hi\n`);
  await ctrRun("moat", "warm-up"); // builds the template, starts moatd
  for (let run = 0; run < runs; run++) {
    for (const runtime of order) samples[runtime].push(await ctrRun(runtime, `${runtime}-${run}`));
    process.stdout.write(`  run ${run + 1}/${runs}: moat ${samples.moat.at(-1)!.toFixed(0)} ms, cold ${samples.moatCold.at(-1)!.toFixed(0)} ms\n`); // just pushed
  }
  // Second phase: moatd restarted on a configuration that keeps a warm pool (the shim's next
  // start runs it); every default task then takes a pool VM.
  await workspace.stopDaemon();
  containerd.useMoatConfig(`[factory]\nvm_cache_number = ${poolSize}\n`);
  const pooled: number[] = [];
  await ctrRun("moat", "pool-warm-up"); // starts moatd and its pool
  for (let run = 0; run < runs; run++) {
    await sleep(POOL_REFILL_MS);
    pooled.push(await ctrRun("moat", `pool-${run}`));
    process.stdout.write(`  pool run ${run + 1}/${runs}: ${pooled.at(-1)!.toFixed(0)} ms\n`); // just pushed
  }
  const fromPool = workspace.daemonLog().split("\n").filter((line) => line.includes("from the warm pool")).length;
  process.stdout.write(`  ${fromPool} of ${runs + 1} pool-phase starts took a pool VM (moatd's sandbox trace)\n`);
  report(
    "ctr-run",
    "containerd, whole `ctr run --rm busybox echo hi`: moat's shim vs the runc shim with runc and with gVisor",
    [{ name: names.moatPool, summary: summarize(pooled) }, ...order.map((runtime) => ({ name: names[runtime], summary: summarize(samples[runtime]) }))],
    names.moat,
    { containerd: "Debian 1.6.20", accelerator: "TCG on this machine (no usable KVM)", pool: "second phase, runs 3 s apart so that the pool refills" },
  );
  const pss = order.filter((runtime) => runtime !== "moatCold");
  const perTask: Record<string, number[]> = {};
  for (const runtime of pss) perTask[runtime] = await idlePss(runtime);
  report(
    "ctr-run-pss",
    `containerd, host PSS per idle task (${idle} \`sleep\` tasks running): moat from a template vs runc and gVisor`,
    pss.map((runtime) => ({ name: names[runtime as Runtime], summary: summarize(perTask[runtime]!) })), // filled just above
    names.moat,
    { counted: "moat: every QEMU and moatd; runc, gVisor: each task's containerd-shim-runc-v2 and its descendants", idleTasks: idle },
    "MiB",
  );
} finally {
  await containerd.stop();
  await workspace.stopDaemon();
  workspace.remove();
}
