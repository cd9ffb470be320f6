// Issue 11, item 3 on the containerd path: a containerd client (containerd's own Go client, as
// nerdctl and Docker >= 23 are built on it) gives moat a spec whose host hooks do what
// nerdctl's do: a createRuntime hook reads the state, puts a CNI network (Debian's bridge and
// host-local plugins, a private config, a test bridge on 198.18.0.0/15) into the network
// namespace of the pid it is given, and a poststop hook undoes it. The pid is the task's (the
// shim's pid holder, started in a new namespace of its own because containerd's default spec
// asks for one without a path); the sandbox is connected to that namespace after the hook ran,
// so the container has the interface and reaches a server the test runs on the bridge. poststop
// runs at the task's delete, also after its QEMU was killed; nothing is left either way.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { join } from "node:path";
import { after, before, beforeEach, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { containerdForTestFile, NAMESPACE } from "./harness/containerd.js";
import { repoRoot } from "./harness/moat-cli.js";
import { hostBridgeWithServer } from "./harness/host-bridge.js";
import { BUSYBOX_IMAGE } from "./harness/oci-image.js";

const { workspace, containerd } = containerdForTestFile();
const client = join(repoRoot, "dist", "test", "bin", "moat-go-client");
const suffix = randomBytes(3).toString("hex");
const bridge = `mkh${suffix}`;
// A /24 of 198.18.0.0/15 of its own (issue-11-cni takes 198.18.20-89, issue-11-hooks 100-249).
const subnet = `198.18.${90 + (parseInt(suffix.slice(0, 2), 16) % 10)}`;
const bridgeAddress = `${subnet}.1`;
const network = `moat-hooks-${suffix}`;
const records = join(workspace.dir, "records");
const ipamDir = join(workspace.dir, "ipam");
const confFile = join(workspace.dir, "cni-net.json");
const HOOK_ENV = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"];
let server: Server;
let serverPort = 0;

const ip = (...args: string[]) => execFileSync("ip", args, { encoding: "utf8" });

function script(name: string, body: string): string {
  const path = join(workspace.dir, name);
  writeFileSync(path, `#!/bin/sh\nset -e\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** What the network may leave: veths on the bridge, addresses host-local holds. */
function cniLeftovers(): string[] {
  const veths = (JSON.parse(ip("-j", "link", "show", "master", bridge)) as Array<{ ifname: string }>).map((link) => `veth ${link.ifname} on ${bridge}`);
  const held = existsSync(join(ipamDir, network)) ? readdirSync(join(ipamDir, network)).filter((file) => file !== "lock" && !file.startsWith("last_reserved_ip")) : [];
  return [...veths, ...held.map((file) => `address ${file} held`)];
}

// nerdctl's hooks, in shell: CNI ADD into the namespace of the state's pid, DEL by container id.
const STATE_FIELDS = `pid=$(sed -n 's/.*"pid":\\([0-9]*\\).*/\\1/p' "$1")
id=$(sed -n 's/.*"id":"\\([^"]*\\)".*/\\1/p' "$1")`;
let hooksFile = "";
// The same hooks for a spec that names its namespace by path; the hook refuses a pid in its own
// (the host's) namespace rather than put a network there.
let pathHooksFile = "";

before(async () => {
  mkdirSync(ipamDir, { recursive: true });
  writeFileSync(confFile, JSON.stringify({ cniVersion: "1.0.0", name: network, type: "bridge", bridge, isGateway: true, ipMasq: false, ipam: { type: "host-local", dataDir: ipamDir, ranges: [[{ subnet: `${subnet}.0/24` }]], routes: [{ dst: "0.0.0.0/0" }] } }));
  ({ server, port: serverPort } = await hostBridgeWithServer(bridge, bridgeAddress));
  const cni = `CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni /usr/lib/cni/bridge < ${confFile}`;
  const createRuntime = script(
    "create-runtime.sh",
    `cat > ${records}/createRuntime.json
set -- ${records}/createRuntime.json
${STATE_FIELDS}
readlink /proc/$pid/ns/net > ${records}/createRuntime.netns
CNI_COMMAND=ADD CNI_CONTAINERID=$id CNI_NETNS=/proc/$pid/ns/net ${cni} > ${records}/add.json`,
  );
  const poststart = script("poststart.sh", `cat > ${records}/poststart.json`);
  const poststop = script(
    "poststop.sh",
    `cat > ${records}/poststop.json
set -- ${records}/poststop.json
${STATE_FIELDS}
CNI_COMMAND=DEL CNI_CONTAINERID=$id CNI_NETNS= ${cni}`,
  );
  hooksFile = join(workspace.dir, "hooks.json");
  writeFileSync(hooksFile, JSON.stringify({ createRuntime: [{ path: createRuntime, env: HOOK_ENV }], poststart: [{ path: poststart, env: HOOK_ENV }], poststop: [{ path: poststop, env: HOOK_ENV }] }));
  const guarded = script(
    "create-runtime-guarded.sh",
    `state=$(cat)
pid=$(echo "$state" | sed -n 's/.*"pid":\\([0-9]*\\).*/\\1/p')
if [ "$(readlink /proc/$pid/ns/net)" = "$(readlink /proc/self/ns/net)" ]; then echo "pid $pid is in the host's network namespace" >&2; exit 1; fi
echo "$state" | ${createRuntime}`,
  );
  pathHooksFile = join(workspace.dir, "path-hooks.json");
  writeFileSync(pathHooksFile, JSON.stringify({ createRuntime: [{ path: guarded, env: HOOK_ENV }], poststart: [{ path: poststart, env: HOOK_ENV }], poststop: [{ path: poststop, env: HOOK_ENV }] }));
});

beforeEach(() => {
  rmSync(records, { recursive: true, force: true });
  mkdirSync(records);
});

after(() => {
  server?.close();
  try {
    ip("link", "del", bridge);
  } catch {
    // Never made.
  }
});

function explain(): string {
  return `--- moatd.log (tail)\n${workspace.daemonLog().slice(-4000)}\n--- containerd.log (tail)\n${containerd.log().slice(-3000)}`;
}

/** Runs the Go client's hooks case (with `netns`, the spec names that namespace by path); resolves with what it printed, parsed. */
function hooked(id: string, args: string[], netns?: string): Promise<Record<string, unknown>> {
  assert.ok(existsSync(client), `${client} is not built (make build)`);
  const where = netns ? ["-hooks", pathHooksFile, "-netns", netns] : ["-hooks", hooksFile];
  const child = spawn(client, ["-address", containerd.socket, "-namespace", NAMESPACE, "-image", BUSYBOX_IMAGE, "-fifo-dir", containerd.fifoDir, ...where, "hooks", id, ...args], { env: containerd.env(), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  return once(child, "close").then(([code]) => {
    assert.equal(code, 0, `moat-go-client hooks: ${stderr}\n${explain()}`);
    return JSON.parse(stdout) as Record<string, unknown>; // the client prints one JSON object
  });
}

const readJson = (name: string) => JSON.parse(readFileSync(join(records, name), "utf8")) as Record<string, unknown>;

test("a createRuntime hook puts a CNI network into the task's namespace; the container has it and reaches the host; poststop undoes it at delete", async () => {
  const address = subnet.replace(/\./g, "\\.");
  const seen = await hooked("hooked", ["sh", "-c", `ip addr show eth0; ip route; wget -q -O - http://${bridgeAddress}:${serverPort}/`]);
  const out = String(seen.stdout);
  assert.equal(seen.exitStatus, 0, `${out}\n${String(seen.stderr)}\n${explain()}`);

  const state = readJson("createRuntime.json");
  assert.equal(state.pid, seen.pid, "the hook's state has the task's pid");
  assert.equal(state.status, "creating");
  assert.equal(state.id, "hooked");
  const hostNetns = readlinkSync("/proc/self/ns/net");
  assert.equal(readFileSync(join(records, "createRuntime.netns"), "utf8").trim(), seen.netns, "the hook saw the task pid's namespace");
  assert.notEqual(seen.netns, hostNetns, "the task's pid is in a new network namespace, not the host's");
  assert.equal(readJson("poststart.json").status, "running");

  assert.match(out, /eth0: <[^>]*\bUP\b[^>]*> mtu 1500 /, out);
  assert.match(out, new RegExp(`inet ${address}\\.\\d+/24 `), out);
  assert.match(out, new RegExp(`^default via ${address}\\.1 dev eth0`, "m"), out);
  assert.match(out, new RegExp(`hello from the host, ${address}\\.\\d+\\n`), out);

  // The client deleted the task before it exited: poststop ran, with the state of a stopped container.
  const stopped = readJson("poststop.json");
  assert.deepEqual([stopped.id, stopped.status], ["hooked", "stopped"]);
  assert.deepEqual(cniLeftovers(), [], "the network is undone");
  await containerd.assertNothingLeft();
});

test("a QEMU killed under a hooked task: the task ends (137), delete runs poststop, nothing is left", async () => {
  const running = hooked("hooked-killed", ["sleep", "600"]);
  // The task runs once poststart has run (after the start, before Start answers).
  while (!existsSync(join(records, "poststart.json"))) await sleep(200);
  const [qemu] = workspace.qemuProcesses();
  assert.ok(existsSync(join(workspace.stateRoot, "hooked-killed.netns")), "the task's namespace is pinned beside its sandbox");
  process.kill(Number(qemu?.trim().split(/\s+/)[0]), "SIGKILL");
  const seen = await running;
  assert.equal(seen.exitStatus, 137, explain());
  assert.ok(existsSync(join(records, "add.json")), "createRuntime ran");
  assert.equal(readJson("poststop.json").status, "stopped");
  assert.deepEqual(cniLeftovers(), [], "the network is undone");
  await containerd.assertNothingLeft();
});

test("a spec that names its network namespace by path: the hooks' pid is in that namespace, the network they put there is the container's", async () => {
  // A namespace the test makes, as CRI makes a pod's; the caller's, so it stays after the task.
  const name = `mkp${suffix}`;
  ip("netns", "add", name);
  try {
    const path = `/run/netns/${name}`;
    const address = subnet.replace(/\./g, "\\.");
    const seen = await hooked("hooked-path", ["sh", "-c", `ip addr show eth0; wget -q -O - http://${bridgeAddress}:${serverPort}/`], path);
    const out = String(seen.stdout);
    assert.equal(seen.exitStatus, 0, `${out}\n${String(seen.stderr)}\n${explain()}`);
    const pathNetns = `net:[${statSync(path).ino}]`;
    assert.equal(readFileSync(join(records, "createRuntime.netns"), "utf8").trim(), pathNetns, "the hook's pid is in the spec's namespace");
    assert.equal(seen.netns, pathNetns, "the task's pid is in the spec's namespace");
    assert.match(out, new RegExp(`inet ${address}\\.\\d+/24 `), out);
    assert.match(out, new RegExp(`hello from the host, ${address}\\.\\d+\\n`), out);
    assert.equal(readJson("poststop.json").status, "stopped");
    // moat's tap, qdiscs and filters are gone; the namespace is the caller's and stays, with
    // the interface its hook put there (CNI's DEL without a namespace releases the address).
    const links = (JSON.parse(ip("-n", name, "-j", "link", "show")) as Array<{ ifname: string }>).map((link) => link.ifname).sort();
    assert.deepEqual(links, ["eth0", "lo"]);
    assert.equal(execFileSync("ip", ["netns", "exec", name, "tc", "qdisc", "show", "dev", "eth0", "ingress"], { encoding: "utf8" }).trim(), "", "no ingress qdisc left on eth0");
    await containerd.assertNothingLeft();
  } finally {
    ip("netns", "del", name);
  }
  // The veth goes with the caller's namespace, once the kernel has cleaned it up.
  while (cniLeftovers().length > 0) await sleep(100);
});
