// Issue 11, item 3: OCI hooks where they belong, through `moat create/start/delete --bundle`
// as conmon drives it. The prestart hook does what Docker's libnetwork-setkey does: it reads
// the state on stdin and moves a veth (whose other end is on a test bridge on 198.18.0.0/15)
// into the network namespace of the pid it was given, the stand-in's, a new one made for it.
// Only then is that namespace read and connected to the VM: the container has the interface
// and reaches a server the test runs on the bridge. poststart and poststop run on the host
// with the state; a failing prestart fails create with one clear error and nothing left.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { chmodSync, existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { busyboxBundle } from "./harness/bundle.js";
import { moatBinary, runCommand, runMoat, startMoat } from "./harness/moat-cli.js";
import { createAsConmon, ociWorkspace } from "./harness/oci-runtime.js";
import { TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const { subreaper, moat } = ociWorkspace(workspace);
const suffix = randomBytes(3).toString("hex");
const bridge = `mhb${suffix}`;
const hostEnd = `mhh${suffix}`;
const peer = `mhc${suffix}`;
const subnet = `198.18.${100 + (parseInt(suffix.slice(0, 2), 16) % 150)}`;
const bridgeAddress = `${subnet}.1`;
const containerAddress = `${subnet}.3`;
const HOOK_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
let server: Server;
let port = 0;

const ip = (...args: string[]) => execFileSync("ip", args, { encoding: "utf8" });

before(async () => {
  ip("link", "add", bridge, "type", "bridge");
  ip("addr", "add", `${bridgeAddress}/24`, "dev", bridge);
  ip("link", "set", bridge, "up");
  ip("link", "add", hostEnd, "type", "veth", "peer", "name", peer);
  ip("link", "set", hostEnd, "master", bridge, "up");
  server = createServer((request, response) => response.end(`hello from the host, ${request.socket.remoteAddress}\n`));
  server.listen(0, bridgeAddress);
  await once(server, "listening");
  port = (server.address() as AddressInfo).port; // listening on an IP address and port
});

after(() => {
  server?.close();
  for (const link of [hostEnd, bridge]) {
    try {
      ip("link", "del", link);
    } catch {
      // Gone already (the veth goes with the namespace it was moved into).
    }
  }
});

function script(name: string, body: string): string {
  const path = join(workspace.dir, name);
  writeFileSync(path, `#!/bin/sh\nset -e\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** Processes whose working directory is `dir` (moat create's, which its stand-in inherits). */
function processesIn(dir: string): number[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return readlinkSync(`/proc/${pid}/cwd`) === dir;
      } catch {
        return false;
      }
    })
    .map(Number);
}

test("prestart gets the stand-in's pid in a new namespace, puts a veth there, and the container has it; poststart and poststop run on the host", async () => {
  const records = join(workspace.dir, "records");
  execFileSync("mkdir", ["-p", records]);
  // libnetwork-setkey's part, in shell: the interface goes into the namespace of the state's pid.
  const prestart = script(
    "prestart.sh",
    `cat > ${records}/prestart.json
pid=$(sed -n 's/.*"pid":\\([0-9]*\\).*/\\1/p' ${records}/prestart.json)
readlink /proc/$pid/ns/net > ${records}/prestart.netns
echo "$0 $1" > ${records}/prestart.argv
ip link set ${peer} netns $pid
nsenter --net=/proc/$pid/ns/net sh -c 'ip link set ${peer} name eth0 && ip link set lo up && ip link set eth0 up && ip addr add ${containerAddress}/24 dev eth0 && ip route add default via ${bridgeAddress}'`,
  );
  const poststart = script("poststart.sh", `cat > ${records}/poststart.json`);
  const poststop = script("poststop.sh", `cat > ${records}/poststop.json`);
  const bundle = busyboxBundle(`${workspace.dir}/hooked`, ["sh", "-c", `ip addr show eth0; ip route; timeout 60 wget -q -O - http://${bridgeAddress}:${port}/`], (spec) => {
    spec.hooks = {
      prestart: [{ path: prestart, args: ["prestart.sh", "libnetwork-setkey"], env: [HOOK_PATH] }],
      poststart: [{ path: poststart, env: [HOOK_PATH] }],
      poststop: [{ path: poststop, env: [HOOK_PATH] }],
    };
    spec.annotations = { "test.moat/hook": "yes" };
  });
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, "hooked", "");
  assert.equal(await container.created, 0, container.stderr());
  const pid = Number(readFileSync(join(workspace.dir, "hooked.pid"), "utf8"));

  const state = JSON.parse(readFileSync(`${records}/prestart.json`, "utf8")) as Record<string, unknown>;
  assert.deepEqual(state, { ociVersion: "1.0.2", id: "hooked", status: "creating", pid, bundle, annotations: { "test.moat/hook": "yes" } }, "the state on stdin, with the stand-in's pid");
  assert.match(readFileSync(`${records}/prestart.argv`, "utf8"), / libnetwork-setkey\n$/);
  const hostNetns = readlinkSync("/proc/self/ns/net");
  const standInNetns = readFileSync(`${records}/prestart.netns`, "utf8").trim();
  assert.match(standInNetns, /^net:\[\d+\]$/);
  assert.notEqual(standInNetns, hostNetns, "the stand-in is in a new network namespace, not the host's");
  assert.equal(readlinkSync(`/proc/${pid}/ns/net`), standInNetns, "the stand-in stays in it");
  assert.equal(existsSync(`${records}/poststart.json`), false, "poststart waits for start");

  const started = await moat(["start", "hooked"]);
  assert.equal(started.code, 0, started.stderr);
  const poststartState = JSON.parse(readFileSync(`${records}/poststart.json`, "utf8")) as Record<string, unknown>;
  assert.equal(poststartState.status, "running");
  assert.equal(poststartState.pid, pid);
  assert.deepEqual(await container.standIn, { pid, exitStatus: 0 }, container.stderr());
  const out = container.stdout();
  assert.match(out, /eth0: <[^>]*\bUP\b[^>]*> mtu 1500 /, out);
  assert.match(out, new RegExp(`inet ${containerAddress.replace(/\./g, "\\.")}/24 `), out);
  assert.match(out, new RegExp(`^default via ${bridgeAddress.replace(/\./g, "\\.")} dev eth0`, "m"), out);
  assert.match(out, new RegExp(`hello from the host, ${containerAddress.replace(/\./g, "\\.")}\\n`), out);

  assert.equal(existsSync(`${records}/poststop.json`), false, "poststop waits for delete");
  const deleted = await moat(["delete", "hooked"]);
  assert.equal(deleted.code, 0, deleted.stderr);
  const poststopState = JSON.parse(readFileSync(`${records}/poststop.json`, "utf8")) as Record<string, unknown>;
  assert.equal(poststopState.status, "stopped");
  assert.equal(poststopState.id, "hooked");
  // The namespace was the sandbox's: unpinned at delete, it goes, and the veth with it.
  while (ip("-j", "link", "show").includes(`"${hostEnd}"`)) await sleep(100);
  // ociWorkspace's afterEach: no QEMU, mount (the pin), state or socket directory left.
});

