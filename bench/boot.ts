// bench/boot: a sandbox VM to agent ready, booted cold and restored from a VM template, beside
// the floor (a bare QEMU boot of the same kernel, same machine and parameters, to a busybox
// shell that prints a marker) and beside runc and gVisor starting a busybox container on the
// same machine in the same run.
//
//   node dist/bench/boot.js [--runs N]     (make bench)
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { loadConfig } from "../src/host/config/index.js";
import { chooseAccelerator, hostTscKhz, qemuArgs, vmPaths, type VmSpec } from "../src/host/hypervisor/index.js";
import { startSandboxVm } from "../src/host/sandbox/index.js";
import { busyboxBundle, gvisorBaseline, runcBaseline } from "./support/baselines.js";
import { report } from "./support/report.js";
import { summarize } from "./support/stats.js";

const MARKER = "MOAT-FLOOR-READY";
const { values } = parseArgs({ options: { runs: { type: "string", default: "10" } } });
const runs = Number(values.runs);

const work = mkdtempSync(join(tmpdir(), "moat-bench-boot-"));
const config = loadConfig();
config.runtime.stateRoot = join(work, "state");
const cold = { ...config, factory: { ...config.factory, enableTemplate: false } };
const templated = { ...config, factory: { ...config.factory, enableTemplate: true } };

/** An initrd with busybox whose /init prints the marker and resets the VM (ending QEMU). */
function floorInitrd(): string {
  const tree = join(work, "floor");
  mkdirSync(join(tree, "bin"), { recursive: true });
  mkdirSync(join(tree, "dev"));
  copyFileSync("/bin/busybox", join(tree, "bin", "busybox"));
  symlinkSync("busybox", join(tree, "bin", "sh"));
  writeFileSync(join(tree, "init"), `#!/bin/sh\n/bin/busybox mount -t devtmpfs dev /dev\n/bin/busybox echo ${MARKER} > /dev/ttyS0\n/bin/busybox reboot -f\n`, { mode: 0o755 });
  const initrd = join(work, "floor.cpio");
  execFileSync("sh", ["-c", `cd '${tree}' && find . | cpio --quiet -o -H newc > '${initrd}'`]);
  return initrd;
}

async function floorBoot(spec: VmSpec): Promise<number> {
  rmSync(spec.paths.stateDir, { recursive: true, force: true });
  rmSync(spec.paths.socketDir, { recursive: true, force: true });
  // The same devices as a sandbox's VM, the 9p device's (empty) export included.
  mkdirSync(spec.paths.sharesDir, { recursive: true });
  mkdirSync(spec.paths.socketDir, { recursive: true });
  const started = performance.now();
  const child = spawn(config.qemu.path, qemuArgs(spec), { stdio: "ignore" });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  try {
    for (;;) {
      if (existsSync(spec.paths.consoleLog) && readFileSync(spec.paths.consoleLog, "utf8").includes(MARKER)) return performance.now() - started;
      if (child.exitCode !== null) throw new Error(`floor VM exited before the marker: ${readFileSync(spec.paths.consoleLog, "utf8").slice(-300)}`);
      if (performance.now() - started > 30_000) throw new Error("floor VM printed no marker within 30 s");
      await sleep(2);
    }
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
    await exited;
  }
}

async function main(): Promise<void> {
  const accelerator = await chooseAccelerator();
  const floorSpec: VmSpec = {
    id: "floor",
    machine: config.qemu.machineType,
    accelerator: accelerator.accelerator,
    vcpus: config.qemu.defaultVcpus,
    memoryMiB: config.qemu.defaultMemoryMiB,
    kernelPath: config.qemu.kernel,
    rootfs: { kind: "initrd", path: floorInitrd() },
    extraKernelParams: ["rdinit=/init"],
    debug: false,
    sharedFs: config.qemu.sharedFs,
    shares: [],
    hostTscKhz: await hostTscKhz(),
    paths: vmPaths(join(work, "floor-state"), join(work, "floor-sockets")),
  };
  const bundle = busyboxBundle(join(work, "bundle"), ["/bin/true"]);
  const runc = runcBaseline(bundle, join(work, "runc"));
  const gvisor = gvisorBaseline(bundle, join(work, "runsc"));

  const samples = { moat: [] as number[], template: [] as number[], floor: [] as number[], runc: [] as number[], gvisor: [] as number[] };
  process.stdout.write(`bench/boot: ${runs} runs, ${accelerator.accelerator} (${accelerator.reason})\n`);
  const first = await startSandboxVm(templated, "bench-template"); // builds the template, not measured
  if (first.timings.start.kind === "cold") throw new Error(`no VM template here: ${first.timings.start.reason}`);
  await first.shutdown();
  const readyMs = async (which: typeof config, id: string) => {
    const sandbox = await startSandboxVm(which, id);
    await sandbox.shutdown();
    return sandbox.timings.agentReadyMs;
  };
  for (let run = 0; run < runs; run++) {
    // Interleaved, so that a noisy moment on this shared machine hits every row alike.
    samples.floor.push(await floorBoot(floorSpec));
    samples.moat.push(await readyMs(cold, `bench-${run}`));
    samples.template.push(await readyMs(templated, `bench-t${run}`));
    samples.runc.push(runc.run(`bench-${run}`));
    samples.gvisor.push(gvisor.run(`bench-${run}`));
    process.stdout.write(`  run ${run + 1}/${runs}: moat cold ${samples.moat.at(-1)!.toFixed(0)} ms, template ${samples.template.at(-1)!.toFixed(0)} ms, floor ${samples.floor.at(-1)!.toFixed(0)} ms\n`); // each array just got a sample
  }
  report(
    "boot",
    "Sandbox VM to ready: moat cold boot and template restore (QEMU spawn → agent answers, identity taken) vs the floor (same kernel to a shell) vs containers started by runc and gVisor",
    [
      { name: "moat: cold boot to agent ready", summary: summarize(samples.moat) },
      { name: "moat: restore from a VM template to agent ready", summary: summarize(samples.template) },
      { name: "floor: bare QEMU, same kernel, to shell", summary: summarize(samples.floor) },
      { name: "runc run /bin/true", summary: summarize(samples.runc) },
      { name: "gVisor runsc run /bin/true (ptrace)", summary: summarize(samples.gvisor) },
    ],
    "moat: cold boot to agent ready",
    {
      accelerator: accelerator.accelerator,
      acceleratorReason: accelerator.reason,
      machine: config.qemu.machineType,
      vcpus: config.qemu.defaultVcpus,
      memoryMiB: config.qemu.defaultMemoryMiB,
      rootfs: config.qemu.initrd ? "initrd" : "erofs image on virtio-blk",
    },
  );
}

try {
  await main();
} finally {
  rmSync(work, { recursive: true, force: true });
}
