// bench/shared-fs: 9p against virtio-fs (`[hypervisor.qemu] shared_fs`), beside runc and
// gVisor on the same bundles, interleaved in the same run (issue 3):
// - start: `moat run --bundle` of a busybox bundle running /bin/true (VM boot, root shared,
//   container created, started, exited, VM down), against `runc run` and `runsc run`;
// - file I/O inside the container, on a bind-mounted host directory (and, for "moat 9p root",
//   in the root file system, which 9p serves through its cached device): fs-work.c's phases
//   (64 MiB written with fsync, 64 MiB read, a walk of 1010 entries with lstat, 1000 small
//   files read, 1000 created, 1000 stat'ed), timed in the container itself so that boot does
//   not count.
//
//   node dist/bench/shared-fs.js [--runs N] [--cache-modes] [--proxy] [--only NAME,NAME...]
//
// --cache-modes adds virtio-fs with virtiofsd's other cache modes (`virtio_fs_cache`
// "always" and "never"; the default is "auto"). --proxy adds 9p served by the jailed
// virtfs-proxy-helper (`virtfs_server = "proxy"`), on a volume and on the root. --only keeps
// the variants named (runc, the baseline, always runs).
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { repoRoot } from "../test/integration/harness/moat-cli.js";
import { busyboxBundle } from "./support/baselines.js";
import { writeResult } from "./support/report.js";
import { summarize, type Summary } from "./support/stats.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "7" }, "cache-modes": { type: "boolean", default: false }, proxy: { type: "boolean", default: false }, only: { type: "string" } } });
const runs = Number(values.runs);
const work = mkdtempSync(join(tmpdir(), "moat-bench-shared-fs-"));
const moat = join(repoRoot, "bin", "moat");

/** moat's variants by their [hypervisor.qemu] settings; the others are runc and gVisor. */
const MOAT_VARIANTS: Record<string, string> = {
  "moat 9p": 'shared_fs = "virtio-9p"',
  "moat 9p root": 'shared_fs = "virtio-9p"',
  "moat virtio-fs": 'shared_fs = "virtio-fs"',
  ...(values["cache-modes"]
    ? { "virtio-fs always": 'shared_fs = "virtio-fs"\nvirtio_fs_cache = "always"', "virtio-fs never": 'shared_fs = "virtio-fs"\nvirtio_fs_cache = "never"' }
    : {}),
  ...(values.proxy ? { "9p proxy": 'shared_fs = "virtio-9p"\nvirtfs_server = "proxy"', "9p proxy root": 'shared_fs = "virtio-9p"\nvirtfs_server = "proxy"' } : {}),
};
type Variant = string;
/**
 * Variants whose file I/O runs in the container's root file system instead of a volume: with
 * 9p the root goes through the device the guest caches (cache=loose), volumes through the one
 * it does not (cache=mmap, so that host-side changes are seen; docs/storage.md).
 */
const ON_ROOT = new Set<Variant>(["moat 9p root", "9p proxy root"]);
const BASELINE: Variant = "runc";
const only = values.only?.split(",").map((name) => name.trim());
const VARIANTS: Variant[] = [...Object.keys(MOAT_VARIANTS), BASELINE, "gVisor (ptrace)"].filter((variant) => variant === BASELINE || !only || only.includes(variant));

/** Runs `command args` to completion; its stdout, or an error with its stderr. */
function run(command: string, args: string[]): { ms: number; stdout: string } {
  const started = performance.now();
  const result = spawnSync(command, args, { encoding: "utf8" });
  const ms = performance.now() - started;
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")}: exit ${result.status}: ${result.stderr.trim()}`);
  return { ms, stdout: result.stdout };
}

/** The same bundle run by each variant to completion; `id` must be unique for runc and runsc. */
function runner(variant: Variant, index: number): (bundle: string, id: string) => { ms: number; stdout: string } {
  const settings = MOAT_VARIANTS[variant];
  if (settings !== undefined) {
    const config = join(work, `moat-${index}.toml`);
    writeFileSync(config, `[hypervisor.qemu]\n${settings}\n`);
    return (bundle) => run(moat, ["--root", join(work, "moat"), "--config", config, "run", "--bundle", bundle]);
  }
  if (variant === BASELINE) return (bundle, id) => run("runc", ["--root", join(work, "runc"), "run", "--bundle", bundle, id]);
  return (bundle, id) => run("runsc", ["--root", join(work, "runsc"), "--platform=ptrace", "--network=none", "run", "--bundle", bundle, id]);
}

/**
 * A bundle running fs-work on /work, a bind mount of `data`, which holds in.bin and tree/; or,
 * `onRoot`, on /work in its root file system, which is then `data`.
 */
