// bench/density: host memory (PSS) per idle sandbox with 1, 10 and 50 of them running, VMs
// restored from a template and booted cold, beside runc and gVisor running the same number of
// idle busybox containers; and how many idle sandboxes would fit in this machine's memory,
// extrapolated from the per-sandbox figure (stated as such). moat's figure counts every moat
// process: each QEMU, each stand-in, and moatd.
//
//   node dist/bench/density.js [--counts 1,10,50] [--cold-max 10]     (make bench)
//
// Cold VMs cost hundreds of MiB each, so they stop at --cold-max; every step first checks
// that the machine keeps at least RESERVE_MIB available after it, and stops there if not.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { repoRoot } from "../test/integration/harness/moat-cli.js";
import { busyboxBundle } from "./support/baselines.js";
import { availableMiB, pidsMatching, pssMiB, withDescendants } from "./support/pss.js";
import { report } from "./support/report.js";
import { summarize } from "./support/stats.js";

const { values } = parseArgs({ options: { counts: { type: "string", default: "1,10,50" }, "cold-max": { type: "string", default: "10" } } });
const counts = values.counts.split(",").map(Number);
const coldMax = Number(values["cold-max"]);
const SETTLE_MS = 5000;
const RESERVE_MIB = 4096;
const work = mkdtempSync(join(tmpdir(), "moat-bench-density-"));
const moat = join(repoRoot, "bin", "moat");
const sum = (pids: number[]) => pids.reduce((total, pid) => total + pssMiB(pid), 0);

interface Fleet {
  /** Starts one more idle container. */
  add(index: number): Promise<void>;
  /** PSS of everything the runtime keeps running for the containers, in MiB. */
  pss(): number;
  stop(): void;
}

function moatFleet(bundle: string, name: string, enableTemplate: boolean): Fleet {
  const root = join(work, name);
  const config = join(work, `${name}.toml`);
  writeFileSync(config, `[factory]\nenable_template = ${enableTemplate}\n`);
  const ids: string[] = [];
  const standIns: number[] = [];
  const cli = (args: string[]) => execFileSync(moat, ["--config", config, "--root", root, ...args], { stdio: ["ignore", "ignore", "inherit"] });
  return {
    async add(index) {
      const id = `idle-${index}`;
      const pidFile = join(work, `${name}-${id}.pid`);
      cli(["create", "--bundle", bundle, "--pid-file", pidFile, id]);
      cli(["start", id]);
      ids.push(id);
      standIns.push(Number(readFileSync(pidFile, "utf8")));
    },
    pss: () => sum(pidsMatching(`qemu-system.*${root}/`)) + sum(standIns) + sum(pidsMatching(`moatd.mjs --root ${root}`)),
    stop() {
      for (const id of ids) quiet(moat, ["--root", root, "delete", "--force", id]);
      for (const pid of pidsMatching(`moatd.mjs --root ${root}`)) process.kill(pid, "SIGTERM");
    },
  };
}

function runcFleet(bundle: string): Fleet {
  const root = join(work, "runc");
  const pids: number[] = [];
  return {
    async add(index) {
      execFileSync("runc", ["--root", root, "run", "--detach", "--bundle", bundle, `idle-${index}`], { stdio: ["ignore", "ignore", "inherit"] });
      pids.push((JSON.parse(execFileSync("runc", ["--root", root, "state", `idle-${index}`], { encoding: "utf8" })) as { pid: number }).pid);
    },
    pss: () => sum(pids),
    stop: () => pids.forEach((_, index) => quiet("runc", ["--root", root, "delete", "--force", `idle-${index}`])),
  };
}

