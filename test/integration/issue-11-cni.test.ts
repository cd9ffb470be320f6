// Issue 11 items 4 and 6: `moat run --network NAME` on a CNI network made by Debian's plugins
// (bridge + host-local + portmap + firewall) from a private conf dir, on a test bridge of
// 198.18.0.0/15 of its own: the container has the network's address, MTU and route, `-p`
// answers on the host's loopback, and everything goes with the container: a plugin that fails
// is one error naming it with nothing left; a QEMU killed under it, and a moatd killed under it
// and restarted, still tear it all down (taps, qdiscs, CNI's veth, address, port rules, the
// namespace). And moatd's create path (`moat create/start/delete`) on a caller's namespace
// leaves the namespace as the caller made it. Only addresses on this machine are contacted.
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { after, afterEach, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { busyboxBundle } from "./harness/bundle.js";
import { hostBridgeWithServer } from "./harness/host-bridge.js";
import { moatBinary, runMoat, startMoat } from "./harness/moat-cli.js";
import { createAsConmon, ociWorkspace } from "./harness/oci-runtime.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const { subreaper, moat } = ociWorkspace(workspace);
const suffix = randomBytes(3).toString("hex");
const bridge = `moatt${suffix}`;
// A /24 of 198.18.0.0/15 of its own (network-netns.test.ts takes 198.18.100-249).
const subnet = `198.18.${20 + (parseInt(suffix.slice(0, 2), 16) % 70)}`;
const bridgeAddress = `${subnet}.1`;
const MTU = 1400;
const network = `moatt-${suffix}`;
const confDir = `${workspace.dir}/net.d`;
const ipamDir = `${workspace.dir}/ipam`;
const hostPort = 20000 + (parseInt(suffix.slice(2, 6), 16) % 20000);
let server: Server;
let serverPort = 0;

const ip = (...args: string[]) => execFileSync("ip", args, { encoding: "utf8" });

function conflist(name: string, plugins: object[]): void {
  writeFileSync(`${confDir}/10-${name}.conflist`, JSON.stringify({ cniVersion: "1.0.0", name, plugins }, null, 2));
}

const bridgePlugin = {
  type: "bridge",
  bridge,
  isGateway: true,
  ipMasq: false,
  mtu: MTU,
  ipam: { type: "host-local", dataDir: ipamDir, ranges: [[{ subnet: `${subnet}.0/24` }]], routes: [{ dst: "0.0.0.0/0" }] },
};

/** What a networked sandbox may leave: its namespace, veths on the bridge, addresses held by host-local, port rules. */
function cniLeftovers(): string[] {
  const netns = ip("netns", "list")
    .split("\n")
    .filter((line) => line.includes(suffix));
  const veths = (JSON.parse(ip("-j", "link", "show", "master", bridge)) as Array<{ ifname: string }>).map((link) => `veth ${link.ifname} on ${bridge}`);
  const held = existsSync(`${ipamDir}/${network}`) ? readdirSync(`${ipamDir}/${network}`).filter((file) => file !== "lock" && !file.startsWith("last_reserved_ip")) : [];
  const rules = execFileSync("iptables-save", { encoding: "utf8" })
    .split("\n")
    .filter((line) => line.includes(`dport ${hostPort}`) || line.includes(`${subnet}.`));
  return [...netns.map((line) => `netns ${line}`), ...veths, ...held.map((file) => `address ${file} held`), ...rules.map((line) => `rule ${line}`)];
}

before(async () => {
  mkdirSync(confDir, { recursive: true });
  conflist(network, [bridgePlugin, { type: "portmap", capabilities: { portMappings: true } }, { type: "firewall" }]);
  ({ server, port: serverPort } = await hostBridgeWithServer(bridge, bridgeAddress, MTU));
});

afterEach(() => {
  assert.deepEqual(cniLeftovers(), [], "left by CNI");
  workspace.assertNothingLeft(DAEMON_FILES);
});

after(async () => {
  await workspace.stopDaemon();
  server?.close();
  try {
    ip("link", "del", bridge);
  } catch {
    // Never made.
  }
  workspace.remove();
});

const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runMoat(["--root", workspace.stateRoot, "run", "--cni-conf-dir", confDir, ...args], env);

test("moat run --network: the network's address, MTU and default route; the host's server is reached; -p answers", async () => {
  const address = subnet.replace(/\./g, "\\.");
  const probe = await run(["--network", network, "busybox", "sh", "-c", `ip addr show eth0; ip route; wget -q -O - http://${bridgeAddress}:${serverPort}/`], { MOAT_TRACE: "network" });
  assert.equal(probe.code, 0, `${probe.stdout}\n${probe.stderr}`);
  assert.match(probe.stdout, new RegExp(`eth0: <[^>]*\\bUP\\b[^>]*> mtu ${MTU} `), probe.stdout);
  assert.match(probe.stdout, new RegExp(`inet ${address}\\.(\\d+)/24 `), probe.stdout);
  assert.match(probe.stdout, new RegExp(`^default via ${address}\\.1 dev eth0`, "m"), probe.stdout);
  assert.match(probe.stdout, new RegExp(`hello from the host, ${address}\\.\\d+\\n`), probe.stdout);
  assert.match(workspace.daemonLog(), new RegExp(`${network}: portmap ADD exit status 0`), "the network tracer says which plugins ran");
  assert.deepEqual(cniLeftovers(), [], "torn down when the container exited");

  // -p: httpd in the container, published on the host's loopback through portmap.
  const id = `web-${suffix}`;
  const web = spawn(moatBinary, ["--root", workspace.stateRoot, "run", "--name", id, "--cni-conf-dir", confDir, "--network", network, "-p", `127.0.0.1:${hostPort}:80`, "busybox", "sh", "-c", "mkdir /w && echo served-by-moat > /w/index.html && httpd -f -p 80 -h /w"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  web.stderr.on("data", (chunk) => (stderr += chunk));
  const closed = once(web, "close");
  let answer = "";
  while (web.exitCode === null && answer === "") {
    answer = await fetch(`http://127.0.0.1:${hostPort}/`, { signal: AbortSignal.timeout(5000) }).then((response) => response.text(), () => "");
    if (answer === "") await sleep(500);
  }
  assert.equal(answer, "served-by-moat\n", stderr);
  assert.equal((await moat(["delete", "--force", id])).code, 0);
  await closed;
});

/**
 * `moat run --network --detach --bundle DIR ID`, its output in a file (the container keeps the
 * caller's stdio, as runc run -d's does): the exit status of moat run and what it said.
 */
function runDetached(id: string, args: string[], command: string[], edit?: Parameters<typeof busyboxBundle>[2]): { code: number | null; output: string } {
  const bundle = busyboxBundle(`${workspace.dir}/${id}`, command, edit);
  const outputPath = `${workspace.dir}/${id}.out`;
  const output = openSync(outputPath, "w");
  const ran = spawnSync(moatBinary, ["--root", workspace.stateRoot, "run", "--detach", "--cni-conf-dir", confDir, "--network", network, ...args, "--bundle", bundle, id], { stdio: ["ignore", output, output] });
  closeSync(output);
  return { code: ran.status, output: readFileSync(outputPath, "utf8") };
}

test("moat run --network --detach: the detached container is on the network with -p, reached from the host; delete tears it all down", async () => {
  const id = `detached-${suffix}`;
  // It fetches the host's greeting (naming its own address) and serves it on port 80.
  const ran = runDetached(id, ["-p", `127.0.0.1:${hostPort}:80`], ["sh", "-c", `mkdir /w && wget -q -O /w/index.html http://${bridgeAddress}:${serverPort}/ && httpd -f -p 80 -h /w`]);
  assert.equal(ran.code, 0, ran.output);
  assert.equal((await moat(["state", id])).code, 0);
  assert.deepEqual(inSandboxNetns(id), ["eth0", "lo", "tap0_moat", "mirred on eth0"], "on the network while it runs");
  let answer = "";
  for (let tries = 0; answer === "" && tries < 120; tries++) {
    answer = await fetch(`http://127.0.0.1:${hostPort}/`, { signal: AbortSignal.timeout(5000) }).then((response) => (response.ok ? response.text() : ""), () => "");
    if (answer === "") await sleep(500);
  }
  assert.match(answer, new RegExp(`^hello from the host, ${subnet.replace(/\./g, "\\.")}\\.\\d+\\n$`), `through -p: ${answer}\n${workspace.daemonLog().slice(-3000)}`);
  const address = answer.trim().split(", ")[1];
  const direct = await fetch(`http://${address}/`, { signal: AbortSignal.timeout(5000) }).then((response) => response.text());
  assert.equal(direct, answer, "reached at its address on the network too");
  const deleted = await moat(["delete", "--force", id]);
  assert.equal(deleted.code, 0, deleted.stderr);
  // afterEach: no namespace, veth, address or rule left, and nothing in the state root.
});

test("moat run --network --detach with hooks: they get a pid in the namespace CNI filled, add an interface there; the container has both", async () => {
  const id = `dethook-${suffix}`;
  const records = `${workspace.dir}/records-${id}`;
  mkdirSync(records);
  // A veth of the test's that the hook moves into the namespace of the pid it is given, as
  // Docker's libnetwork-setkey does; it goes with the namespace at delete.
  const hostEnd = `moathk${suffix}`;
  const peer = `moathp${suffix}`;
  const hookAddress = "198.19.251.2";
  ip("link", "add", hostEnd, "type", "veth", "peer", "name", peer);
  try {
    const hook = `${workspace.dir}/${id}-create-runtime.sh`;
    writeFileSync(
      hook,
      `#!/bin/sh
set -e
cat > ${records}/state.json
pid=$(sed -n 's/.*"pid":\\([0-9]*\\).*/\\1/p' ${records}/state.json)
readlink /proc/$pid/ns/net > ${records}/netns
nsenter --net=/proc/$pid/ns/net ip -j link show > ${records}/links.json
ip link set ${peer} netns $pid
nsenter --net=/proc/$pid/ns/net sh -c 'ip link set ${peer} name eth1 && ip link set eth1 up && ip addr add ${hookAddress}/24 dev eth1'
`,
      { mode: 0o755 },
    );
    const ran = runDetached(id, [], ["sh", "-c", "ip addr show eth0; ip addr show eth1; sleep 600"], (spec) => {
      spec.hooks = { createRuntime: [{ path: hook, env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"] }] };
    });
    assert.equal(ran.code, 0, `${ran.output}\n${workspace.daemonLog().slice(-3000)}`);
    const links = (JSON.parse(readFileSync(`${records}/links.json`, "utf8")) as Array<{ ifname: string }>).map((link) => link.ifname).sort();
    assert.deepEqual(links, ["eth0", "lo"], "the hook's pid is in the namespace CNI filled");
    assert.equal(readFileSync(`${records}/netns`, "utf8").trim(), `net:[${statSync(`/run/netns/moat-${id}`).ino}]`, "that namespace is the sandbox's");
    assert.deepEqual(inSandboxNetns(id), ["eth0", "eth1", "lo", "tap0_moat", "tap1_moat", "mirred on eth0"], "the sandbox carries CNI's interface and the hook's");
    const output = `${workspace.dir}/${id}.out`;
    while (!readFileSync(output, "utf8").includes("eth1:") && workspace.qemuProcesses().length > 0) await sleep(100);
    const out = readFileSync(output, "utf8");
    assert.match(out, new RegExp(`inet ${subnet.replace(/\./g, "\\.")}\\.\\d+/24 `), out);
    assert.match(out, new RegExp(`inet ${hookAddress.replace(/\./g, "\\.")}/24 `), out);
    const deleted = await moat(["delete", "--force", id]);
    assert.equal(deleted.code, 0, deleted.stderr);
    // afterEach: no namespace, veth, address or rule left, and nothing in the state root.
  } finally {
    try {
      ip("link", "del", hostEnd);
    } catch {
      // Gone with the namespace.
    }
  }
});

test("moat run --network --detach on a network whose plugin fails: one error naming it, nothing left", async () => {
  conflist(`${network}-detmissing`, [bridgePlugin, { type: `no-such-plugin-${suffix}` }]);
  const bundle = busyboxBundle(`${workspace.dir}/detfail2`, ["true"]);
  const failing = await runMoat(["--root", workspace.stateRoot, "run", "--detach", "--cni-conf-dir", confDir, "--network", `${network}-detmissing`, "--bundle", bundle, `detfail2-${suffix}`]);
  assert.equal(failing.code, 1, failing.stderr);
  assert.match(failing.stderr, new RegExp(`^moat: sandbox detfail2-${suffix}: CNI network ${network}-detmissing .*: plugin no-such-plugin-${suffix} \\(plugins\\[1\\]\\) ADD`), failing.stderr);
  assert.deepEqual(cniLeftovers(), [], "left by CNI");
  workspace.assertNothingLeft(DAEMON_FILES);
});

test("a CNI plugin that fails is one error naming it, and nothing is left", async () => {
  conflist(`${network}-missing`, [bridgePlugin, { type: `no-such-plugin-${suffix}` }]);
  conflist(`${network}-bad`, [{ ...bridgePlugin, mtu: "big" }]);
  conflist(`${network}-field`, [{ type: "bridge", capabilities: "all" }]);
  const cases = [
    [`${network}-missing`, "MOAT_CNI_PLUGIN_MISSING", new RegExp(`^moat: sandbox [^:]+: CNI network ${network}-missing \\(${confDir}/10-${network}-missing\\.conflist\\): plugin no-such-plugin-${suffix} \\(plugins\\[1\\]\\) ADD for [^:]+: no executable no-such-plugin-${suffix} in /usr/lib/cni, /opt/cni/bin\\n`)],
    [`${network}-bad`, "MOAT_CNI_PLUGIN", new RegExp(`^moat: sandbox [^:]+: CNI network ${network}-bad \\(${confDir}/10-${network}-bad\\.conflist\\): plugin bridge \\(plugins\\[0\\]\\) ADD for [^:]+: .*mtu.*\\n`)],
    [`${network}-field`, "MOAT_CNI_CONFIG", new RegExp(`^moat: ${confDir}/10-${network}-field\\.conflist: plugins\\[0\\]\\.capabilities: must be an object of booleans\\n`)],
    [`${network}-nowhere`, "MOAT_CNI_NOT_FOUND", new RegExp(`^moat: CNI network "${network}-nowhere": no \\.conf, \\.conflist or \\.json file in ${confDir} names it\\n`)],
  ] as const;
  for (const [name, code, message] of cases) {
    const result = await run(["--name", `failing-${suffix}`, "--network", name, "busybox", "true"]);
    assert.equal(result.code, 1, `${name}: ${result.stderr}`);
    assert.equal(result.stderr.split("\n").filter((line) => line.startsWith("moat: ")).length, 1, `${name} (${code}): ${result.stderr}`);
    assert.match(result.stderr, message, `${name} (${code})`);
    assert.deepEqual(cniLeftovers(), [], `${name}: left by CNI`);
    workspace.assertNothingLeft(DAEMON_FILES);
  }
  const publish = await run(["--network", network, "-p", "80", "busybox", "true"]);
  assert.equal(publish.code, 1);
  assert.match(publish.stderr, /^moat: -p "80": not \[IP:\]HOST:CONTAINER\[\/tcp\|udp\]\n/);
});

/** Starts `moat run --network` with a container that says "started" and sleeps; resolves once it has said it. */
async function sleeper(id: string) {
  const running = await startMoat(["--root", workspace.stateRoot, "run", "--name", id, "--cni-conf-dir", confDir, "--network", network, "busybox", "sh", "-c", "echo started; sleep 600"], "started");
  return { closed: running.closed, stderr: running.stderr };
}

/** The sandbox's own namespace, and moat's tap and filters in it, while it runs. */
function inSandboxNetns(id: string): string[] {
  const name = `moat-${id}`;
  const links = (JSON.parse(ip("-n", name, "-j", "link", "show")) as Array<{ ifname: string }>).map((link) => link.ifname).sort();
  const filters = execFileSync("ip", ["netns", "exec", name, "tc", "filter", "show", "dev", "eth0", "ingress"], { encoding: "utf8" }).includes("mirred") ? ["mirred on eth0"] : [];
  return [...links, ...filters];
}

test("item 6: a QEMU SIGKILLed under a networked container: the caller sees the exit, and the network goes", async () => {
  const id = `killed-${suffix}`;
  const container = await sleeper(id);
  assert.deepEqual(inSandboxNetns(id), ["eth0", "lo", "tap0_moat", "mirred on eth0"]);
  const qemu = workspace.qemuProcesses();
  assert.equal(qemu.length, 1, qemu.join("\n"));
  process.kill(Number(qemu[0]!.split(" ")[0]), "SIGKILL"); // one line, checked just above
  const code = await container.closed;
  assert.equal(code, 137, container.stderr());
  // afterEach: no namespace, veth, address or rule left, and nothing in the state root.
});

test("item 6: moatd killed under a networked container: the next moatd adopts it, and the delete tears it down", async () => {
  const id = `adopted-${suffix}`;
  const container = await sleeper(id);
  const daemons = workspace.daemonProcesses();
  assert.equal(daemons.length, 1, daemons.join("; "));
  process.kill(Number(daemons[0]!.split(" ")[0]), "SIGKILL"); // length checked just above
  const state = await moat(["state", id]); // starts a new moatd, which adopts the sandbox
  assert.equal(state.code, 0, `${state.stderr}\nmoatd.log:\n${workspace.daemonLog()}`);
  assert.deepEqual(inSandboxNetns(id), ["eth0", "lo", "tap0_moat", "mirred on eth0"], "the adopted sandbox is still on its network");
  assert.equal((await moat(["delete", "--force", id])).code, 0);
  const code = await container.closed;
  assert.equal(code, 137, container.stderr());
});

test("item 6: moatd's create path on a caller's namespace: create, start, delete leave the namespace as the caller made it", async () => {
  const netnsName = `moatt-own-${suffix}`;
  const hostEnd = `moatth${suffix}`;
  ip("netns", "add", netnsName);
  try {
    ip("link", "add", hostEnd, "mtu", String(MTU), "type", "veth", "peer", "name", "eth0", "mtu", String(MTU), "netns", netnsName);
    ip("link", "set", hostEnd, "master", bridge, "up");
    ip("-n", netnsName, "link", "set", "eth0", "up");
    ip("-n", netnsName, "addr", "add", `${subnet}.250/24`, "dev", "eth0");
    const before = ip("-n", netnsName, "-d", "link", "show").replace(/\d+ (bytes|packets)/g, "");
    const bundle = busyboxBundle(`${workspace.dir}/create-path`, ["sh", "-c", `wget -q -O - http://${bridgeAddress}:${serverPort}/; sleep 600`], (spec) => {
      const linux = spec.linux as { namespaces: Array<{ type: string; path?: string }> }; // the harness's spec has them
      linux.namespaces = linux.namespaces.map((entry) => (entry.type === "network" ? { type: "network", path: `/run/netns/${netnsName}` } : entry));
    });
    const id = `created-${suffix}`;
    const container = createAsConmon(subreaper, workspace.stateRoot, bundle, id, "");
    assert.equal(await container.created, 0, container.stderr());
    assert.equal((await moat(["start", id])).code, 0);
    while (!container.stdout().includes("hello from the host") && workspace.qemuProcesses().length > 0) await sleep(100);
    assert.match(container.stdout(), new RegExp(`hello from the host, ${subnet.replace(/\./g, "\\.")}\\.250\\n`));
    assert.ok(ip("-n", netnsName, "link", "show").includes("tap0_moat"), "the tap is in the caller's namespace while it runs");
    assert.equal((await moat(["delete", "--force", id])).code, 0);
    await container.standIn;
    assert.equal(ip("-n", netnsName, "-d", "link", "show").replace(/\d+ (bytes|packets)/g, ""), before, "the namespace's links are as the caller left them");
    assert.equal(execFileSync("ip", ["netns", "exec", netnsName, "tc", "qdisc", "show", "dev", "eth0", "ingress"], { encoding: "utf8" }).trim(), "", "no ingress qdisc left on eth0");
  } finally {
    // The host's end first: the namespace's own veth goes with it only once the kernel has cleaned the namespace up.
    for (const undo of [() => ip("link", "del", hostEnd), () => ip("netns", "del", netnsName)]) {
      try {
        undo();
      } catch {
        // Never made.
      }
    }
  }
});
