// A container on the network namespace its caller made (issue 11, the tcfilter model): the
// test makes a namespace with a veth whose other end is on a test bridge (198.18.0.0/15, MTU
// 1400), runs `moat run --bundle` with that namespace in the spec, and the container sees the
// interface's address, MTU, MAC and default route, and reaches a server the test runs on the
// bridge's address. Afterwards nothing moat made (tap, qdisc, filter) is left in the namespace,
// also after a QEMU killed under the container; a bad namespace path is one clear error.
// Port-forward (docs/networking.md): a TCP connection to 127.0.0.1 in the namespace reaches a
// server on the guest's loopback through moat's relay, one to a port where nothing listens is
// reset, and at delete moat's REDIRECT rules go while the namespace's own rule stays.
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

/** moat's port-forward rules in the namespace (both families), as "nat -A …" / "nat6 -A …". */
function portForwardRules(): string[] {
  const rules = (tool: string, label: string) =>
    inNetns(tool, "-t", "nat")
      .split("\n")
      .filter((line) => line.includes("moat port-forward"))
      .map((line) => `${label} ${line}`);
  return [...rules("iptables-save", "nat"), ...rules("ip6tables-save", "nat6")];
}

/** Connects to 127.0.0.1:`port` inside the namespace, sends an HTTP request, and says what came back and how it ended. */
function fetchInNetns(port: number): { data: string; ended: string } {
  const script = `const s=require("net").connect(${port},"127.0.0.1");let d="";s.on("data",c=>d+=c);s.on("connect",()=>s.write("GET / HTTP/1.0\\r\\n\\r\\n"));s.on("error",e=>{console.log(JSON.stringify({data:d,ended:e.code}));process.exit(0)});s.on("end",()=>{console.log(JSON.stringify({data:d,ended:"end"}));process.exit(0)});`;
  return JSON.parse(execFileSync("ip", ["netns", "exec", netnsName, process.execPath, "-e", script], { encoding: "utf8", timeout: 120_000 })) as { data: string; ended: string }; // the script prints this shape
}

/** What moat may have made in the namespace: links other than lo and eth0, eth0's ingress qdisc and filters, its port-forward rules. */
function moatLeftovers(): string[] {
  const links = (JSON.parse(inNetns("ip", "-j", "link", "show")) as Array<{ ifname: string }>).map((link) => link.ifname).filter((name) => name !== "lo" && name !== "eth0");
  const qdisc = inNetns("tc", "qdisc", "show", "dev", "eth0", "ingress").trim();
  const filters = inNetns("tc", "filter", "show", "dev", "eth0", "ingress").trim();
  return [...links.map((name) => `link ${name}`), ...(qdisc ? [`qdisc ${qdisc}`] : []), ...(filters ? [`filter ${filters}`] : []), ...portForwardRules()];
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
  assert.deepEqual(workspace.census().processes.filter((line) => line.includes("moat-port-relay")), [], "port-forward relays left");
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
  assert.deepEqual(moatLeftovers().map((line) => line.split(" ").slice(0, 2).join(" ")).sort(), ["filter filter", "link tap0_moat", "nat -A", "nat6 -A", "qdisc qdisc"], "the tcfilter plumbing and the port-forward rules are there while the container runs");
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

test("TCP to 127.0.0.1 in the namespace reaches the guest's loopback; a port where nothing listens is reset; the namespace's own rule stays", async () => {
  const own = ["OUTPUT", "-d", "198.18.255.254/32", "-p", "udp", "-m", "comment", "--comment", "test-own", "-j", "RETURN"];
  inNetns("iptables", "-w", "-t", "nat", "-A", ...own);
  try {
    const id = `forward-${suffix}`;
    const bundle = networkedBundle("bundle-forward", ["sh", "-c", "mkdir -p /www && echo served-in-the-guest > /www/index.html && httpd -p 127.0.0.1:8080 -h /www && echo started && sleep 600"]);
    const { stderr, closed } = await startMoat(["--root", workspace.stateRoot, "run", "--bundle", bundle, id], "started", { MOAT_TRACE: "network" });
    const served = fetchInNetns(8080);
    assert.match(served.data, /^HTTP\/1\.[01] 200/, `httpd's answer from the guest: ${JSON.stringify(served)}`);
    assert.match(served.data, /served-in-the-guest/);
    assert.equal(served.ended, "end", "httpd's close reaches the client as an end");
    const refused = fetchInNetns(8099);
    assert.deepEqual(refused, { data: "", ended: "ECONNRESET" }, "nothing listens on 8099 in the guest: the client is reset");
    const killed = await runMoat(["--root", workspace.stateRoot, "kill", id, "KILL"]);
    assert.equal(killed.code, 0, killed.stderr);
    await closed;
    assert.deepEqual(portForwardRules(), [], `moat's rules removed; moat run said: ${stderr()}`);
    assert.match(inNetns("iptables-save", "-t", "nat"), /--comment "?test-own"? -j RETURN/, "the namespace's own rule is untouched");
  } finally {
    inNetns("iptables", "-w", "-t", "nat", "-D", ...own);
  }
});
