import assert from "node:assert/strict";
import { test } from "node:test";
import { socketDirFor, vmPaths, type VmSpec } from "../hypervisor.js";
import { qemuArgs, shellQuote, throwawayTaps } from "./cmdline.js";
import { kernelParams } from "./kernel-params.js";

/** The sandbox's sockets: under the socket root, not its state directory. */
const SOCKETS = socketDirFor("/run/moat-sockets", "/run/moat/s1");

function spec(change: Partial<VmSpec> = {}): VmSpec {
  return {
    id: "s1",
    machine: "microvm",
    accelerator: "tcg",
    vcpus: 1,
    memoryMiB: 512,
    kernelPath: "/k/vmlinux",
    rootfs: { kind: "image", path: "/k/rootfs.erofs" },
    extraKernelParams: [],
    debug: false,
    sharedFs: "virtio-9p",
    shares: [],
    hostTscKhz: 2_300_000,
    paths: vmPaths("/run/moat/s1", "/run/moat-sockets"),
    ...change,
  };
}

/** The value that follows `flag` each time it appears. */
function valuesOf(args: string[], flag: string): string[] {
  return args.flatMap((arg, index) => (arg === flag ? [args[index + 1] ?? ""] : []));
}

test("microvm uses virtio-mmio devices and the TCG CPU model", () => {
  const args = qemuArgs(spec());
  assert.deepEqual(valuesOf(args, "-machine"), ["microvm,isa-serial=on"]);
  assert.deepEqual(valuesOf(args, "-accel"), ["tcg,tb-size=32"], "TCG's code buffer is bounded: it is private memory per VM");
  assert.deepEqual(valuesOf(args, "-cpu"), ["max"]);
  const devices = valuesOf(args, "-device");
  assert.ok(devices.includes("virtio-blk-device,drive=rootfs,id=rootfs-blk"));
  assert.ok(devices.includes("virtio-serial-device,id=serial0"));
  assert.ok(devices.includes("virtserialport,chardev=agent,name=agent.0,id=agent-port"));
  assert.ok(devices.includes("virtserialport,chardev=log,name=log.0,id=log-port"));
  assert.ok(args.includes("-no-reboot"), "a guest reset must end QEMU");
});

test("q35 uses PCI devices; KVM uses the host CPU model", () => {
  const args = qemuArgs(spec({ machine: "q35", accelerator: "kvm" }));
  assert.deepEqual(valuesOf(args, "-machine"), ["q35"]);
  assert.deepEqual(valuesOf(args, "-accel"), ["kvm"]);
  assert.deepEqual(valuesOf(args, "-cpu"), ["host"]);
  const devices = valuesOf(args, "-device");
  assert.ok(devices.includes("virtio-blk-pci,drive=rootfs,id=rootfs-blk"));
  assert.ok(devices.includes("virtio-serial-pci,id=serial0"));
});

test("sockets and logs live in the VM's state directory", () => {
  const args = qemuArgs(spec());
  assert.deepEqual(valuesOf(args, "-qmp"), [`unix:${SOCKETS}/qmp.sock,server=on,wait=off`]);
  assert.deepEqual(valuesOf(args, "-pidfile"), [], "moat-jail writes the pid file");
  assert.ok(valuesOf(args, "-chardev").includes(`socket,id=agent,path=${SOCKETS}/agent.sock,server=on,wait=off`));
  assert.ok(valuesOf(args, "-chardev").includes("file,id=console,path=/run/moat/s1/logs/console.log,append=on"));
});

test("an initrd replaces the root disk and init= becomes rdinit=", () => {
  const initrd = spec({ rootfs: { kind: "initrd", path: "/k/initrd.cpio" } });
  const args = qemuArgs(initrd);
  assert.deepEqual(valuesOf(args, "-initrd"), ["/k/initrd.cpio"]);
  assert.deepEqual(valuesOf(args, "-drive"), []);
  const params = kernelParams(initrd);
  assert.ok(params.includes("rdinit=/sbin/moat-init"));
  assert.ok(!params.some((param) => param.startsWith("root=")));
});

test("the guest's init is told a TCG guest, to pick the agent snapshot built for QEMU's -cpu max", () => {
  assert.ok(kernelParams(spec()).includes("MOAT_ACCEL=tcg"));
  assert.ok(!kernelParams(spec({ accelerator: "kvm" })).includes("MOAT_ACCEL=tcg"));
});

