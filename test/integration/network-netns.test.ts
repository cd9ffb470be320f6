// A container on the network namespace its caller made (issue 11, the tcfilter model): the
// test makes a namespace with a veth whose other end is on a test bridge (198.18.0.0/15, MTU
// 1400), runs `moat run --bundle` with that namespace in the spec, and the container sees the
// interface's address, MTU, MAC and default route, and reaches a server the test runs on the
// bridge's address. Afterwards nothing moat made (tap, qdisc, filter) is left in the namespace,
// also after a QEMU killed under the container; a bad namespace path is one clear error.
// Only addresses in the test's own bridge and namespace are contacted.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, afterEach, before, test } from "node:test";
import { busyboxBundle } from "./harness/bundle.js";
import { runMoat, startMoat } from "./harness/moat-cli.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const suffix = randomBytes(3).toString("hex");
const netnsName = `moat-nt-${suffix}`;
const netnsPath = `/run/netns/${netnsName}`;
const bridge = `mtb${suffix}`;
const hostEnd = `mth${suffix}`;
// A /24 of 198.18.0.0/15 of its own, so that two runs of this test on one host do not meet.
const subnet = `198.18.${100 + (parseInt(suffix.slice(0, 2), 16) % 150)}`;
const bridgeAddress = `${subnet}.1`;
const containerAddress = `${subnet}.2`;
const MTU = 1400;
let server: Server;
let port = 0;
let containerMac = "";

const ip = (...args: string[]) => execFileSync("ip", args, { encoding: "utf8" });
const inNetns = (command: string, ...args: string[]) => execFileSync("ip", ["netns", "exec", netnsName, command, ...args], { encoding: "utf8" });

/** What moat may have made in the namespace: links other than lo and eth0, and eth0's ingress qdisc and filters. */
function moatLeftovers(): string[] {
  const links = (JSON.parse(inNetns("ip", "-j", "link", "show")) as Array<{ ifname: string }>).map((link) => link.ifname).filter((name) => name !== "lo" && name !== "eth0");
  const qdisc = inNetns("tc", "qdisc", "show", "dev", "eth0", "ingress").trim();
  const filters = inNetns("tc", "filter", "show", "dev", "eth0", "ingress").trim();
  return [...links.map((name) => `link ${name}`), ...(qdisc ? [`qdisc ${qdisc}`] : []), ...(filters ? [`filter ${filters}`] : [])];
}

before(async () => {
  ip("link", "add", bridge, "mtu", String(MTU), "type", "bridge");
  ip("addr", "add", `${bridgeAddress}/24`, "dev", bridge);
  ip("link", "set", bridge, "up");
  ip("netns", "add", netnsName);
  ip("link", "add", hostEnd, "mtu", String(MTU), "type", "veth", "peer", "name", "eth0", "mtu", String(MTU), "netns", netnsName);
  ip("link", "set", hostEnd, "master", bridge, "up");
  inNetns("ip", "link", "set", "lo", "up");
  inNetns("ip", "link", "set", "eth0", "up");
  inNetns("ip", "addr", "add", `${containerAddress}/24`, "dev", "eth0");
  inNetns("ip", "route", "add", "default", "via", bridgeAddress, "dev", "eth0");
  containerMac = (JSON.parse(inNetns("ip", "-j", "link", "show", "eth0")) as Array<{ address: string }>)[0]?.address ?? "";
  server = createServer((request, response) => response.end(`hello from the host, ${request.socket.remoteAddress}\n`));
  server.listen(0, bridgeAddress);
  await once(server, "listening");
  port = (server.address() as AddressInfo).port; // listening on an IP address and port
});

afterEach(() => {
  assert.deepEqual(moatLeftovers(), [], `left in ${netnsPath}`);
  workspace.assertNothingLeft(DAEMON_FILES);
});

after(async () => {
  await workspace.stopDaemon();
  server?.close();
  for (const undo of [() => ip("netns", "del", netnsName), () => ip("link", "del", hostEnd), () => ip("link", "del", bridge)]) {
    try {
      undo();
    } catch {
      // Gone already (the veth goes with the namespace).
    }
  }
  workspace.remove();
});