test("a failing prestart hook fails create with one clear error, and nothing is left (no VM, stand-in, pin)", async () => {
  const failing = script("failing.sh", "cat > /dev/null; echo 'no network for you' >&2; exit 3");
  const bundle = busyboxBundle(`${workspace.dir}/failing`, ["true"], (spec) => {
    spec.hooks = { prestart: [{ path: failing }] };
  });
  const cwd = join(workspace.dir, "failing");
  const result = await runCommand(moatBinary, ["--root", workspace.stateRoot, "create", "--bundle", bundle, "--pid-file", join(workspace.dir, "failing.pid"), "hookfail"], { cwd });
  assert.equal(result.code, 1, result.stderr);
  assert.equal(result.stderr, `moat: container hookfail: prestart hook #0 (${failing}): exited with status 3 (stderr: no network for you)\n`);
  assert.equal(existsSync(join(workspace.dir, "failing.pid")), false, "no pid file");
  // The stand-in, started first, is gone with the create (it has create's working directory).
  while (processesIn(cwd).length > 0) await sleep(100);
  const listed = await moat(["list", "--quiet"]);
  assert.equal(listed.stdout, "");
  // ociWorkspace's afterEach: no QEMU, mount, state or socket directory left.
});

test("moatd and the VM killed under a hooked container: the next moatd removes the sandbox and runs its saved poststop hook", async () => {
  const records = join(workspace.dir, "records-restart");
  execFileSync("mkdir", ["-p", records]);
  const poststop = script("poststop-restart.sh", `cat > ${records}/poststop.json`);
  const bundle = busyboxBundle(`${workspace.dir}/restarted`, ["sleep", "600"], (spec) => {
    spec.hooks = { poststop: [{ path: poststop, env: [HOOK_PATH] }] };
  });
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, "restarted", "");
  assert.equal(await container.created, 0, container.stderr());
  assert.equal((await moat(["start", "restarted"])).code, 0);
  const daemons = workspace.daemonProcesses();
  const qemus = workspace.qemuProcesses();
  assert.deepEqual([daemons.length, qemus.length], [1, 1], [...daemons, ...qemus].join("\n"));
  process.kill(Number(daemons[0]!.split(" ")[0]), "SIGKILL"); // one each, checked just above
  process.kill(Number(qemus[0]!.split(" ")[0]), "SIGKILL");
  while (workspace.qemuProcesses().length > 0 || workspace.daemonProcesses().length > 0) await sleep(100);
  assert.equal(existsSync(`${records}/poststop.json`), false, "poststop waits for the sandbox's removal");
  // The next moatd (started by this request) finds the VM gone, removes what is left and runs
  // poststop, all before it answers for the container (requests wait for its adoption).
  const state = await moat(["state", "restarted"]);
  assert.notEqual(state.code, 0, "removed, not adopted");
  assert.ok(existsSync(`${records}/poststop.json`), `poststop ran; moatd.log:\n${workspace.daemonLog()}`);
  const poststopState = JSON.parse(readFileSync(`${records}/poststop.json`, "utf8")) as Record<string, unknown>;
  assert.deepEqual([poststopState.id, poststopState.status, poststopState.pid], ["restarted", "stopped", 0]);
  assert.match(workspace.daemonLog(), /container restarted: its VM is gone; removing what is left/);
  await container.standIn; // it goes once its socket is gone
  // ociWorkspace's afterEach: no QEMU, mount (the pin), state or socket directory left.
});

