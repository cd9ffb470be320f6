// Issue 15: a container's files behave as local files. test/support/fs-checks.c runs its
// everyday file operations inside containers (moat run --bundle, podman, containerd) on the
// root file system and on a volume, for each share mode moat offers, templates on and off;
// runc runs the same bundle first, and every check runc passes must pass on moat too, except
// the gaps docs/storage.md lists for that share and why ("What works on each share"). A gap
// that starts passing fails the test too, so that the docs follow. Then host-side updates:
// a file rewritten in place, one replaced by rename, a directory swapped by a symlink rename
// (kubelet's ConfigMap update), and a single-file bind (/etc/resolv.conf, issue 11) changed
// in place, each seen by the running container.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, afterEach, test } from "node:test";
import { busyboxBundle } from "./harness/bundle.js";
import { containerdForTestFile } from "./harness/containerd.js";
import { FS_CHECKS_BINARY, fsChecksBundle } from "./harness/fs-checks.js";
import { runMoat } from "./harness/moat-cli.js";
import { BUSYBOX_IMAGE } from "./harness/oci-image.js";
import { podmanForTestFile } from "./harness/podman.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
afterEach(() => workspace.assertNothingLeft(DAEMON_FILES));
after(async () => {
  await workspace.stopDaemon();
  workspace.remove();
});
const { podman } = podmanForTestFile();
const { containerd } = containerdForTestFile();

/**
 * What each share cannot do today (docs/storage.md, "What works on each share"). 9p: QEMU 7.2
 * refuses to open special files it serves (its CVE-2023-2861 fix), so mknod of a FIFO or
 * socket fails with ENXIO; the guest's 9p client turns flock into a POSIX lock, has no
 * O_TMPFILE or fallocate, sets attributes by name (so not on an unlinked file) and keeps whole
 * seconds of the times it sets (read-write volumes are cached like the root; the uncached,
 * read-only ones would lose inotify, which the checks, writing, cannot use). 9p served by
 * virtfs-proxy-helper (`virtfs_server = "proxy"`) makes sockets and FIFOs; the client's gaps
 * stay. virtio-fs: QEMU 7.2's
 * C virtiofsd has no O_TMPFILE, and xattrs are off.
 */
const GAPS: Record<string, string[]> = {
  "9p rootfs": ["unix-socket", "fifo", "utimensat", "flock-then-fcntl", "o-tmpfile", "fallocate", "unlinked-open"],
  "9p volume": ["unix-socket", "fifo", "utimensat", "flock-then-fcntl", "o-tmpfile", "fallocate", "unlinked-open"],
  "9p-proxy rootfs": ["utimensat", "flock-then-fcntl", "o-tmpfile", "fallocate", "unlinked-open"],
  "9p-proxy volume": ["utimensat", "flock-then-fcntl", "o-tmpfile", "fallocate", "unlinked-open"],
  "virtio-fs rootfs": ["user-xattr", "o-tmpfile"],
  "virtio-fs volume": ["user-xattr", "o-tmpfile"],
};

/** Enough for the checks' chown and the rest, as a container run by root has them. */
const CAPABILITIES = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETUID", "CAP_SETGID", "CAP_MKNOD"];

/** The checks' lines of one run, by check name. */
function parse(text: string): Map<string, string> {
  return new Map(
    text
      .trim()
      .split("\n")
      .filter((line) => line.trim())
      .map((line) => [line.split(" ")[0] ?? "", line] as const),
  );
}

/** Every check runc passed passes here too, except the gaps of `mode` (which must still fail). */
function assertLikeRunc(runc: Map<string, string>, got: Map<string, string>, mode: string, where: string): void {
  const gaps = GAPS[mode] ?? [];
  assert.deepEqual([...got.keys()], [...runc.keys()], `${where}: the same checks ran`);
  const failed = [...got.entries()].filter(([name, line]) => runc.get(name)?.endsWith(" pass") && !line.endsWith(" pass")).map(([, line]) => line);
  const unexpected = failed.filter((line) => !gaps.includes(line.split(" ")[0] ?? ""));
  assert.deepEqual(unexpected, [], `${where}: checks runc passes that fail and are not documented gaps of ${mode}`);
  const closed = gaps.filter((name) => got.get(name)?.endsWith(" pass"));
  assert.deepEqual(closed, [], `${where}: documented gaps of ${mode} that now pass: update docs/storage.md and GAPS`);
}

/** A bundle that runs the checks on its root (/checks) and on a volume (/vol), printing "===" between. */
function checksBundle(dir: string): { bundle: string; volume: string } {
  return fsChecksBundle(dir, "/fs-checks checks /checks; echo ===; /fs-checks checks /vol", "checks", CAPABILITIES);
}