function gvisorFleet(bundle: string): Fleet {
  const root = join(work, "runsc");
  const count = { value: 0 };
  return {
    async add(index) {
      const child = spawn("runsc", ["--root", root, "--platform=ptrace", "--network=none", "run", "--detach", "--bundle", bundle, `idle-${index}`], { stdio: ["ignore", "ignore", "inherit"] });
      const code = await new Promise((resolve) => child.once("exit", resolve));
      if (code !== 0) throw new Error(`runsc run idle-${index}: exit ${String(code)}`);
      count.value++;
    },
    pss: () => sum(withDescendants(pidsMatching(`--root=${root} `))),
    stop() {
      for (let index = 0; index < count.value; index++) quiet("runsc", ["--root", root, "delete", "--force", `idle-${index}`]);
      // runsc delete has been seen to leave a sandbox running; none may outlive the bench
      // (its sockets are named by container id and would refuse the next run's).
      for (const pid of pidsMatching(`--root=${root} `)) process.kill(pid, "SIGKILL");
    },
  };
}

function quiet(command: string, args: string[]): void {
  try {
    execFileSync(command, args, { stdio: "ignore" });
  } catch {
    // Cleanup of something that may not exist.
  }
}

/** Grows the fleet through `counts` (up to `max`); the PSS per container at each count that fit. */
async function measure(name: string, fleet: Fleet, max: number): Promise<Map<number, number>> {
  const perContainer = new Map<number, number>();
  let running = 0;
  try {
    for (const count of counts.filter((value) => value <= max)) {
      const lastPer = running > 0 ? (perContainer.get(running) ?? 0) : 0;
      if (availableMiB() - (count - running) * Math.max(lastPer, 50) < RESERVE_MIB) {
        process.stdout.write(`  ${name}: stopping before ${count}: it would leave less than ${RESERVE_MIB} MiB available\n`);
        break;
      }
      while (running < count) await fleet.add(running++);
      await sleep(SETTLE_MS);
      perContainer.set(count, fleet.pss() / count);
      process.stdout.write(`  ${name}: ${count} idle, ${(fleet.pss() / count).toFixed(1)} MiB each\n`);
    }
  } finally {
    fleet.stop();
  }
  return perContainer;
}

try {
  const bundle = busyboxBundle(join(work, "bundle"), ["/bin/busybox", "sleep", "100000"]);
  const availableAtStart = availableMiB();
  process.stdout.write(`bench/density: ${counts.join(", ")} idle containers; ${Math.round(availableAtStart)} MiB available\n`);
  const results = {
    template: await measure("moat, from a template", moatFleet(bundle, "moat-template", true), Infinity),
    cold: await measure("moat, cold boot", moatFleet(bundle, "moat-cold", false), coldMax),
    runc: await measure("runc", runcFleet(bundle), Infinity),
    gvisor: await measure("gVisor", gvisorFleet(bundle), Infinity),
  };
  const rows = Object.entries(results).flatMap(([name, figures]) => [...figures].map(([count, mib]) => ({ name: `${name}: ${count} idle, per container`, summary: summarize([mib]) })));
  const templatePer = results.template.get(Math.max(...results.template.keys())) ?? Number.NaN;
  const coldPer = results.cold.get(Math.max(...results.cold.keys())) ?? Number.NaN;
  report(
    "density",
    "Host memory (PSS, MiB) per idle busybox container, with N running at once",
    rows,
    `template: ${Math.max(...results.template.keys())} idle, per container`,
    {
      measure: "PSS from /proc/<pid>/smaps_rollup; moat: every QEMU + stand-in + moatd, divided by N",
      memAvailableAtStartMiB: Math.round(availableAtStart),
      extrapolated: {
        note: "how many idle sandboxes would fit in the memory available at the start, from the per-container PSS at the largest N measured; extrapolated, not measured",
        template: Math.floor(availableAtStart / templatePer),
        cold: Math.floor(availableAtStart / coldPer),
      },
    },
    "MiB",
  );
  process.stdout.write(
    `\nextrapolated (not measured): ${Math.floor(availableAtStart / templatePer)} idle sandboxes from templates, ${Math.floor(availableAtStart / coldPer)} cold, fit in ${Math.round(availableAtStart)} MiB\n`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
