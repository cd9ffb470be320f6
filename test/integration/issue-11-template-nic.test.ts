// Networked sandboxes restore from VM templates (issue 11 item 2, docs/networking.md): a
// sandbox with one interface restores from the template with one backend-less NIC, with its
// tap behind it, and has traffic; one with two interfaces from the template with two; one
// with no network from the template without NICs, or from the warm pool, whose VMs have no
// NIC; a few networked restores in a row all answer (the relay once dropped a clone's first
// answer: docs/templates.md). Only addresses on the test's own bridges are contacted.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, afterEach, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { busyboxBundle } from "./harness/bundle.js";
import { runMoat, startMoat } from "./harness/moat-cli.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const suffix = randomBytes(3).toString("hex");
const MTU = 1400;
const config = workspace.configFile("pool", "[factory]\nvm_cache_number = 1\n");
const moat = (args: string[], env: NodeJS.ProcessEnv = {}) => runMoat(["--config", config, ...args], env);
/** Restoring a pool VM under TCG on a busy machine; a bound so that a broken pool fails the test instead of hanging it. */
const FILL_WAIT_MS = 300_000;

// Two bridges, each with a /24 of 198.18.0.0/15 of its own and a server on its address.
const third = 100 + (parseInt(suffix.slice(0, 2), 16) % 70);
const bridges = [0, 1].map((index) => ({ name: `mtb${index}${suffix}`, subnet: `198.18.${third + 70 * index}` }));
const servers: Array<{ server: Server; port: number }> = [];
// One namespace with one interface (eth0 on bridge 0), one with two (eth0 on bridge 0, eth1 on bridge 1).
const namespaces = [
  { name: `moat-tn1-${suffix}`, links: [0] },
  { name: `moat-tn2-${suffix}`, links: [0, 1] },
].map((ns, nsIndex) => ({ ...ns, path: `/run/netns/${ns.name}`, host: 10 + nsIndex }));

const ip = (...args: string[]) => execFileSync("ip", args, { encoding: "utf8" });
const inNetns = (netns: string, command: string, ...args: string[]) => execFileSync("ip", ["netns", "exec", netns, command, ...args], { encoding: "utf8" });
const macOf = (netns: string, link: string) => (JSON.parse(inNetns(netns, "ip", "-j", "link", "show", link)) as Array<{ address: string }>)[0]?.address ?? "";

/** What moat may have made in a namespace: links other than lo and eth*, and ingress qdiscs. */
function moatLeftovers(): string[] {
  return namespaces.flatMap(({ name }) => {
    const links = (JSON.parse(inNetns(name, "ip", "-j", "link", "show")) as Array<{ ifname: string }>).map((link) => link.ifname).filter((link) => link !== "lo" && !link.startsWith("eth"));
    const qdiscs = inNetns(name, "tc", "qdisc", "show").split("\n").filter((line) => line.includes("ingress"));
    return [...links.map((link) => `${name}: link ${link}`), ...qdiscs.map((line) => `${name}: ${line}`)];
  });
}

before(async () => {
  for (const { name, subnet } of bridges) {
    ip("link", "add", name, "mtu", String(MTU), "type", "bridge");
    ip("addr", "add", `${subnet}.1/24`, "dev", name);
    ip("link", "set", name, "up");
    const server = createServer((request, response) => response.end(`hello from ${subnet}.1 to ${request.socket.remoteAddress}\n`));
    server.listen(0, `${subnet}.1`);
    await once(server, "listening");
    servers.push({ server, port: (server.address() as AddressInfo).port }); // listening on an IP address and port
  }
  for (const ns of namespaces) {
    ip("netns", "add", ns.name);
    inNetns(ns.name, "ip", "link", "set", "lo", "up");
    ns.links.forEach((bridgeIndex, linkIndex) => {
      const hostEnd = `mth${ns.host}${linkIndex}${suffix}`;
      const bridge = bridges[bridgeIndex]!; // indexes of the two bridges above
      ip("link", "add", hostEnd, "mtu", String(MTU), "type", "veth", "peer", "name", `eth${linkIndex}`, "mtu", String(MTU), "netns", ns.name);
      ip("link", "set", hostEnd, "master", bridge.name, "up");
      inNetns(ns.name, "ip", "link", "set", `eth${linkIndex}`, "up");
      inNetns(ns.name, "ip", "addr", "add", `${bridge.subnet}.${ns.host}/24`, "dev", `eth${linkIndex}`);
    });
  }
  // moatd inherits the tracer: its log says which path each start took and why the pool did not serve it.
  const list = await moat(["list"], { MOAT_TRACE: "sandbox,factory,network,qemu" });
  assert.equal(list.code, 0, list.stderr);
});

afterEach(() => {
  assert.deepEqual(moatLeftovers(), [], "left in the test's namespaces");
});

after(async () => {
  await workspace.stopDaemon();
  workspace.assertNothingLeft(DAEMON_FILES);
  for (const { server } of servers) server.close();
  for (const ns of namespaces) {
    try {
      ip("netns", "del", ns.name); // the veths go with it
    } catch {
      // Gone already.
    }
  }
  for (const { name } of bridges) {
    try {
      ip("link", "del", name);
    } catch {
      // Gone already.
    }
  }
  workspace.remove();
});

function networkedBundle(name: string, netnsPath: string, args: string[]): string {
  return busyboxBundle(`${workspace.dir}/${name}`, args, (spec) => {
    const linux = spec.linux as { namespaces: Array<{ type: string; path?: string }> }; // the harness's spec has them
    linux.namespaces = linux.namespaces.map((entry) => (entry.type === "network" ? { type: "network", path: netnsPath } : entry));
  });
}

