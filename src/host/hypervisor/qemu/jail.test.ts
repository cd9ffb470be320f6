import assert from "node:assert/strict";
import { test } from "node:test";
import { vmPaths, type VmSpec } from "../hypervisor.js";
import { FILE_SERVER_CAPS, jailArgs, vmmUserFor } from "./jail.js";

const spec: VmSpec = {
  id: "s1",
  machine: "microvm",
  accelerator: "tcg",
  vcpus: 1,
  memoryMiB: 512,
  kernelPath: "/opt/moat/vmlinux",
  rootfs: { kind: "image", path: "/opt/moat/rootfs.img" },
  extraKernelParams: [],
  debug: false,
  sharedFs: "virtio-9p",
  shares: [],
  hostTscKhz: undefined,
  paths: vmPaths("/run/moat/s1", "/run/moat-sockets"),
};

function pathsOf(args: string[], option: string): string[] {
  return args.flatMap((arg, index) => (arg === option ? [args[index + 1] ?? ""] : []));
}

test("a 9p VM: root with the file server's capabilities; kernel and image read-only, sockets and logs writable, the export a slave; no state directory", () => {
  const args = jailArgs(spec, "/usr/bin/qemu-system-x86_64", 0, undefined);
  assert.deepEqual(pathsOf(args, "--ro"), ["/opt/moat/vmlinux", "/opt/moat/rootfs.img"]);
  assert.deepEqual(pathsOf(args, "--rw"), [spec.paths.socketDir, spec.paths.logDir]);
  assert.deepEqual(pathsOf(args, "--rslave"), [spec.paths.sharesDir]);
  assert.deepEqual(pathsOf(args, "--caps"), [FILE_SERVER_CAPS.join(",")]);
  assert.deepEqual(pathsOf(args, "--pidfile"), [spec.paths.pidFile]);
  assert.equal(args.at(-1), "--");
  assert.ok(!args.includes(spec.paths.stateDir));
});

test("a template being made writes its RAM file's directory and exports nothing; a clone opens the file; KVM adds /dev/kvm; a QEMU outside /usr is bound", () => {
  const making = jailArgs({ ...spec, memoryFile: { path: "/t/k/memory", shared: true } }, "/usr/bin/qemu-system-x86_64", 0, undefined);
  assert.ok(pathsOf(making, "--rw").includes("/t/k"));
  assert.deepEqual(pathsOf(making, "--rslave"), []);
  assert.ok(pathsOf(making, "--ro").includes(spec.paths.sharesDir));
  const clone = jailArgs({ ...spec, memoryFile: { path: "/t/k/memory", shared: false }, accelerator: "kvm" }, "/opt/qemu/bin/qemu", 2, undefined);
  assert.ok(pathsOf(clone, "--rw").includes("/t/k/memory"));
  assert.ok(pathsOf(clone, "--rw").includes("/dev/kvm"));
  assert.ok(pathsOf(clone, "--ro").includes("/opt/qemu/bin/qemu"));
  assert.deepEqual(pathsOf(clone, "--keep-fds"), ["2"]);
});

test("the unprivileged user only where no root is needed: virtio-fs without a template's RAM", () => {
  const user = { uid: 990, gid: 990 };
  assert.equal(vmmUserFor(spec, user), undefined, "9p is served by QEMU as root");
  assert.equal(vmmUserFor({ ...spec, sharedFs: "virtio-fs", memoryFile: { path: "/t/m", shared: false } }, user), undefined, "a template's RAM file is root's");
  assert.deepEqual(vmmUserFor({ ...spec, sharedFs: "virtio-fs" }, user), user);
  assert.equal(vmmUserFor({ ...spec, sharedFs: "virtio-fs" }, undefined), undefined);
  const args = jailArgs({ ...spec, sharedFs: "virtio-fs" }, "/usr/bin/qemu-system-x86_64", 0, user);
  assert.deepEqual([pathsOf(args, "--uid"), pathsOf(args, "--gid"), pathsOf(args, "--caps")], [["990"], ["990"], ["none"]]);
});

test("a template being built with NICs gets moat-jail's throwaway taps (their backends); a clone's taps are kept descriptors instead", () => {
  const nics = [{ id: "nic0", mac: "02:6d:6f:61:74:00" }];
  const making = jailArgs({ ...spec, nics, memoryFile: { path: "/t/k/memory", shared: true } }, "/usr/bin/qemu-system-x86_64", 0, undefined);
  assert.deepEqual(pathsOf(making, "--throwaway-taps"), ["1"]);
  const clone = jailArgs({ ...spec, nics: [{ ...nics[0]!, tap: "tap0_moat" }], memoryFile: { path: "/t/k/memory", shared: false } }, "/usr/bin/qemu-system-x86_64", 1, undefined); // nics has one element
  assert.deepEqual(pathsOf(clone, "--throwaway-taps"), []);
  assert.deepEqual(pathsOf(clone, "--keep-fds"), ["1"]);
});

test("virtfs_server = proxy: QEMU gets no capability and no export; a helper per 9p device serves it (read-only and unmounted for a template)", () => {
  const args = jailArgs({ ...spec, virtfsServer: "proxy" }, "/usr/bin/qemu-system-x86_64", 1, undefined);
  assert.deepEqual(pathsOf(args, "--9p-proxy"), [spec.paths.sharesDir, spec.paths.sharesDir]);
  assert.deepEqual(pathsOf(args, "--rslave"), []);
  assert.deepEqual(pathsOf(args, "--caps"), ["none"]);
  assert.deepEqual(pathsOf(args, "--keep-fds"), ["1"], "the taps; moat-jail adds the sockets after them");
  const making = jailArgs({ ...spec, virtfsServer: "proxy", memoryFile: { path: "/t/k/memory", shared: true } }, "/usr/bin/qemu-system-x86_64", 0, undefined);
  assert.deepEqual(pathsOf(making, "--9p-proxy-ro"), [spec.paths.sharesDir, spec.paths.sharesDir]);
  assert.deepEqual(pathsOf(making, "--9p-proxy"), []);
  const virtiofs = jailArgs({ ...spec, sharedFs: "virtio-fs", virtfsServer: "proxy" }, "/usr/bin/qemu-system-x86_64", 0, undefined);
  assert.deepEqual(pathsOf(virtiofs, "--9p-proxy"), [], "virtio-fs has no 9p devices");
});