test("a foreground moat run --bundle runs its host hooks: createRuntime gets a pid in a new namespace, puts a veth there, the container has it; poststop runs; nothing is left", async () => {
  const records = join(workspace.dir, "records-run");
  execFileSync("mkdir", ["-p", records]);
  // A veth of its own on the test bridge: the other test's went with its namespace.
  const runHost = `mrh${suffix}`;
  const runPeer = `mrc${suffix}`;
  const runAddress = `${subnet}.4`;
  ip("link", "add", runHost, "type", "veth", "peer", "name", runPeer);
  ip("link", "set", runHost, "master", bridge, "up");
  try {
    const createRuntime = script(
      "run-create-runtime.sh",
      `cat > ${records}/createRuntime.json
pid=$(sed -n 's/.*"pid":\\([0-9]*\\).*/\\1/p' ${records}/createRuntime.json)
readlink /proc/$pid/ns/net > ${records}/createRuntime.netns
if [ "$(readlink /proc/$pid/ns/net)" = "$(readlink /proc/self/ns/net)" ]; then echo "pid $pid is in the host's network namespace" >&2; exit 1; fi
ip link set ${runPeer} netns $pid
nsenter --net=/proc/$pid/ns/net sh -c 'ip link set ${runPeer} name eth0 && ip link set eth0 up && ip addr add ${runAddress}/24 dev eth0 && ip route add default via ${bridgeAddress}'`,
    );
    const poststart = script("run-poststart.sh", `cat > ${records}/poststart.json`);
    const poststop = script("run-poststop.sh", `cat > ${records}/poststop.json`);
    const bundle = busyboxBundle(`${workspace.dir}/run-hooked`, ["sh", "-c", `ip addr show eth0; timeout 60 wget -q -O - http://${bridgeAddress}:${port}/`], (spec) => {
      spec.hooks = { createRuntime: [{ path: createRuntime, env: [HOOK_PATH] }], poststart: [{ path: poststart, env: [HOOK_PATH] }], poststop: [{ path: poststop, env: [HOOK_PATH] }] };
    });
    const pidFile = join(workspace.dir, "run-hooked.pid");
    const ran = await runMoat(["--root", workspace.stateRoot, "run", "--pid-file", pidFile, "--bundle", bundle, "run-hooked"]);
    assert.equal(ran.code, 0, `${ran.stdout}\n${ran.stderr}\n${workspace.daemonLog().slice(-3000)}`);
    const state = JSON.parse(readFileSync(`${records}/createRuntime.json`, "utf8")) as Record<string, unknown>;
    const pid = Number(readFileSync(pidFile, "utf8"));
    assert.deepEqual([state.id, state.status, state.pid, state.bundle], ["run-hooked", "creating", pid, bundle], "the state on stdin, with the pid in --pid-file");
    assert.notEqual(readFileSync(`${records}/createRuntime.netns`, "utf8").trim(), readlinkSync("/proc/self/ns/net"));
    assert.match(ran.stdout, new RegExp(`inet ${runAddress.replace(/\./g, "\\.")}/24 `), ran.stdout);
    assert.match(ran.stdout, new RegExp(`hello from the host, ${runAddress.replace(/\./g, "\\.")}\\n`), ran.stdout);
    assert.deepEqual([readJson(records, "poststart.json").status, readJson(records, "poststop.json").status], ["running", "stopped"]);
    assert.throws(() => process.kill(pid, 0), "the process that stood for the container is gone");
    // The namespace was the sandbox's: unpinned at delete, it goes, and the veth with it.
    while (ip("-j", "link", "show").includes(`"${runHost}"`)) await sleep(100);
    // ociWorkspace's afterEach: no QEMU, mount (the pin), state or socket directory left.
  } finally {
    try {
      ip("link", "del", runHost);
    } catch {
      // Gone with the namespace.
    }
  }
});

