// bench/shim-start: `containerd-shim-moat-v2 start`, which containerd runs for every task,
// with moatd already up (the common case), beside `node -e 0`: the floor a shim written in
// Node would pay for each task here. `start` forks the task's relay, which stays: its PSS is
// measured too, and every relay is stopped with `delete` afterwards.
//
//   node dist/bench/shim-start.js [--runs N]     (make bench)
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { repoRoot } from "../test/integration/harness/moat-cli.js";
import { TestWorkspace } from "../test/integration/harness/state-root.js";
import { report } from "./support/report.js";
import { summarize } from "./support/stats.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "200" } } });
const runs = Number(values.runs);
const workspace = new TestWorkspace();
const bundle = join(workspace.dir, "bundle");
mkdirSync(bundle);
const shim = join(repoRoot, "dist", "bin", "containerd-shim-moat-v2");
const env = { ...process.env, MOAT_CONFIG: workspace.configFile("shim-start", ""), TTRPC_ADDRESS: join(workspace.dir, "containerd.sock.ttrpc") };

function timed(command: string, args: string[]): number {
  const started = performance.now();
  const result = spawnSync(command, args, { cwd: bundle, env, encoding: "utf8" });
  const elapsed = performance.now() - started;
  if (result.status !== 0) throw new Error(`${command}: exit ${result.status}: ${result.stderr}`);
  return elapsed;
}

/** PSS of a process in MiB, from /proc/PID/smaps_rollup. */
function pssMiB(pid: number): number {
  const kiB = Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))?.[1]);
  return kiB / 1024;
}

const flags = (id: string) => ["-namespace", "bench", "-address", join(workspace.dir, "containerd.sock"), "-publish-binary", "containerd", "-id", id];
const ids: string[] = [];
try {
  // A new id each time, as containerd's tasks have: each start forks a relay that stays.
  const start = () => {
    ids.push(`task-${ids.length}`);
    return timed(shim, [...flags(ids[ids.length - 1]!), "start"]); // just pushed
  };
  const first = start(); // starts moatd
  const samples = { shim: [] as number[], node: [] as number[], relayPss: [] as number[] };
  for (let run = 0; run < runs; run++) {
    samples.shim.push(start());
    if (run % 10 === 0) samples.node.push(timed(process.execPath, ["-e", "0"]));
  }
  // The relays are forks of `start`: their command line is its own.
  const relays = execFileSync("pgrep", ["-f", `containerd-shim-moat-v2 .*${workspace.dir}.* start`], { encoding: "utf8" }).split("\n").filter(Boolean);
  for (const pid of relays.slice(0, 20)) samples.relayPss.push(pssMiB(Number(pid)));
  report(
    "shim-start",
    "containerd-shim-moat-v2 start with moatd up, beside the start of an empty Node process",
    [
      { name: "containerd-shim-moat-v2 start (C)", summary: summarize(samples.shim) },
      { name: "node -e 0", summary: summarize(samples.node) },
    ],
    "containerd-shim-moat-v2 start (C)",
    { firstStartWithDaemonSpawnMs: Math.round(first), relays: relays.length, relayPssMiB: summarize(samples.relayPss) },
  );
  process.stdout.write(`relay PSS (MiB, ${samples.relayPss.length} of ${relays.length} relays): median ${summarize(samples.relayPss).medianMs.toFixed(2)}\n`);
} finally {
  for (const id of ids) spawnSync(shim, [...flags(id), "-bundle", bundle, "delete"], { cwd: bundle, env }); // stops each relay
  await workspace.stopDaemon();
  workspace.remove();
}
