// Issue 15 (files) / issue 12: what a running container writes reaches the host while it runs.
// A container writes to its root file system and to a read-write volume (both on the cached 9p
// device, `cache=loose`), closing some files and keeping one open, and then keeps running; the
// host must read the content without anything in the guest calling sync: `podman cp`, `podman
// diff`/commit, kubelet's termination-log, a CI job's artifacts and logs on a volume read it
// there. The wait is polled; its bound is only a deadline for failure (docs/storage.md,
// "Write-back to the host").
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, afterEach, test } from "node:test";
import { busyboxBundle } from "./harness/bundle.js";
import { runMoat } from "./harness/moat-cli.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
afterEach(() => workspace.assertNothingLeft(DAEMON_FILES));
after(async () => {
  await workspace.stopDaemon();
  workspace.remove();
});

/**
 * How long the host waits for a file's content before the test fails: a deadline, not a
 * measurement (the guest writes back within about 1.5 s of its own time). It is shorter than
 * the kernel's default expiry of dirty pages (30 s), which is what the test guards against.
 */
const DEADLINE_MS = 20_000;

/**
 * Writes back 8 MiB (below), writes the files, then waits (bounded) for the host to say stop
 * through a read-only volume (the uncached device, where files the host makes are seen). Descriptor 3 stays open on a volume
 * file and 4 on a root file system one: written, never closed while the host reads.
 */
const SCRIPT = [
  // A share that has written back recently, as in any VM that has run a while: the kernel then
  // gives its device a share of the background threshold and leaves a few dirty pages to the
  // expiry (a device with no write-back history at all is flushed at the flusher's next wake).
  "dd if=/dev/zero of=/vol/.history bs=1M count=8 2>/dev/null && sync && rm /vol/.history",
  "echo root-closed > /root-closed",
  "echo volume-closed > /vol/volume-closed",
  "exec 3>/vol/volume-open 4>/root-open",
  "echo volume-open >&3",
  "echo root-open >&4",
  "echo appended >> /vol/volume-closed",
  ": > /vol/ready",
  "i=0",
  "while [ ! -e /stop/now ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done",
  'echo "dirty_expire_centisecs=$(cat /proc/sys/vm/dirty_expire_centisecs) dirty_writeback_centisecs=$(cat /proc/sys/vm/dirty_writeback_centisecs) $(grep -E "^(Dirty|Writeback):" /proc/meminfo | tr -s " " | tr "\\n" " ")"',
].join("\n");

/** Polls `path` until it holds `expected`, or fails at the deadline naming what it last read. */
async function hostSees(path: string, expected: string, started: number): Promise<number> {
  let last = "";
  while (Date.now() - started < DEADLINE_MS) {
    last = existsSync(path) ? readFileSync(path, "utf8") : "(missing)";
    if (last === expected) return Date.now() - started;
    await sleep(100);
  }
  assert.fail(`${path}: the host still reads ${JSON.stringify(last)}, not ${JSON.stringify(expected)}, ${DEADLINE_MS / 1000} s after the container wrote it`);
}

const MODES = [
  { name: "9p (the default)", toml: "" },
  { name: "9p, templates off", toml: "[factory]\nenable_template = false\n" },
  { name: "virtio-fs", toml: '[hypervisor.qemu]\nshared_fs = "virtio-fs"\n' },
];

for (const { name, toml } of MODES) {
  test(`${name}: what a running container writes to its root file system and a read-write volume, closed or still open, reaches the host without a sync`, async (context) => {
    const dir = join(workspace.dir, name.replace(/\W+/g, "-"));
    const volume = join(dir, "volume");
    const stop = join(dir, "stop");
    mkdirSync(volume, { recursive: true });
    mkdirSync(stop);
    const bundle = busyboxBundle(join(dir, "bundle"), ["sh", "-c", SCRIPT], (spec) => {
      spec.mounts = [
        ...(spec.mounts ?? []),
        { destination: "/vol", type: "bind", source: volume, options: ["rbind", "rw"] },
        { destination: "/stop", type: "bind", source: stop, options: ["rbind", "ro"] },
      ];
    });
    const rootfs = join(bundle, "rootfs");
    const running = runMoat(["--config", workspace.configFile(name.replace(/\W+/g, "-"), toml), "run", "--bundle", bundle]);
    let done = false;
    void running.finally(() => (done = true));
    try {
      while (!existsSync(join(volume, "ready")) && !done) await sleep(100);
      if (done) assert.fail(`the container ended before it was ready: ${JSON.stringify(await running)}`);
      const started = Date.now();
      const seen: string[] = [];
      for (const [path, expected] of [
        [join(rootfs, "root-closed"), "root-closed\n"],
        [join(volume, "volume-closed"), "volume-closed\nappended\n"],
        [join(rootfs, "root-open"), "root-open\n"],
        [join(volume, "volume-open"), "volume-open\n"],
      ] as const) {
        seen.push(`${path.slice(dir.length + 1)} after ${await hostSees(path, expected, started)} ms`);
      }
      // Reported, not asserted: how long the content took to reach the host.
      context.diagnostic(`seen on the host: ${seen.join(", ")}`);
    } finally {
      writeFileSync(join(stop, "now"), "");
    }
    const result = await running;
    assert.equal(result.code, 0, result.stderr);
    context.diagnostic(`guest: ${result.stdout.trim()}`);
  });
}