test("a foreground moat run --bundle with hooks stopped by SIGTERM: the container gets it, poststop runs, nothing is left", async () => {
  const records = join(workspace.dir, "records-term");
  execFileSync("mkdir", ["-p", records]);
  const createRuntime = script("term-create-runtime.sh", `cat > ${records}/createRuntime.json`);
  const poststop = script("term-poststop.sh", `cat > ${records}/poststop.json`);
  const bundle = busyboxBundle(`${workspace.dir}/run-term`, ["sh", "-c", `trap "echo terminated; exit 3" TERM; echo started; sleep 600 & wait`], (spec) => {
    spec.hooks = { createRuntime: [{ path: createRuntime, env: [HOOK_PATH] }], poststop: [{ path: poststop, env: [HOOK_PATH] }] };
  });
  const running = await startMoat(["--root", workspace.stateRoot, "run", "--bundle", bundle, "run-term"], "started");
  const pid = (JSON.parse(readFileSync(`${records}/createRuntime.json`, "utf8")) as { pid: number }).pid;
  assert.notEqual(pid, running.child.pid, "a pid holder in a new namespace, not moat run itself");
  assert.doesNotThrow(() => process.kill(pid, 0), "it stands for the container while it runs");
  running.child.kill("SIGTERM");
  assert.equal(await running.closed, 3, running.stderr());
  assert.match(running.stdout(), /terminated\n/);
  assert.equal(readJson(records, "poststop.json").status, "stopped");
  assert.throws(() => process.kill(pid, 0), "the pid holder is gone");
  // ociWorkspace's afterEach: no QEMU, mount (the pin), state or socket directory left.
});

function readJson(dir: string, name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(dir, name), "utf8")) as Record<string, unknown>;
}
