// Issue 13 item 1: every QEMU runs confined by moat-jail (src/host/hypervisor/moat-jail.c).
// Checked from the host on running sandboxes: its capabilities, no_new_privs and seccomp in
// /proc/PID/status, its own mount, pid, ipc, network and uts namespaces, a filesystem holding
// only what its VM needs, no descriptor but its own, the sandbox's cgroup, and its exit seen
// through the launcher. Then the unprivileged mode (`vmm_user`) with virtio-fs, and from
// inside a root guest what its 9p export shows.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { after, afterEach, test } from "node:test";
import { hostCgroupTarget, releaseHostCgroup } from "../../src/host/cgroup/index.js";
import { parseConfig } from "../../src/host/config/index.js";
import { startSandboxVm, type SandboxVm } from "../../src/host/sandbox/index.js";
import { busyboxBundle } from "./harness/bundle.js";
import { runMoat } from "./harness/moat-cli.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
afterEach(() => workspace.assertNothingLeft(DAEMON_FILES));
after(async () => {
  await workspace.stopDaemon();
  workspace.remove();
});

/** CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID, CAP_MKNOD. */
const FILE_SERVER_CAPS = [0n, 1n, 2n, 3n, 4n, 27n].reduce((mask, bit) => mask | (1n << bit), 0n);
/** What every jail holds besides the VM's own paths. */
const JAIL_BASE = ["/", "/usr", "/dev/null", "/dev/zero", "/dev/random", "/dev/urandom", "/etc/ld.so.cache", "/proc"];

function statusOf(pid: number): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/status`, "utf8").split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return fields;
}

/** The mount points /proc/PID/mountinfo lists (as that process sees them), sorted. */
function mountPointsOf(pid: number): string[] {
  return readFileSync(`/proc/${pid}/mountinfo`, "utf8")
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => line.split(" ")[4] ?? "")
    .sort();
}

interface Expected {
  caps: bigint;
  uid: number;
  /** The VM's own paths in its jail, besides JAIL_BASE. */
  paths: string[];
  /** Those of them that are read-only. */
  readOnly: string[];
}

function assertConfined(sandbox: SandboxVm, expected: Expected): void {
  const { pid } = sandbox.vm;
  const status = statusOf(pid);
  assert.match(readFileSync(`/proc/${pid}/cmdline`, "utf8"), /qemu-system/, "the pid moatd holds is QEMU's");
  assert.equal(BigInt(`0x${status.get("CapEff")}`), expected.caps, "effective capabilities");
  assert.equal(BigInt(`0x${status.get("CapPrm")}`), expected.caps, "permitted capabilities");
  assert.equal(BigInt(`0x${status.get("CapBnd")}`), expected.caps, "bounding set");
  assert.equal(BigInt(`0x${status.get("CapInh")}`), 0n, "inheritable");
  assert.equal(BigInt(`0x${status.get("CapAmb")}`), 0n, "ambient");
  assert.equal(status.get("NoNewPrivs"), "1");
  assert.equal(status.get("Seccomp"), "2", "QEMU's -sandbox filter is on");
  assert.deepEqual(status.get("Uid")?.split(/\s+/), Array(4).fill(String(expected.uid)));
  assert.deepEqual(status.get("NSpid")?.split(/\s+/), [String(pid), "1"], "QEMU is pid 1 of its own pid namespace");
  const parent = Number(status.get("PPid"));
  assert.match(readFileSync(`/proc/${parent}/cmdline`, "utf8").split("\0")[0] ?? "", /\/moat-jail$/, "its parent is the launcher");
  for (const ns of ["mnt", "pid", "ipc", "net", "uts"]) {
    assert.notEqual(readlinkSync(`/proc/${pid}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), `its own ${ns} namespace`);
  }
  const allowed = [...JAIL_BASE, ...expected.paths];
  const points = mountPointsOf(pid);
  const { sharesDir } = sandbox.vm.paths;
  // Shares mounted into the 9p export while the VM runs are there too, and only those.
  assert.deepEqual(points.filter((point) => !point.startsWith(`${sharesDir}/`)), [...allowed].sort(), "the jail holds only what the VM needs");
  assert.deepEqual(readdirSync(`/proc/${pid}/root/proc`).filter((name) => !/^\d+$/.test(name)).sort(), ["self", "thread-self"], "the jail's /proc has process directories only: no sys, sysrq-trigger, kcore");
  assert.deepEqual(readdirSync(`/proc/${pid}/root/proc`).filter((name) => /^\d+$/.test(name)), ["1"], "and only QEMU's");
  assert.ok(!existsSync(`/proc/${pid}/root${sandbox.vm.paths.pidFile}`), "the state directory is not in the jail");
  // Host binaries cannot be overwritten from the jail (CVE-2019-5736's class), nor the
  // kernel and image, nor any place in the 9p export outside the shares themselves.
  for (const point of ["/", "/usr", "/etc/ld.so.cache", ...expected.readOnly]) assert.match(mountOptionsOf(pid, point), /^ro,/, `${point} is read-only in the jail`);
  for (const point of allowed) assert.match(mountOptionsOf(pid, point), /nosuid/, `${point} is nosuid in the jail`);
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    if (/^(socket|pipe|anon_inode):/.test(target)) continue;
    assert.ok(
      allowed.some((path) => target === path || target.startsWith(`${path}/`)) || target === "/dev/kvm" || target === "/dev/net/tun" || target.startsWith("/memfd:"),
      `descriptor ${fd} of QEMU is ${target}, outside what its VM needs`,
    );
  }
}

