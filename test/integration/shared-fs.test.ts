// Issue 3: a container's root file system and bind-mount sources reach the guest over 9p or
// virtio-fs (`[hypervisor.qemu] shared_fs`). Each kind is run on the same work: writes through
// a read-write bind reach the host, a read-only bind refuses writes even to a guest that
// remounts it read-write (the host side enforces it), and nothing is left afterwards: no
// virtiofsd, no socket, no state directory.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { after, afterEach, test } from "node:test";
import { busyboxBundle } from "./harness/bundle.js";
import { runMoat } from "./harness/moat-cli.js";
import { helperBinary } from "./harness/c-helper.js";
import { createAsConmon } from "./harness/oci-runtime.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
afterEach(() => workspace.assertNothingLeft(DAEMON_FILES));
after(async () => {
  await workspace.stopDaemon();
  workspace.remove();
});

const configs = {
  "virtio-fs": workspace.configFile("virtio-fs", '[hypervisor.qemu]\nshared_fs = "virtio-fs"\n'),
  "virtio-9p": workspace.configFile("virtio-9p", '[hypervisor.qemu]\nshared_fs = "virtio-9p"\n'),
};

/** Enough for a hostile container to remount its mounts read-write. */
const CAPABILITIES = ["CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID"];

for (const [kind, config] of Object.entries(configs)) {
  test(`${kind}: a read-write bind reaches the host, a read-only one refuses writes even when the guest remounts it`, async () => {
    const dir = `${workspace.dir}/${kind}`;
    mkdirSync(`${dir}/ro`, { recursive: true });
    mkdirSync(`${dir}/rw`);
    writeFileSync(`${dir}/ro/in`, "from the host\n");
    const script = [
      "cat /ro/in",
      "echo out > /rw/out",
      "touch /ro/x 2>/dev/null && echo ro-writable",
      // A hostile container with CAP_SYS_ADMIN: make its read-only mount read-write, then write.
      "mount -o remount,rw /ro && echo remounted",
      "touch /ro/hostile 2>/dev/null && echo hostile-write",
      "echo root > /on-root",
    ].join("; ");
    const bundle = busyboxBundle(`${dir}/bundle`, ["sh", "-c", script], (spec) => {
      spec.mounts = [
        ...(spec.mounts ?? []),
        { destination: "/ro", type: "bind", source: `${dir}/ro`, options: ["rbind", "ro"] },
        { destination: "/rw", type: "bind", source: `${dir}/rw`, options: ["rbind", "rw"] },
      ];
      spec.process.capabilities = { bounding: CAPABILITIES, effective: CAPABILITIES, permitted: CAPABILITIES };
    });
    const result = await runMoat(["--config", config, "run", "--bundle", bundle]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "from the host\nremounted\n", "the guest may remount /ro, but no write may reach the host");
    assert.equal(readFileSync(`${dir}/rw/out`, "utf8"), "out\n");
    assert.equal(readFileSync(`${bundle}/rootfs/on-root`, "utf8"), "root\n");
    assert.ok(!existsSync(`${dir}/ro/x`) && !existsSync(`${dir}/ro/hostile`));
  });

  test(`${kind}: the built-in image runs read-only under an overlay in guest memory`, async () => {
    const result = await runMoat(["--config", config, "run", "--rm", "busybox", "sh", "-c", "echo x > /written && cat /written && ls /bin/busybox"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "x\n/bin/busybox\n");
  });
}

test("virtio-fs on q35 uses the PCI device", async () => {
  const config = workspace.configFile("virtio-fs-q35", '[hypervisor.qemu]\nshared_fs = "virtio-fs"\nmachine_type = "q35"\n');
  const result = await runMoat(["--config", config, "run", "--rm", "busybox", "ls", "/bin/busybox"]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "/bin/busybox\n");
});

test("virtio-fs through moatd: virtiofsd outlives a killed moatd with its VM, and goes with the container", async () => {
  const config = configs["virtio-fs"];
  const bundle = busyboxBundle(`${workspace.dir}/oci`, ["sh", "-c", "echo before; sleep 6; cat /etc/motd-from-share; exit 5"]);
  writeFileSync(`${bundle}/rootfs/etc/motd-from-share`, "after\n");
  process.env.MOAT_CONFIG = config; // createAsConmon runs `moat create` with this environment
  let container;
  try {
    container = createAsConmon(helperBinary(workspace.dir, "subreaper"), workspace.stateRoot, bundle, "vfs-oci", "");
    assert.equal(await container.created, 0, container.stderr());
  } finally {
    delete process.env.MOAT_CONFIG;
  }
  const moat = (args: string[]) => runMoat(["--config", config, ...args]);
  assert.equal((await moat(["start", "vfs-oci"])).code, 0);
  const daemons = workspace.virtiofsdProcesses();
  assert.ok(daemons.length >= 1, "a virtiofsd serves the root");

  const [moatd] = workspace.daemonProcesses();
  process.kill(Number(moatd?.split(" ")[0]), "SIGKILL");
  await sleep(200);
  assert.deepEqual(workspace.virtiofsdProcesses(), daemons, "virtiofsd outlives moatd, as QEMU does");
  const state = await moat(["state", "vfs-oci"]); // a new moatd, which adopts the VM and its virtiofsd
  assert.equal(state.code, 0, `${state.stderr}\nmoatd.log:\n${workspace.daemonLog()}`);
  assert.equal((await container.standIn).exitStatus, 5, `moatd.log:\n${workspace.daemonLog()}`);
  // Only the end: output relayed around the moment moatd died may be lost (daemon-restart.test.ts checks the same way).
  assert.match(container.stdout(), /after\n$/, "the share still served after the restart");

  const deleted = await moat(["delete", "vfs-oci"]);
  assert.equal(deleted.code, 0, deleted.stderr);
});

test("moatd killed mid-create once a virtiofsd runs: the next moatd kills the virtiofsd", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/halfmade`, ["true"]);
  const creating = runMoat(["--config", configs["virtio-fs"], "create", "--bundle", bundle, "vfs-halfmade"]);
  while (workspace.virtiofsdProcesses().length === 0) await sleep(5);
  const [moatd] = workspace.daemonProcesses();
  process.kill(Number(moatd?.split(" ")[0]), "SIGKILL");
  assert.equal((await creating).code, 1);
  const list = await runMoat(["--config", configs["virtio-fs"], "list", "-q"]); // a new moatd cleans up what it cannot adopt
  assert.equal(list.code, 0, list.stderr);
  assert.equal(list.stdout, "");
  // moatd answers while it still removes what the killed one left (it adopts and discards in
  // parallel with serving): the half-made sandbox is gone once its state directory is.
  const stateDir = `${workspace.stateRoot}/vfs-halfmade`;
  for (let waited = 0; existsSync(stateDir); waited += 50) {
    if (waited > 120_000) assert.fail(`${stateDir} still there; moatd.log:\n${workspace.daemonLog()}`);
    await sleep(50);
  }
});

test("a missing virtiofsd is one clear error naming the key and the fix, and starts nothing", async () => {
  const config = workspace.configFile("no-virtiofsd", '[hypervisor.qemu]\nshared_fs = "virtio-fs"\nvirtio_fs_daemon = "/nonexistent/virtiofsd"\n');
  const result = await runMoat(["--config", config, "run", "--rm", "busybox", "true"]);
  assert.equal(result.code, 1);
  const lines = result.stderr.trimEnd().split("\n");
  assert.match(lines[0] ?? "", /^moat: .*no-virtiofsd.toml: hypervisor.qemu.virtio_fs_daemon: \/nonexistent\/virtiofsd is not an executable file$/);
  assert.match(lines[1] ?? "", /^Hint: apt-get install qemu-system-x86 .*virtio_fs_daemon.*shared_fs = "virtio-9p"/);
  assert.equal(lines.length, 2, result.stderr);
  const check = await runMoat(["--config", config, "check"]);
  assert.equal(check.code, 1);
  assert.match(check.stdout, /^FAIL shares +.*virtio_fs_daemon: \/nonexistent\/virtiofsd is not an executable file$/m);
});

test("a virtiofsd that dies at start is reported with what it said, and leaves nothing", async () => {
  const failing = `${workspace.dir}/failing-virtiofsd`;
  writeFileSync(failing, "#!/bin/sh\necho 'virtiofsd: cannot serve this' >&2\nexit 3\n", { mode: 0o755 });
  const config = workspace.configFile("failing-virtiofsd", `[hypervisor.qemu]\nshared_fs = "virtio-fs"\nvirtio_fs_daemon = "${failing}"\n`);
  const result = await runMoat(["--config", config, "run", "--rm", "busybox", "true"]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /virtiofsd for share s0: exited \(exit status 3\): virtiofsd: cannot serve this/);
});

test("a QEMU that fails after its virtiofsd started takes the virtiofsd with it", async () => {
  const bogusKernel = `${workspace.dir}/not-a-kernel`;
  writeFileSync(bogusKernel, "this is not a kernel\n");
  const config = workspace.configFile("vfs-bogus-kernel", `[hypervisor.qemu]\nshared_fs = "virtio-fs"\nkernel = "${bogusKernel}"\n`);
  const result = await runMoat(["--config", config, "run", "--rm", "busybox", "true"]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /QEMU exited while starting \(exit status 1\): .*invalid kernel header/);
});
