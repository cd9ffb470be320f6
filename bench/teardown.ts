// bench/teardown: from a container's exit to all its resources freed. The container prints one
// line as its last act; the clock runs from that line reaching the caller to the runtime's
// command returning, which `moat run --rm`, `runc run` and `runsc run` each do only once the
// container is deleted (for moat: its VM shut down, QEMU gone, its state directory removed —
// checked after every run).
//
//   node dist/bench/teardown.js [--runs N]     (make bench)
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { repoRoot } from "../test/integration/harness/moat-cli.js";
import { busyboxBundle } from "./support/baselines.js";
import { pidsMatching } from "./support/pss.js";
import { report } from "./support/report.js";
import { summarize } from "./support/stats.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "10" } } });
const runs = Number(values.runs);
const work = mkdtempSync(join(tmpdir(), "moat-bench-teardown-"));
const moatRoot = join(work, "moat");

/** Milliseconds from the container's first output to the command's exit. */
function exitToFreed(command: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let printedAt: number | undefined;
    let stderr = "";
    child.stdout.on("data", () => (printedAt ??= performance.now()));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.once("error", reject);
    child.once("close", (code) => {
      if (code !== 0 || printedAt === undefined) return reject(new Error(`${command}: exit ${code}, ${printedAt ? "" : "no output, "}${stderr.trim()}`));
      resolve(performance.now() - printedAt);
    });
  });
}

/** Fails if a moat run left a QEMU or a sandbox directory behind: then nothing was freed. */
function assertMoatFreed(): void {
  const left = existsSync(moatRoot) ? readdirSync(moatRoot).filter((name) => !name.startsWith(".") && !name.startsWith("moatd")) : [];
  if (left.length > 0 || pidsMatching(`qemu-system.*${moatRoot}/[^.]`).length > 0) throw new Error(`moat run left ${left.join(", ")} behind`);
}

try {
  const bundle = busyboxBundle(join(work, "bundle"), ["/bin/echo", "done"]);
  const moat = () => exitToFreed(join(repoRoot, "bin", "moat"), ["--root", moatRoot, "run", "--rm", "busybox", "echo", "done"]);
  await moat(); // builds the VM template, not measured
  const samples = { moat: [] as number[], runc: [] as number[], gvisor: [] as number[] };
  process.stdout.write(`bench/teardown: ${runs} runs\n`);
  for (let run = 0; run < runs; run++) {
    samples.moat.push(await moat());
    assertMoatFreed();
    samples.runc.push(await exitToFreed("runc", ["--root", join(work, "runc"), "run", "--bundle", bundle, `teardown-${run}`]));
    samples.gvisor.push(await exitToFreed("runsc", ["--root", join(work, "runsc"), "--platform=ptrace", "--network=none", "run", "--bundle", bundle, `teardown-${run}`]));
    process.stdout.write(`  run ${run + 1}/${runs}: moat ${samples.moat.at(-1)!.toFixed(0)} ms\n`); // just pushed
  }
  report(
    "teardown",
    "From the container's exit (its last output) to the runtime's command returning with everything deleted",
    [
      { name: "moat run --rm (VM shut down, state removed)", summary: summarize(samples.moat) },
      { name: "runc run", summary: summarize(samples.runc) },
      { name: "gVisor runsc run (ptrace)", summary: summarize(samples.gvisor) },
    ],
    "moat run --rm (VM shut down, state removed)",
    { what: "time from the first byte of the container's output to the command's exit" },
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
