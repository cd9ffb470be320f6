// bench/memory: host memory (PSS) of one idle container, started as its callers start it:
// moat (its QEMU, its stand-in, and moatd's share), runc (the container's own process; runc
// itself exits) and gVisor (runsc's sandbox, gofer and container processes), all running the
// same busybox `sleep` bundle at the same time.
//
//   node dist/bench/memory.js     (make bench)
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { repoRoot } from "../test/integration/harness/moat-cli.js";
import { busyboxBundle } from "./support/baselines.js";
import { pidsMatching, pssMiB, withDescendants } from "./support/pss.js";
import { report } from "./support/report.js";
import { summarize } from "./support/stats.js";

const SETTLE_MS = 3000;
const work = mkdtempSync(join(tmpdir(), "moat-bench-memory-"));
const moat = join(repoRoot, "bin", "moat");
const moatRoot = join(work, "moat");
const runcRoot = join(work, "runc");
const runscRoot = join(work, "runsc");

const sum = (pids: number[]) => pids.reduce((total, pid) => total + pssMiB(pid), 0);

try {
  const bundle = busyboxBundle(join(work, "bundle"), ["/bin/busybox", "sleep", "100000"]);

  // moat: create leaves the stand-in behind; its stdio goes nowhere here.
  execFileSync(moat, ["--root", moatRoot, "create", "--bundle", bundle, "--pid-file", join(work, "moat.pid"), "idle"], { stdio: ["ignore", "ignore", "inherit"] });
  execFileSync(moat, ["--root", moatRoot, "start", "idle"]);
  // runc: create and start; the container's process is the only one left.
  execFileSync("runc", ["--root", runcRoot, "create", "--bundle", bundle, "idle"], { stdio: ["ignore", "ignore", "inherit"] });
  execFileSync("runc", ["--root", runcRoot, "start", "idle"]);
  // gVisor: the same, with the ptrace platform (no KVM here).
  const runsc = spawn("runsc", ["--root", runscRoot, "--platform=ptrace", "--network=none", "run", "--detach", "--bundle", bundle, "idle"], { stdio: ["ignore", "ignore", "inherit"] });
  await new Promise((resolve) => runsc.once("exit", resolve));
  await sleep(SETTLE_MS);

  const standIn = Number(readFileSync(join(work, "moat.pid"), "utf8"));
  const qemu = pidsMatching(`qemu-system.*moat-idle,`);
  const daemon = pidsMatching(`moatd.mjs --root ${moatRoot}`);
  const runcState = JSON.parse(execFileSync("runc", ["--root", runcRoot, "state", "idle"], { encoding: "utf8" })) as { pid: number };
  const gvisor = withDescendants(pidsMatching(`--root=${runscRoot} `));
  const figures = {
    moatQemu: sum(qemu),
    moatStandIn: pssMiB(standIn),
    moatDaemon: sum(daemon),
    runc: pssMiB(runcState.pid),
    gvisor: sum(gvisor),
  };
  const moatTotal = figures.moatQemu + figures.moatStandIn + figures.moatDaemon;
  const row = (name: string, mib: number) => ({ name, summary: summarize([mib]) });
  report(
    "memory",
    "Host memory (PSS, MiB) of one idle busybox container",
    [
      row("moat: all (QEMU + stand-in + moatd)", moatTotal),
      row("  moat: QEMU (guest RAM touched + QEMU)", figures.moatQemu),
      row("  moat: moat-standin", figures.moatStandIn),
      row("  moat: moatd (one daemon, 1 container)", figures.moatDaemon),
      row("runc: the container's process", figures.runc),
      row("gVisor runsc (ptrace): sandbox + gofer + process", figures.gvisor),
    ],
    "moat: all (QEMU + stand-in + moatd)",
    { measure: "PSS from /proc/<pid>/smaps_rollup", pids: { qemu, standIn, daemon, runc: runcState.pid, gvisor } },
    "MiB",
  );
} finally {
  spawnSyncQuiet(moat, ["--root", moatRoot, "delete", "--force", "idle"]);
  spawnSyncQuiet("runc", ["--root", runcRoot, "delete", "--force", "idle"]);
  spawnSyncQuiet("runsc", ["--root", runscRoot, "delete", "--force", "idle"]);
  for (const pid of pidsMatching(`moatd.mjs --root ${moatRoot}`)) process.kill(pid, "SIGTERM");
  rmSync(work, { recursive: true, force: true });
}

function spawnSyncQuiet(command: string, args: string[]): void {
  try {
    execFileSync(command, args, { stdio: "ignore" });
  } catch {
    // Cleanup of something that may not exist.
  }
}