function split(stdout: string): { rootfs: Map<string, string>; volume: Map<string, string> } {
  const [rootfs = "", volume = ""] = stdout.split("===\n");
  return { rootfs: parse(rootfs), volume: parse(volume) };
}

/** runc on the same kind of bundle: the baseline every share is held to. */
function runcBaseline(): { rootfs: Map<string, string>; volume: Map<string, string> } {
  const { bundle } = checksBundle(join(workspace.dir, "runc"));
  const result = spawnSync("runc", ["--root", join(workspace.dir, "runc-state"), "run", "--bundle", bundle, `fs-checks-${process.pid}`], { encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  return split(result.stdout);
}
let runc: ReturnType<typeof runcBaseline> | undefined;
const baseline = () => (runc ??= runcBaseline());

const MODES = [
  { name: "9p, templates on (the default)", mode: "9p", toml: "" },
  { name: "9p, templates off", mode: "9p", toml: "[factory]\nenable_template = false\n" },
  { name: "9p proxy, templates on", mode: "9p-proxy", toml: '[hypervisor.qemu]\nvirtfs_server = "proxy"\n' },
  { name: "9p proxy, templates off", mode: "9p-proxy", toml: '[hypervisor.qemu]\nvirtfs_server = "proxy"\n[factory]\nenable_template = false\n' },
  { name: "virtio-fs", mode: "virtio-fs", toml: '[hypervisor.qemu]\nshared_fs = "virtio-fs"\n' },
];

for (const { name, mode, toml } of MODES) {
  test(`moat run --bundle, ${name}: the root file system and a volume pass what runc passes, but for the documented gaps`, async () => {
    const config = workspace.configFile(`checks-${mode}-${name.length}`, toml);
    const { bundle } = checksBundle(join(workspace.dir, `moat-${mode}-${name.length}`));
    const result = await runMoat(["--config", config, "run", "--bundle", bundle]);
    assert.equal(result.code, 0, result.stderr);
    const got = split(result.stdout);
    assertLikeRunc(baseline().rootfs, got.rootfs, `${mode} rootfs`, `${name}, root file system`);
    assertLikeRunc(baseline().volume, got.volume, `${mode} volume`, `${name}, volume`);
  });
}

test("podman: a container's /tmp (its root file system) and a volume pass what runc passes, but for the documented gaps", async () => {
  const tools = join(workspace.dir, "podman-tools");
  const volume = join(workspace.dir, "podman-volume");
  mkdirSync(tools, { recursive: true });
  mkdirSync(volume);
  copyFileSync(FS_CHECKS_BINARY, join(tools, "fs-checks"));
  const capabilities = CAPABILITIES.flatMap((cap) => ["--cap-add", cap]);
  const result = await podman(["run", "--rm", "--network", "none", ...capabilities, "-v", `${tools}:/tools:ro`, "-v", `${volume}:/vol`, "localhost/busybox", "sh", "-c", "mkdir -p /tmp/c && /tools/fs-checks checks /tmp/c; echo ===; /tools/fs-checks checks /vol"]);
  assert.equal(result.code, 0, result.stderr);
  const got = split(result.stdout);
  assertLikeRunc(baseline().rootfs, got.rootfs, "9p rootfs", "podman, /tmp");
  assertLikeRunc(baseline().volume, got.volume, "9p volume", "podman, volume");
});

test("podman diff, cp and commit see what the container wrote in its root file system (it reaches the host's upper directory)", async () => {
  const run = await podman(["run", "--name", "writer", "--network", "none", "localhost/busybox", "sh", "-c", "mkdir /made && echo written > /made/file && chmod 640 /made/file"]);
  assert.equal(run.code, 0, run.stderr);
  const diff = await podman(["diff", "writer"]);
  assert.equal(diff.code, 0, diff.stderr);
  assert.match(diff.stdout, /^A \/made\/file$/m);
  const copied = await podman(["cp", "writer:/made/file", join(workspace.dir, "copied")]);
  assert.equal(copied.code, 0, copied.stderr);
  assert.equal(readFileSync(join(workspace.dir, "copied"), "utf8"), "written\n");
  const commit = await podman(["commit", "--quiet", "writer", "localhost/written"]);
  assert.equal(commit.code, 0, commit.stderr);
  assert.equal((await podman(["rm", "writer"])).code, 0);
  const image = await podman(["run", "--rm", "--network", "none", "localhost/written", "stat", "-c", "%a %s", "/made/file"]);
  assert.equal(image.code, 0, image.stderr);
  assert.equal(image.stdout, "640 8\n", "the committed layer has the file with its mode");
  assert.equal((await podman(["rmi", "localhost/written"])).code, 0);
});

test("containerd: the root file system and a volume pass what runc passes, but for the documented gaps", async () => {
  const tools = join(workspace.dir, "ctr-tools");
  const volume = join(workspace.dir, "ctr-volume");
  mkdirSync(tools, { recursive: true });
  mkdirSync(volume);
  copyFileSync(FS_CHECKS_BINARY, join(tools, "fs-checks"));
  const result = await containerd.run([
    "--rm", "--privileged",
    "--mount", `type=bind,src=${tools},dst=/tools,options=rbind:ro`,
    "--mount", `type=bind,src=${volume},dst=/vol,options=rbind:rw`,
    BUSYBOX_IMAGE, "fs-checks-1",
    "sh", "-c", "mkdir -p /tmp/c && /tools/fs-checks checks /tmp/c; echo ===; /tools/fs-checks checks /vol",
  ]);
  assert.equal(result.code, 0, result.stderr);
  const got = split(result.stdout);
  assertLikeRunc(baseline().rootfs, got.rootfs, "9p rootfs", "containerd, root file system");
  assertLikeRunc(baseline().volume, got.volume, "9p volume", "containerd, volume");
  await containerd.assertNothingLeft();
});

/**
 * The guest reads every file once (so that a cache would hold the old text), says so in the
 * volume, then waits for the new texts, for at most 120 s (a bound so that a failure ends,
 * not a timing threshold: the host changes them right after it sees "ready").
 */
const WATCH_SCRIPT = [
  'show() { echo "$(cat /vol/in-place) $(cat /vol/renamed) $(cat /vol/config/key) $(cat /etc/moat-resolv)"; }',
  'echo "before: $(show)"',
  "echo ready > /signal/ready",
  "i=0",
  'while [ "$(show)" != "two two two two" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done',
  'echo "after: $(show)"',
].join("\n");

for (const { name, mode, toml } of MODES.filter((candidate) => !candidate.name.endsWith("templates off"))) {
  test(`${name}: changes made on the host (in place, by rename, a symlink swap, a single-file bind) are seen in the running container`, async () => {
    const dir = join(workspace.dir, `updates-${mode}`);
    const volume = join(dir, "volume");
    mkdirSync(join(volume, "..v1"), { recursive: true });
    mkdirSync(join(volume, "..v2"));
    writeFileSync(join(volume, "in-place"), "one\n");
    writeFileSync(join(volume, "renamed"), "one\n");
    // kubelet's ConfigMap volume: a symlink to a version directory, swapped by renaming a new
    // symlink over it.
    writeFileSync(join(volume, "..v1", "key"), "one\n");
    writeFileSync(join(volume, "..v2", "key"), "two\n");
    symlinkSync("..v1", join(volume, "config"));
    const resolv = join(dir, "resolv.conf");
    writeFileSync(resolv, "one\n");
    const signal = join(dir, "signal");
    mkdirSync(signal);
    const bundle = busyboxBundle(join(dir, "bundle"), ["sh", "-c", WATCH_SCRIPT], (spec) => {
      spec.mounts = [
        ...(spec.mounts ?? []),
        // Read-only, as kubelet mounts ConfigMaps and Secrets: read-only volumes are the live ones.
        { destination: "/vol", type: "bind", source: volume, options: ["rbind", "ro"] },
        { destination: "/signal", type: "bind", source: signal, options: ["rbind", "rw"] },
        { destination: "/etc/moat-resolv", type: "bind", source: resolv, options: ["rbind", "ro"] },
      ];
    });
    const config = workspace.configFile(`updates-${mode}`, toml);
    const running = runMoat(["--config", config, "run", "--bundle", bundle]);
    let done = false;
    void running.finally(() => (done = true));
    while (!existsSync(join(signal, "ready")) && !done) await sleep(100);
    writeFileSync(join(volume, "in-place"), "two\n"); // same inode, truncated and rewritten
    writeFileSync(join(volume, "renamed.tmp"), "two\n");
    renameSync(join(volume, "renamed.tmp"), join(volume, "renamed"));
    symlinkSync("..v2", join(volume, "config.tmp"));
    renameSync(join(volume, "config.tmp"), join(volume, "config"));
    writeFileSync(resolv, "two\n"); // podman and CRI rewrite their resolv.conf in place
    const result = await running;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "before: one one one one\nafter: two two two two\n");
  });
}