test("TCG gets calibration answers, but keeps its APIC timer; KVM and unknown TSC get none", () => {
  assert.ok(kernelParams(spec()).includes("tsc_early_khz=2300000"));
  assert.ok(kernelParams(spec()).includes("lpj=9200000"), "lpj = kHz * 1000 / HZ(250)");
  assert.ok(!kernelParams(spec()).includes("noapictimer"), "with it, timed sleeps in the guest never wake");
  assert.ok(!kernelParams(spec({ accelerator: "kvm" })).some((param) => param.startsWith("lpj=")));
  assert.ok(!kernelParams(spec({ hostTscKhz: undefined })).some((param) => param.startsWith("tsc_early_khz=")));
});

test("configured kernel parameters come last, and debug drops quiet", () => {
  const params = kernelParams(spec({ extraKernelParams: ["quiet=0", "foo=bar"] }));
  assert.deepEqual(params.slice(-2), ["quiet=0", "foo=bar"]);
  assert.ok(kernelParams(spec()).includes("quiet"));
  assert.ok(!kernelParams(spec({ debug: true })).includes("quiet"));
});

test("shellQuote quotes only what a shell would split", () => {
  assert.equal(shellQuote(["qemu", "-append", "a b", "it's"]), "qemu -append 'a b' 'it'\\''s'");
});

test("9p is two devices exporting the sandbox's shares directory, whatever the shares: one the guest caches, one it does not", () => {
  const shares = [
    { tag: "s0", hostPath: "/images/busybox", readOnly: true },
    { tag: "s1", hostPath: "/data", readOnly: false },
  ];
  for (const args of [qemuArgs(spec()), qemuArgs(spec({ shares }))]) {
    assert.deepEqual(valuesOf(args, "-fsdev"), [
      "local,id=fs-shares,path=/run/moat/s1/shares,security_model=none,multidevs=remap",
      "local,id=fs-live,path=/run/moat/s1/shares,security_model=none,multidevs=remap",
    ]);
    assert.ok(valuesOf(args, "-device").includes("virtio-9p-device,fsdev=fs-shares,mount_tag=moat-shares,id=share-shares"));
    assert.ok(valuesOf(args, "-device").includes("virtio-9p-device,fsdev=fs-live,mount_tag=moat-live,id=share-live"));
    assert.deepEqual(valuesOf(args, "-object"), [], "no shared memory backend without vhost-user");
    assert.deepEqual(valuesOf(args, "-global"), []);
    assert.deepEqual(valuesOf(args, "-machine"), ["microvm,isa-serial=on"]);
  }
  assert.ok(valuesOf(qemuArgs(spec({ machine: "q35" })), "-device").includes("virtio-9p-pci,fsdev=fs-shares,mount_tag=moat-shares,id=share-shares"));
});

test("virtfs_server = proxy: the same two 9p devices on proxy backends, their sockets after the taps", () => {
  assert.deepEqual(valuesOf(qemuArgs(spec({ virtfsServer: "proxy" })), "-fsdev"), ["proxy,id=fs-shares,sock_fd=3", "proxy,id=fs-live,sock_fd=4"]);
  const tapped = qemuArgs(spec({ virtfsServer: "proxy", nics: [{ id: "nic0", mac: "02:6d:6f:61:74:00", tap: "tap0_moat" }] }));
  assert.deepEqual(valuesOf(tapped, "-fsdev"), ["proxy,id=fs-shares,sock_fd=4", "proxy,id=fs-live,sock_fd=5"]);
  assert.ok(valuesOf(tapped, "-device").includes("virtio-9p-device,fsdev=fs-live,mount_tag=moat-live,id=share-live"));
  assert.ok(!tapped.some((arg) => arg.includes("/shares")), "QEMU is not told the export's path");
});

const shares = [
  { tag: "rootfs", hostPath: "/images/busybox", readOnly: true },
  { tag: "m1", hostPath: "/data", readOnly: false },
];