/** The mount options QEMU's jail has at `point` ("ro,..." or "rw,..."). */
function mountOptionsOf(pid: number, point: string): string {
  const line = readFileSync(`/proc/${pid}/mountinfo`, "utf8").split("\n").find((entry) => entry.split(" ")[4] === point);
  return line?.split(" ")[5] ?? "(not mounted)";
}

function vmPathsOf(sandbox: SandboxVm, config: { kernel: string; rootfs: string }): string[] {
  const { paths } = sandbox.vm;
  return [config.kernel, config.rootfs, paths.socketDir, paths.logDir];
}

test("a 9p sandbox restored from a template: QEMU has the file server's capabilities only, its own namespaces, its jail's paths, the sandbox's cgroup", async () => {
  const config = workspace.config();
  const cgroupsPath = `/moat-test-confine-${process.pid}`;
  const stateDir = `${workspace.stateRoot}/confined`;
  const sandbox = await startSandboxVm(config, "confined", { hostCgroup: { target: hostCgroupTarget(cgroupsPath, stateDir), log: () => undefined } });
  try {
    assert.equal(sandbox.timings.start.kind, "template");
    const qemuArgs = readFileSync(`/proc/${sandbox.vm.pid}/cmdline`, "utf8").split("\0");
    const memoryFile = /mem-path=([^,]+)/.exec(qemuArgs.find((arg) => arg.includes("mem-path=")) ?? "")?.[1];
    assert.ok(memoryFile, "a clone's RAM is its template's file");
    const image = /file=([^,]+)/.exec(qemuArgs.find((arg) => arg.startsWith("id=rootfs,")) ?? "")?.[1] ?? "";
    const kernel = qemuArgs[qemuArgs.indexOf("-kernel") + 1] ?? "";
    assertConfined(sandbox, { caps: FILE_SERVER_CAPS, uid: 0, paths: [...vmPathsOf(sandbox, { kernel, rootfs: image }), sandbox.vm.paths.sharesDir, memoryFile], readOnly: [kernel, image, sandbox.vm.paths.sharesDir] });
    for (const line of readFileSync(`/proc/${sandbox.vm.pid}/cgroup`, "utf8").trim().split("\n")) {
      if (/^\d+:(name=systemd)?:/.test(line) && !line.startsWith("0::")) continue; // hierarchies with no controller are not placed
      assert.ok(line.endsWith(`:${cgroupsPath}`), `QEMU is in the sandbox's cgroup in every hierarchy: ${line}`);
    }
    assert.equal(await sandbox.agent.check().then(() => "answers"), "answers");
    // Killed from the host by the pid moatd holds: the launcher exits the same way, so the
    // sandbox sees QEMU's end as it always did.
    process.kill(sandbox.vm.pid, "SIGKILL");
    assert.deepEqual(await sandbox.vm.exited, { code: null, signal: "SIGKILL" });
  } finally {
    await sandbox.shutdown().catch(() => undefined);
    await releaseHostCgroup(stateDir).catch(() => undefined);
  }
});

test("a cold-booted 9p sandbox gets a share mounted after QEMU started (the export is a slave of the host's mount)", async () => {
  const config = parseConfig(readFileSync(workspace.configFile("cold", "[factory]\nenable_template = false\n"), "utf8"), "cold.toml");
  const sandbox = await startSandboxVm(config, "cold-confined");
  try {
    assert.equal(sandbox.timings.start.kind, "cold");
    const qemuArgs = readFileSync(`/proc/${sandbox.vm.pid}/cmdline`, "utf8").split("\0");
    const image = /file=([^,]+)/.exec(qemuArgs.find((arg) => arg.startsWith("id=rootfs,")) ?? "")?.[1] ?? "";
    const kernel = qemuArgs[qemuArgs.indexOf("-kernel") + 1] ?? "";
    assertConfined(sandbox, { caps: FILE_SERVER_CAPS, uid: 0, paths: [...vmPathsOf(sandbox, { kernel, rootfs: image }), sandbox.vm.paths.sharesDir], readOnly: [kernel, image, sandbox.vm.paths.sharesDir] });
    const source = `${workspace.dir}/late-share`;
    mkdirSync(source, { recursive: true });
    writeFileSync(`${source}/hello`, "from the host\n");
    const { bindShares } = await import("../../src/host/storage/index.js");
    await bindShares(sandbox.vm.paths.sharesDir, "c1", [{ tag: "late", hostPath: source, readOnly: true }], "test");
    assert.equal(readFileSync(`/proc/${sandbox.vm.pid}/root${sandbox.vm.paths.sharesDir}/c1/late/hello`, "utf8"), "from the host\n", "a share mounted later reaches the jail");
    // Read-only in the jail too: a share bound read-write and then remounted read-only would
    // be read-write in the jail's copy (the remount does not propagate).
    const late = readFileSync(`/proc/${sandbox.vm.pid}/mountinfo`, "utf8").split("\n").find((line) => line.split(" ")[4] === `${sandbox.vm.paths.sharesDir}/c1/late`);
    assert.match(late?.split(" ")[5] ?? "(not mounted)", /^ro,/, "the read-only share is read-only in QEMU's jail");
  } finally {
    const exit = await sandbox.shutdown();
    assert.deepEqual(exit, { code: 0, signal: null }, "the guest powered off; QEMU was not killed");
  }
});

