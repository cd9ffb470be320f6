import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { parseMountinfo, type MountEntry } from "../../shared/mountinfo.js";
import { tmpfsGuestPath } from "../../shared/protocol/index.js";
import { guestSpec } from "./guest-spec.js";
import { memoryVolume, memoryVolumeKind, tmpfsSizeBytes } from "./memory-volume.js";
import type { OciSpec } from "./bundle.js";

const root = mkdtempSync(join(tmpdir(), "moat-memory-volume-"));
after(() => rmSync(root, { recursive: true, force: true }));

const podDir = join(root, "pods", "uid-1", "volumes", "kubernetes.io~empty-dir");
const cache = join(podDir, "cache");
const onDisk = join(podDir, "on-disk");
const shm = join(root, "sandboxes", "pod-1", "shm");
for (const dir of [cache, onDisk, shm, join(cache, "sub")]) mkdirSync(dir, { recursive: true });
chmodSync(cache, 0o777);
chmodSync(shm, 0o1777);

/** What /proc/self/mountinfo would say with `cache` and `shm` tmpfs mounts (kubelet's, containerd's) and a subPath bind of cache's "sub". */
const mountinfo = [
  "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
  `40 22 0:50 / ${cache} rw,relatime shared:20 - tmpfs tmpfs rw,size=16384k,inode64`,
  `41 22 0:51 / ${shm} rw,nosuid,nodev,noexec,relatime shared:21 - tmpfs shm rw,size=65536k,mode=1777,inode64`,
  `42 22 0:50 /sub ${join(root, "subpath")} rw,relatime shared:20 - tmpfs tmpfs rw,size=16384k,inode64`,
].join("\n");
const hostMounts: MountEntry[] = parseMountinfo(mountinfo);

test("mountinfo gives each mount's root and its own options", () => {
  const entry = hostMounts.find((mount) => mount.mountPoint === shm);
  assert.equal(entry?.root, "/");
  assert.deepEqual(entry?.mountOptions, ["rw", "nosuid", "nodev", "noexec", "relatime"]);
  assert.equal(hostMounts.at(-1)?.root, "/sub");
  assert.equal(parseMountinfo("36 35 98:0 /a\\040b /mnt\\040x rw - ext3 /dev/root rw")[0]?.root, "/a b");
});

test("a tmpfs size option is read in bytes; none, or one the kernel never shows, is 0 (the guest's default)", () => {
  assert.equal(tmpfsSizeBytes(["rw", "size=65536k", "mode=1777"]), 64n << 20n);
  assert.equal(tmpfsSizeBytes(["size=2g"]), 2n << 30n);
  assert.equal(tmpfsSizeBytes(["size=4096"]), 4096n);
  assert.equal(tmpfsSizeBytes(["rw", "inode64"]), 0n);
  assert.equal(tmpfsSizeBytes(["size=50%"]), 0n);
});

test("a bind's paths say whether it may be a memory volume: kubelet's emptyDir directory, or /dev/shm", () => {
  assert.equal(memoryVolumeKind({ destination: "/cache", type: "bind", source: cache }), "emptydir");
  assert.equal(memoryVolumeKind({ destination: "/dev/shm", type: "bind", source: shm }), "shm");
  assert.equal(memoryVolumeKind({ destination: "/dev/shm/", type: "bind", source: shm }), "shm");
  assert.equal(memoryVolumeKind({ destination: "/data", type: "bind", source: join(root, "sandboxes") }), undefined);
  assert.equal(memoryVolumeKind({ destination: "/x", type: "bind", source: join(root, "kubernetes.io~empty-dir", "x") }), undefined, "not under a pod's volumes directory");
});