/** The template key a start was restored from, from the sandbox tracer's summary on moat run's stderr. */
function templateOf(stderr: string): string {
  const match = /agent ready after \d+ ms \(from a template, ([0-9a-f]{16}):/.exec(stderr);
  assert.ok(match, `restored from a template:\n${stderr}`);
  return match[1]!; // the group is in the pattern
}

const fetchFrom = (bridgeIndex: number) => `timeout 60 wget -q -O - http://${bridges[bridgeIndex]!.subnet}.1:${servers[bridgeIndex]!.port}/`; // two bridges, two servers
const keys: string[] = [];

test("a sandbox with one interface restores from the template with one NIC, with its tap behind it, and has traffic", async () => {
  const ns = namespaces[0]!; // the one-interface namespace
  const bundle = networkedBundle("bundle-one", ns.path, ["sh", "-c", `ip addr show eth0; ${fetchFrom(0)}`]);
  const run = await moat(["run", "--bundle", bundle, `one-${suffix}`], { MOAT_TRACE: "sandbox" });
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  keys.push(templateOf(run.stderr));
  assert.match(run.stdout, new RegExp(`link/ether ${macOf(ns.name, "eth0")} `), "the agent gave the template's NIC the interface's MAC");
  assert.match(run.stdout, new RegExp(`hello from ${bridges[0]!.subnet}\\.1 to ${bridges[0]!.subnet}\\.${ns.host}\\n`), run.stdout);
  assert.match(workspace.daemonLog(), new RegExp(`one-${suffix}: warm pool: (empty|it holds VMs of template [0-9a-f]{16}, not ${keys[0]})`), "the pool (no networked VMs in this configuration) says why it did not serve");
  assert.match(workspace.daemonLog(), new RegExp(`one-${suffix}: .*-incoming defer .*-netdev tap,id=net-nic0,fd=3 -device virtio-net-device,id=nic0,mac=02:6d:6f:61:74:00,guest_announce=off,netdev=net-nic0 `), "QEMU restored with the tap behind the template's NIC");
});

test("a sandbox with two interfaces restores from the template with two NICs and reaches both bridges", async () => {
  const ns = namespaces[1]!; // the two-interface namespace
  const bundle = networkedBundle("bundle-two", ns.path, ["sh", "-c", `ip addr show eth0; ip addr show eth1; ${fetchFrom(0)}; ${fetchFrom(1)}`]);
  const run = await moat(["run", "--bundle", bundle, `two-${suffix}`], { MOAT_TRACE: "sandbox" });
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  keys.push(templateOf(run.stderr));
  for (const link of ["eth0", "eth1"]) assert.match(run.stdout, new RegExp(`link/ether ${macOf(ns.name, link)} `), `${link}'s MAC`);
  for (const bridge of bridges) assert.match(run.stdout, new RegExp(`hello from ${bridge.subnet}\\.1 to ${bridge.subnet}\\.${ns.host}\\n`), run.stdout);
  assert.equal(new Set(keys).size, keys.length, `one template per NIC count: ${keys}`);
});

test("five networked restores in a row all answer and have traffic", async () => {
  const ns = namespaces[0]!; // the one-interface namespace
  for (let round = 0; round < 5; round++) {
    const bundle = networkedBundle(`bundle-row-${round}`, ns.path, ["sh", "-c", fetchFrom(0)]);
    const run = await moat(["run", "--bundle", bundle, `row${round}-${suffix}`], { MOAT_TRACE: "sandbox" });
    assert.equal(run.code, 0, `round ${round}: ${run.stdout}\n${run.stderr}`);
    assert.equal(templateOf(run.stderr), keys[0], `round ${round} restored from the one-NIC template`);
    assert.match(run.stdout, /^hello from /, `round ${round}`);
  }
});

test("a sandbox with no network comes from the warm pool, whose VMs have no NIC, and its template is not a networked one", async () => {
  const deadline = Date.now() + FILL_WAIT_MS;
  for (;;) {
    const status = await moat(["factory", "status"]);
    assert.equal(status.code, 0, status.stderr);
    if (/^warm pool: 1 of 1 VMs ready/m.test(status.stdout)) break;
    assert.ok(Date.now() < deadline, `the pool did not fill within ${FILL_WAIT_MS} ms:\n${workspace.daemonLog()}`);
    await sleep(500);
  }
  const { stderr: stderrSoFar, closed } = await startMoat(["--config", config, "run", "--name", `plain-${suffix}`, "busybox", "sh", "-c", "echo started; sleep 600"], "started", { MOAT_TRACE: "sandbox" });
  const stderr = stderrSoFar();
  const match = /\(from the warm pool, template ([0-9a-f]{16}):/.exec(stderr);
  assert.ok(match, stderr);
  assert.ok(!keys.includes(match[1]!), `the pool's template is not a networked one: ${match[1]} in ${keys}`); // the group is in the pattern
  const qemus = workspace.qemuProcesses();
  assert.ok(qemus.length >= 1, "the sandbox's QEMU runs");
  assert.deepEqual(qemus.filter((line) => line.includes("virtio-net")), [], "no VM without a network has a NIC");
  const kill = await moat(["kill", `plain-${suffix}`, "KILL"]);
  assert.equal(kill.code, 0, kill.stderr);
  await closed; // moat run removes its container when it exits
});