test("vmm_user: a virtio-fs sandbox's QEMU runs as that user with no capability at all, and its container runs", async () => {
  const config = workspace.configFile("unprivileged", '[hypervisor.qemu]\nshared_fs = "virtio-fs"\nvmm_user = "65534:65534"\n');
  const parsed = parseConfig(readFileSync(config, "utf8"), config);
  const sandbox = await startSandboxVm(parsed, "unprivileged");
  try {
    const qemuArgs = readFileSync(`/proc/${sandbox.vm.pid}/cmdline`, "utf8").split("\0");
    const image = /file=([^,]+)/.exec(qemuArgs.find((arg) => arg.startsWith("id=rootfs,")) ?? "")?.[1] ?? "";
    const kernel = qemuArgs[qemuArgs.indexOf("-kernel") + 1] ?? "";
    assertConfined(sandbox, { caps: 0n, uid: 65534, paths: vmPathsOf(sandbox, { kernel, rootfs: image }), readOnly: [kernel, image] });
    assert.equal(sandbox.timings.start.kind, "cold", "virtio-fs sandboxes boot cold");
  } finally {
    const exit = await sandbox.shutdown();
    assert.deepEqual(exit, { code: 0, signal: null });
  }
  // A whole container, its root file system served by virtiofsd to the unprivileged QEMU.
  const bundle = busyboxBundle(`${workspace.dir}/unprivileged-bundle`, ["sh", "-c", "cat /etc/from-host; echo written > /out"]);
  writeFileSync(`${bundle}/rootfs/etc/from-host`, "shared\n");
  const result = await runMoat(["--config", config, "run", "--bundle", bundle]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "shared\n");
  assert.equal(readFileSync(`${bundle}/rootfs/out`, "utf8"), "written\n");
});

test("from a root guest: the VM's 9p export holds only this container's directory, and nothing can be planted in it", async () => {
  const dir = `${workspace.dir}/guest-view`;
  mkdirSync(`${dir}/vol`, { recursive: true });
  writeFileSync(`${dir}/vol/mine`, "x\n");
  // Root of the guest: the container shares the guest's pid namespace and may look into any
  // process's mount namespace (/proc/PID/root), the agent's among them, where the VM's whole
  // 9p export is mounted. There it tries to plant a symlink and a directory where the host
  // mounts the next container's shares (Kata's CVE-2020-2026): the export itself is
  // read-only in QEMU's jail.
  const caps = ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_CHROOT", "CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_FOWNER"];
  const inGuestRoot = [
    // The 9p mount whose root is the export's root, in whichever process's namespace holds it.
    `R=$(for p in /proc/[0-9]*; do awk -v p=$p '$4 == "/" && / - 9p / { print p "/root" $5 }' $p/mountinfo 2>/dev/null; done | head -1)`,
    `[ -n "$R" ] || { grep -h ' - 9p ' /proc/[0-9]*/mountinfo | sort -u >&2; exit 3; }`,
    "ls $R | wc -l",
    "cat $R/*/*/mine",
    "ln -s /etc $R/next 2>/dev/null && echo planted-symlink",
    "mkdir $R/next-dir 2>/dev/null && echo planted-dir",
    "ln -s /etc $R/$(ls $R)/s9 2>/dev/null && echo planted-in-container-dir",
    'for d in $R/*/*/; do [ -f "$d/mine" ] && echo y > "$d/written" && echo volume-writable; done',
  ].join("; ");
  const bundle = busyboxBundle(`${dir}/bundle`, ["sh", "-c", inGuestRoot], (spec) => {
    spec.mounts = [...(spec.mounts ?? []), { destination: "/vol", type: "bind", source: `${dir}/vol`, options: ["rbind", "rw"] }];
    spec.process.capabilities = { bounding: caps, effective: caps, permitted: caps };
    const linux = spec.linux as { namespaces: Array<{ type: string }> }; // the harness's spec has them
    linux.namespaces = linux.namespaces.filter((namespace) => namespace.type !== "pid");
  });
  // Its own configuration: the moatd an earlier test started may run with virtio-fs.
  const config = workspace.configFile("guest-view", '[hypervisor.qemu]\nshared_fs = "virtio-9p"\n');
  const result = await runMoat(["--config", config, "run", "--bundle", bundle]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "1\nx\nvolume-writable\n", `one container directory, reached through the jail's slave of the host's export; nothing planted in it; the volume itself writable (stderr: ${result.stderr})`);
  assert.equal(readFileSync(`${dir}/vol/written`, "utf8"), "y\n");
});