function workBundle(dir: string, data: string, fsWork: string, onRoot: boolean): string {
  busyboxBundle(dir, ["/fs-work", "/work"]);
  copyFileSync(fsWork, join(dir, "rootfs", "fs-work"));
  chmodSync(join(dir, "rootfs", "fs-work"), 0o755);
  mkdirSync(join(dir, "rootfs", "work"));
  const configPath = join(dir, "config.json");
  const config = JSON.parse(readFileSync(configPath, "utf8")) as { mounts: object[]; root: { readonly: boolean } }; // runc spec always writes both
  if (onRoot) config.root.readonly = false;
  else config.mounts.push({ destination: "/work", type: "bind", source: data, options: ["rbind", "rw"] });
  writeFileSync(configPath, JSON.stringify(config));
  mkdirSync(join(data, "tree"), { recursive: true });
  writeFileSync(join(data, "in.bin"), Buffer.alloc(64 * 1024 * 1024, "y"));
  const small = Buffer.alloc(1024, "z");
  for (let d = 0; d < 10; d++) {
    mkdirSync(join(data, "tree", `d${d}`));
    for (let f = 0; f < 100; f++) writeFileSync(join(data, "tree", `d${d}`, `f${f}`), small);
  }
  return dir;
}

function parsePhases(stdout: string): Map<string, number> {
  return new Map(
    stdout
      .trim()
      .split("\n")
      .map((line) => line.split(" "))
      .map(([phase, ms]) => [phase ?? "", Number(ms)]),
  );
}

function printTable(title: string, rows: Array<[Variant, Summary]>): void {
  const baseline = rows.find(([variant]) => variant === BASELINE)?.[1].medianMs ?? Number.NaN;
  process.stdout.write(`\n${title}\n${"".padEnd(16)}  median ms   min..max ms      ÷ runc\n`);
  for (const [variant, summary] of rows) {
    const range = `${summary.minMs.toFixed(0)}..${summary.maxMs.toFixed(0)}`;
    process.stdout.write(`${variant.padEnd(16)}  ${summary.medianMs.toFixed(1).padStart(9)}   ${range.padEnd(15)}  ${(summary.medianMs / baseline).toFixed(1).padStart(6)}x\n`);
  }
}

try {
  const fsWork = join(work, "fs-work");
  execFileSync("gcc", ["-static", "-O2", "-Wall", "-Werror", "-o", fsWork, join(repoRoot, "bench", "support", "fs-work.c")]);
  const startBundle = busyboxBundle(join(work, "start"), ["/bin/true"]);
  const variants = VARIANTS.map((variant, index) => {
    const dir = join(work, `bundle-${index}`);
    const onRoot = ON_ROOT.has(variant);
    const data = onRoot ? join(dir, "rootfs", "work") : join(work, `data-${index}`);
    return { variant, data, bundle: workBundle(dir, data, fsWork, onRoot), run: runner(variant, index) };
  });
  const start = new Map<Variant, number[]>(VARIANTS.map((variant) => [variant, []]));
  const phases = new Map<string, Map<Variant, number[]>>();
  process.stdout.write(`bench/shared-fs: ${runs} runs, each variant in turn\n`);
  for (let round = 0; round < runs; round++) {
    for (const { variant, run: runVariant } of variants) start.get(variant)?.push(runVariant(startBundle, `start-${round}`).ms);
    for (const { variant, data, bundle, run: runVariant } of variants) {
      rmSync(join(data, "small"), { recursive: true, force: true });
      rmSync(join(data, "out.bin"), { force: true });
      for (const [phase, ms] of parsePhases(runVariant(bundle, `work-${round}`).stdout)) {
        if (!phases.has(phase)) phases.set(phase, new Map(VARIANTS.map((each) => [each, []])));
        phases.get(phase)?.get(variant)?.push(ms);
      }
    }
    process.stdout.write(`  round ${round + 1}/${runs}: start ${VARIANTS.map((variant) => `${variant} ${start.get(variant)?.at(-1)?.toFixed(0)} ms`).join(", ")}\n`);
  }
  const summaries = (samples: Map<Variant, number[]>): Array<[Variant, Summary]> => VARIANTS.map((variant) => [variant, summarize(samples.get(variant) ?? [])]);
  const results: Record<string, Record<string, Summary & { overRunc: number }>> = {};
  const tables: Array<[string, Map<Variant, number[]>]> = [["start: run --bundle /bin/true, whole command", start]];
  for (const [phase, samples] of phases) tables.push([`file I/O in the container, bind mount ("root" variants: root file system): ${phase}`, samples]);
  for (const [name, samples] of tables) {
    const rows = summaries(samples);
    printTable(name, rows);
    const baseline = rows.find(([variant]) => variant === BASELINE)?.[1].medianMs ?? Number.NaN;
    results[name] = Object.fromEntries(rows.map(([variant, summary]) => [variant, { ...summary, overRunc: Math.round((summary.medianMs / baseline) * 10) / 10 }]));
  }
  writeResult(values["cache-modes"] ? "shared-fs-cache-modes" : "shared-fs", {
    context: { what: "9p (volumes cache=mmap, root cache=loose) vs virtio-fs, each a cold VM per run; runc and gVisor on the same bundles", moatVariants: MOAT_VARIANTS, onRoot: [...ON_ROOT], runs },
    unit: "ms",
    results,
  });
} finally {
  rmSync(work, { recursive: true, force: true });
}
