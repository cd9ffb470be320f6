// bench/jail: what confinement adds to a VM's start (docs/security.md). moat-jail does its
// whole work (pid, mount, ipc, uts and network namespaces, the tmpfs root with a VM's binds,
// pivot_root, /proc, capabilities, no_new_privs, the pid file) and execs /usr/bin/true in
// place of QEMU; beside it, /usr/bin/true exec'd directly. The difference is the jail's cost
// on a start; QEMU's own start is the same either way.
//
//   node dist/bench/jail.js [--runs N]
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { vmmLaunch, loadConfig } from "../src/host/config/index.js";
import { jailArgs, vmPaths, type VmSpec } from "../src/host/hypervisor/index.js";
import { report } from "./support/report.js";
import { summarize } from "./support/stats.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "200" } } });
const runs = Number(values.runs);
const work = mkdtempSync(join(tmpdir(), "moat-bench-jail-"));
const config = loadConfig();
const paths = vmPaths(join(work, "state"), join(work, "sockets"));
for (const dir of [paths.socketDir, paths.logDir, paths.sharesDir]) mkdirSync(dir, { recursive: true });
writeFileSync(join(work, "vmlinux"), "");
writeFileSync(join(work, "rootfs.img"), "");
const spec: VmSpec = {
  id: "bench", machine: "microvm", accelerator: "tcg", vcpus: 1, memoryMiB: 512, kernelPath: join(work, "vmlinux"),
  rootfs: { kind: "image", path: join(work, "rootfs.img") }, extraKernelParams: [], debug: false, sharedFs: "virtio-9p", shares: [], hostTscKhz: undefined, paths,
};
const { jailPath } = vmmLaunch(config);

function timed(command: string, args: string[]): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "inherit"] });
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`${command} exited ${code}`))));
  });
}

const samples = { direct: [] as number[], jailed: [] as number[], jailedUser: [] as number[] };
try {
  for (let run = 0; run < runs; run++) {
    samples.direct.push(await timed("/usr/bin/true", []));
    samples.jailed.push(await timed(jailPath, [...jailArgs(spec, "/usr/bin/true", 0, undefined), "/usr/bin/true"]));
    samples.jailedUser.push(await timed(jailPath, [...jailArgs({ ...spec, sharedFs: "virtio-fs" }, "/usr/bin/true", 0, { uid: 65534, gid: 65534 }), "/usr/bin/true"]));
  }
} finally {
  // The 9p export was bound onto itself by the jail, as for a VM.
  spawn("umount", ["--lazy", paths.sharesDir], { stdio: "ignore" }).once("exit", () => rmSync(work, { recursive: true, force: true }));
}
report(
  "jail",
  "What moat-jail adds to a start: spawn to exit of /usr/bin/true, exec'd directly and through the jail a VM gets",
  [
    { name: "through moat-jail (root, 9p file server's capabilities)", summary: summarize(samples.jailed) },
    { name: "through moat-jail (vmm_user, no capabilities)", summary: summarize(samples.jailedUser) },
    { name: "exec'd directly", summary: summarize(samples.direct) },
  ],
  "exec'd directly",
  { runs },
);