function networkedBundle(name: string, args: string[]): string {
  return busyboxBundle(`${workspace.dir}/${name}`, args, (spec) => {
    const linux = spec.linux as { namespaces: Array<{ type: string; path?: string }> }; // the harness's spec has them
    linux.namespaces = linux.namespaces.map((entry) => (entry.type === "network" ? { type: "network", path: netnsPath } : entry));
  });
}

test("the container has the namespace's interface (address, MTU, MAC, default route) and reaches the host's bridge", async () => {
  const bundle = networkedBundle("bundle-net", ["sh", "-c", `ip addr show eth0; ip route; timeout 60 wget -q -O - http://${bridgeAddress}:${port}/`]);
  const result = await runMoat(["--root", workspace.stateRoot, "run", "--bundle", bundle, `net-${suffix}`], { MOAT_TRACE: "network,sandbox" });
  assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
  assert.match(result.stdout, new RegExp(`eth0: <[^>]*\\bUP\\b[^>]*> mtu ${MTU} `), result.stdout);
  assert.match(result.stdout, new RegExp(`link/ether ${containerMac} `), result.stdout);
  assert.match(result.stdout, new RegExp(`inet ${containerAddress.replace(/\./g, "\\.")}/24 `), result.stdout);
  assert.match(result.stdout, new RegExp(`^default via ${bridgeAddress.replace(/\./g, "\\.")} dev eth0`, "m"), result.stdout);
  assert.match(result.stdout, new RegExp(`hello from the host, ${containerAddress.replace(/\./g, "\\.")}\\n`), result.stdout);
  // moatd makes the sandbox (`moat run` is its client): its tracer writes to moatd's log.
  assert.match(workspace.daemonLog(), /connected eth0 <-> tap0_moat \(MTU 1400\)/, "the network tracer says what was made");
});

test("a QEMU killed under a networked container leaves no tap, qdisc or filter behind", async () => {
  const bundle = networkedBundle("bundle-kill", ["sh", "-c", "echo started; sleep 600"]);
  // The container runs, so the tap and the filters are in place.
  const { stderr, closed } = await startMoat(["--root", workspace.stateRoot, "run", "--bundle", bundle, `kill-${suffix}`], "started");
  assert.deepEqual(moatLeftovers().map((line) => line.split(" ").slice(0, 2).join(" ")).sort(), ["filter filter", "link tap0_moat", "qdisc qdisc"], "the tcfilter plumbing is there while the container runs");
  const qemu = workspace.qemuProcesses();
  assert.equal(qemu.length, 1, qemu.join("\n"));
  process.kill(Number(qemu[0]!.split(" ")[0]), "SIGKILL"); // one line, checked just above
  const code = await closed;
  assert.notEqual(code, 0, stderr());
  assert.deepEqual(moatLeftovers(), [], `left in ${netnsPath}; moat run said: ${stderr()}`);
  // afterEach: nothing left in the state root either.
});

test("a network namespace path that does not exist, or is not a namespace, is one clear error and nothing is made", async () => {
  for (const [path, message] of [
    [`/run/netns/moat-nt-missing-${suffix}`, `network namespace /run/netns/moat-nt-missing-${suffix}: does not exist`],
    ["/etc/hostname", "network namespace /etc/hostname: is not a namespace file"],
  ] as const) {
    const bundle = busyboxBundle(`${workspace.dir}/bundle-bad-${path.length}`, ["true"], (spec) => {
      const linux = spec.linux as { namespaces: Array<{ type: string; path?: string }> }; // the harness's spec has them
      linux.namespaces = linux.namespaces.map((entry) => (entry.type === "network" ? { type: "network", path } : entry));
    });
    const result = await runMoat(["--root", workspace.stateRoot, "run", "--bundle", bundle, `bad-${suffix}`]);
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stderr.split("\n").filter((line) => line.startsWith("moat: ")).length, 1, result.stderr);
    assert.ok(result.stderr.startsWith(`moat: ${message}\n`), result.stderr);
  }
});