test("virtio-fs shares are vhost-user-fs devices on each share's virtiofsd socket, with shared guest RAM", () => {
  const args = qemuArgs(spec({ sharedFs: "virtio-fs", shares }));
  assert.deepEqual(valuesOf(args, "-fsdev"), []);
  assert.deepEqual(valuesOf(args, "-machine"), ["microvm,isa-serial=on,memory-backend=ram"]);
  assert.deepEqual(valuesOf(args, "-object"), ["memory-backend-memfd,id=ram,size=512M,share=on"]);
  assert.deepEqual(valuesOf(args, "-global"), ["virtio-mmio.force-legacy=false"], "the C virtiofsd refuses legacy virtio-mmio");
  assert.ok(valuesOf(args, "-chardev").includes(`socket,id=fs-m1,path=${SOCKETS}/vfs-m1.sock`));
  assert.ok(valuesOf(args, "-device").includes("vhost-user-fs-device,chardev=fs-rootfs,tag=rootfs,id=share-rootfs"));
});

test("virtio-fs on q35 uses the PCI device and keeps PCI virtio modern by default", () => {
  const args = qemuArgs(spec({ machine: "q35", sharedFs: "virtio-fs", shares }));
  assert.deepEqual(valuesOf(args, "-machine"), ["q35,memory-backend=ram"]);
  assert.deepEqual(valuesOf(args, "-global"), []);
  assert.ok(valuesOf(args, "-device").includes("vhost-user-fs-pci,chardev=fs-m1,tag=m1,id=share-m1"));
});

test("virtio-fs without shares needs neither shared RAM nor a daemon", () => {
  const args = qemuArgs(spec({ sharedFs: "virtio-fs" }));
  assert.deepEqual(valuesOf(args, "-object"), []);
  assert.deepEqual(valuesOf(args, "-machine"), ["microvm,isa-serial=on"]);
});

test("a VM template's RAM is a shared file; a clone maps it privately and waits for its state", () => {
  const template = qemuArgs(spec({ memoryFile: { path: "/run/moat/.templates/k/memory", shared: true } }));
  assert.deepEqual(valuesOf(template, "-machine"), ["microvm,isa-serial=on,memory-backend=ram"]);
  assert.deepEqual(valuesOf(template, "-object"), ["memory-backend-file,id=ram,size=512M,mem-path=/run/moat/.templates/k/memory,share=on"]);
  assert.ok(!template.includes("-incoming"));
  const clone = qemuArgs(spec({ memoryFile: { path: "/run/moat/.templates/k/memory", shared: false }, incoming: true }));
  assert.deepEqual(valuesOf(clone, "-object"), ["memory-backend-file,id=ram,size=512M,mem-path=/run/moat/.templates/k/memory,share=off"]);
  assert.deepEqual(valuesOf(clone, "-incoming"), ["defer"], "exec: would need QEMU to spawn, which its sandbox forbids");
});

test("a NIC with a tap gets the tap's descriptor as its netdev, in NIC order; a template being built gets throwaway taps after them; a restored-without-network NIC none", () => {
  const args = qemuArgs(spec({ nics: [{ id: "nic0", mac: "02:6d:6f:61:74:00", tap: "tap0_moat" }, { id: "nic1", mac: "8e:99:67:cb:39:d9", tap: "tap1_moat" }] }));
  assert.deepEqual(valuesOf(args, "-netdev"), ["tap,id=net-nic0,fd=3", "tap,id=net-nic1,fd=4"]);
  const nics = valuesOf(args, "-device").filter((device) => device.startsWith("virtio-net"));
  assert.deepEqual(nics, ["virtio-net-device,id=nic0,mac=02:6d:6f:61:74:00,guest_announce=off,netdev=net-nic0", "virtio-net-device,id=nic1,mac=8e:99:67:cb:39:d9,guest_announce=off,netdev=net-nic1"]);
  const building = spec({ nics: [{ id: "nic0", mac: "02:6d:6f:61:74:00" }, { id: "nic1", mac: "02:6d:6f:61:74:01" }], memoryFile: { path: "/t/memory", shared: true } });
  assert.equal(throwawayTaps(building), 2);
  assert.deepEqual(valuesOf(qemuArgs(building), "-netdev"), ["tap,id=net-nic0,fd=3", "tap,id=net-nic1,fd=4"]);
  const bare = qemuArgs(spec({ nics: [{ id: "nic0", mac: "02:6d:6f:61:74:00" }] }));
  assert.equal(throwawayTaps(spec({ nics: [{ id: "nic0", mac: "02:6d:6f:61:74:00" }] })), 0);
  assert.deepEqual(valuesOf(bare, "-netdev"), []);
  assert.deepEqual(valuesOf(bare, "-device").filter((device) => device.startsWith("virtio-net")), ["virtio-net-device,id=nic0,mac=02:6d:6f:61:74:00,guest_announce=off"]);
});