test("a memory volume is a tmpfs mount's root on the host: size, root's mode and owner, flags; named the same for every container", () => {
  const volume = memoryVolume(cache, "emptydir", hostMounts);
  assert.ok(volume);
  assert.match(volume.name, /^emptydir-[0-9a-f]{16}$/);
  assert.deepEqual({ ...volume, name: "" }, { name: "", sizeBytes: 16n << 20n, mode: 0o777, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, nosuid: false, nodev: false, noexec: false });
  assert.equal(memoryVolume(cache, "emptydir", hostMounts)?.name, volume.name, "the same name for the same volume");
  const sandboxShm = memoryVolume(shm, "shm", hostMounts);
  assert.deepEqual({ size: sandboxShm?.sizeBytes, mode: sandboxShm?.mode, flags: [sandboxShm?.nosuid, sandboxShm?.nodev, sandboxShm?.noexec] }, { size: 64n << 20n, mode: 0o1777, flags: [true, true, true] });
  assert.notEqual(sandboxShm?.name, volume.name);
  // Through a symlink, as CRI may be given a path: the mount is found at the real path.
  symlinkSync(cache, join(root, "link-to-cache"));
  assert.equal(memoryVolume(join(root, "link-to-cache"), "emptydir", hostMounts)?.name, volume.name);
});

test("an emptyDir on disk, a subdirectory of a tmpfs, a mount covered by another and a missing path are not memory volumes", () => {
  assert.equal(memoryVolume(onDisk, "emptydir", hostMounts), undefined);
  assert.equal(memoryVolume(join(cache, "sub"), "emptydir", hostMounts), undefined);
  mkdirSync(join(root, "subpath"));
  assert.equal(memoryVolume(join(root, "subpath"), "emptydir", hostMounts), undefined, "kubelet's subPath bind: root /sub");
  const covered = parseMountinfo(`${mountinfo}\n50 40 0:60 / ${cache} rw - ext4 /dev/sdb rw`);
  assert.equal(memoryVolume(cache, "emptydir", covered), undefined, "the top mount is what a bind sees");
  assert.equal(memoryVolume(join(podDir, "gone"), "emptydir", hostMounts), undefined);
});

test("guestSpec turns memory volumes into binds of the guest's tmpfs, one per volume, and shares the rest", () => {
  const rootfs = join(root, "rootfs");
  const plain = join(root, "plain");
  mkdirSync(rootfs, { recursive: true });
  mkdirSync(plain, { recursive: true });
  const spec: OciSpec = {
    ociVersion: "1.0.2",
    process: { args: ["sh"], cwd: "/" },
    root: { path: rootfs },
    mounts: [
      { destination: "/dev/shm", type: "bind", source: shm, options: ["rbind", "ro"] },
      { destination: "/cache", type: "bind", source: cache, options: ["rbind", "rprivate", "rw"] },
      { destination: "/again", type: "bind", source: cache, options: ["rbind", "ro"] },
      { destination: "/on-disk", type: "bind", source: onDisk, options: ["rbind"] },
      { destination: "/plain", type: "bind", source: plain, options: ["rbind"] },
    ],
  };
  const guest = guestSpec({ containerId: "c1", spec, rootfs, overlay: false, where: "test", filesDir: join(root, "files"), hostMounts });
  const names = guest.tmpfs.map((tmpfs) => tmpfs.name);
  assert.equal(names.length, 2, "one tmpfs for /dev/shm, one for the emptyDir mounted twice");
  const sources = (guest.spec.mounts ?? []).map((mount) => mount.source);
  assert.deepEqual(sources.slice(0, 3), [tmpfsGuestPath(names[0] ?? ""), tmpfsGuestPath(names[1] ?? ""), tmpfsGuestPath(names[1] ?? "")]);
  assert.deepEqual(guest.spec.mounts?.[0]?.options, ["rbind", "ro"], "the bind keeps its options");
  assert.deepEqual(guest.shares.map((share) => share.hostPath), [rootfs, onDisk, plain], "the root and the directories on disk are shares; the memory volumes are not");
  assert.deepEqual(readdirSync(cache), ["sub"], "nothing is made in the host's directory");
});

test("guestSpec looks at the host's mounts only when a bind may be a memory volume", () => {
  const rootfs = join(root, "rootfs2");
  mkdirSync(rootfs, { recursive: true });
  const poisoned = new Proxy([] as MountEntry[], {
    get() {
      throw new Error("the host's mounts were read");
    },
  });
  const guest = guestSpec({ containerId: "c2", spec: { ociVersion: "1.0.2", process: { args: ["sh"], cwd: "/" }, root: { path: rootfs }, mounts: [{ destination: "/proc", type: "proc", source: "proc" }] }, rootfs, overlay: false, where: "test", filesDir: join(root, "files2"), hostMounts: poisoned });
  assert.deepEqual(guest.tmpfs, []);
});
