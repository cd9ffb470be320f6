// Issue 11: podman (CNI backend, a private --network-config-dir) runs moat containers on CNI
// bridge networks of the test's own, with MTU 1400 on 198.18.0.0/15 (and fd00::/8 for IPv6):
// the container's eth0 has the network's address, MTU and default route; it reaches a server
// on the host's bridge address; a second container reaches the first by IP; the host reaches
// it; `-p` answers; a dual-stack network carries IPv6 (ping and TCP); a container on two
// networks has two interfaces. After each case no veth on the test's bridges, no address held,
// no namespace podman made, and nothing of moat's, is left. Only addresses on this machine are
// contacted.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, afterEach, before, beforeEach, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { podmanForTestFile } from "./harness/podman.js";

const suffix = randomBytes(3).toString("hex");
const { podman, workspace } = podmanForTestFile({ networkConfigDir: (dir) => `${dir}/podman-net.d` });
const MTU = 1400;
const ipamDir = `${workspace.dir}/ipam`;
const third = 20 + (parseInt(suffix.slice(0, 2), 16) % 70);
// Two networks, each a /24 of 198.18.0.0/15 and a bridge of its own; the first dual-stack on a ULA /64.
const nets = [
  { name: `moatp-a-${suffix}`, bridge: `moatpa${suffix}`, subnet: `198.19.${third}`, v6: `fd00:${suffix.slice(0, 4)}:${third.toString(16)}:1` },
  { name: `moatp-b-${suffix}`, bridge: `moatpb${suffix}`, subnet: `198.19.${third + 100}`, v6: undefined },
] as const;
const [netA, netB] = nets;
const hostPort = 20000 + (parseInt(suffix.slice(2, 6), 16) % 20000);
const servers: Server[] = [];
let port4 = 0;
let port6 = 0;
let netnsBefore: string[] = [];

const ip = (...args: string[]) => execFileSync("ip", args, { encoding: "utf8" });
const netnsList = () => ip("netns", "list").split("\n").map((line) => line.split(" ")[0] ?? "").filter((name) => name.startsWith("cni-")).sort();
const escaped = (text: string) => text.replace(/[.]/g, "\\.");

function leftovers(): string[] {
  const veths = nets.flatMap(({ bridge }) => (JSON.parse(ip("-j", "link", "show", "master", bridge)) as Array<{ ifname: string }>).map((link) => `veth ${link.ifname} on ${bridge}`));
  const held = nets.flatMap(({ name }) => (existsSync(`${ipamDir}/${name}`) ? readdirSync(`${ipamDir}/${name}`).filter((file) => file !== "lock" && !file.startsWith("last_reserved_ip")).map((file) => `${name}: address ${file} held`) : []));
  const netns = netnsList().filter((name) => !netnsBefore.includes(name)).map((name) => `netns ${name}`);
  return [...veths, ...held, ...netns];
}

async function listen(host: string): Promise<number> {
  const server = createServer((request, response) => response.end(`hello from the host, ${request.socket.remoteAddress}\n`));
  server.listen(0, host);
  await once(server, "listening");
  servers.push(server);
  return (server.address() as AddressInfo).port; // listening on an IP address and port
}

before(async () => {
  const confDir = `${workspace.dir}/podman-net.d`;
  mkdirSync(confDir, { recursive: true });
  for (const { name, bridge, subnet, v6 } of nets) {
    const ranges = [[{ subnet: `${subnet}.0/24`, gateway: `${subnet}.1` }], ...(v6 ? [[{ subnet: `${v6}::/64`, gateway: `${v6}::1` }]] : [])];
    const routes = [{ dst: "0.0.0.0/0" }, ...(v6 ? [{ dst: "::/0" }] : [])];
    const plugins = [
      { type: "bridge", bridge, isGateway: true, ipMasq: false, hairpinMode: true, mtu: MTU, ipam: { type: "host-local", dataDir: ipamDir, ranges, routes } },
      { type: "portmap", capabilities: { portMappings: true } },
      { type: "firewall" },
      { type: "tuning" },
    ];
    writeFileSync(`${confDir}/${name}.conflist`, JSON.stringify({ cniVersion: "0.4.0", name, plugins }, null, 2));
    // Made up front, with the gateway's addresses (IPv6 without DAD), so that the test's servers listen from the start.
    ip("link", "add", bridge, "mtu", String(MTU), "type", "bridge");
    ip("addr", "add", `${subnet}.1/24`, "dev", bridge);
    if (v6) ip("addr", "add", `${v6}::1/64`, "dev", bridge, "nodad");
    ip("link", "set", bridge, "up");
  }
  port4 = await listen(`${netA.subnet}.1`);
  port6 = await listen(`${netA.v6}::1`);
});

beforeEach(() => {
  netnsBefore = netnsList();
});

afterEach(async () => {
  // podman removes a --rm container (and its network) from conmon's exit command, after `podman run` returned.
  for (let tries = 0; tries < 300 && leftovers().length > 0; tries += 1) await sleep(100);
  assert.deepEqual(leftovers(), [], "left by podman's CNI networks");
});

after(() => {
  for (const server of servers) server.close();
  for (const { bridge } of nets) {
    try {
      ip("link", "del", bridge);
    } catch {
      // Never made.
    }
  }
});

test("podman on a CNI bridge network, MTU 1400: eth0's address, MTU and default route; the host's server is reached", async () => {
  const result = await podman(["run", "--rm", "--network", netA.name, "localhost/busybox", "sh", "-c", `ip addr show eth0; ip route; wget -q -O - http://${netA.subnet}.1:${port4}/`]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, new RegExp(`eth0: <[^>]*\\bUP\\b[^>]*> mtu ${MTU} `), result.stdout);
  assert.match(result.stdout, new RegExp(`inet ${escaped(netA.subnet)}\\.\\d+/24 `), result.stdout);
  assert.match(result.stdout, new RegExp(`^default via ${escaped(netA.subnet)}\\.1 dev eth0`, "m"), result.stdout);
  assert.match(result.stdout, new RegExp(`hello from the host, ${escaped(netA.subnet)}\\.\\d+\\n`), result.stdout);
});

test("podman: a second container reaches the first by IP, the host reaches it, and -p answers", async () => {
  const started = await podman(["run", "-d", "--name", `web-${suffix}`, "--network", netA.name, "-p", `127.0.0.1:${hostPort}:80`, "localhost/busybox", "sh", "-c", "mkdir /w && echo served-by-moat > /w/index.html && httpd -f -p 80 -h /w"]);
  assert.equal(started.code, 0, started.stderr);
  try {
    const inspected = await podman(["inspect", "--format", `{{(index .NetworkSettings.Networks "${netA.name}").IPAddress}}`, `web-${suffix}`]);
    const address = inspected.stdout.trim();
    assert.match(address, new RegExp(`^${escaped(netA.subnet)}\\.\\d+$`), inspected.stderr);
    // httpd answers once the VM is up and it listens.
    let fromHost = "";
    for (let tries = 0; tries < 600 && fromHost === ""; tries += 1) {
      fromHost = await fetch(`http://${address}/`, { signal: AbortSignal.timeout(5000) }).then((response) => response.text(), () => "");
      if (fromHost === "") await sleep(500);
    }
    assert.equal(fromHost, "served-by-moat\n", "the host reaches the container by its IP");
    const published = await fetch(`http://127.0.0.1:${hostPort}/`, { signal: AbortSignal.timeout(30_000) }).then((response) => response.text());
    assert.equal(published, "served-by-moat\n", "-p answers on the host's loopback");
    const second = await podman(["run", "--rm", "--network", netA.name, "localhost/busybox", "wget", "-q", "-O", "-", `http://${address}/`]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, "served-by-moat\n", "a second container reaches the first by IP");
  } finally {
    assert.equal((await podman(["rm", "--force", `web-${suffix}`])).code, 0);
  }
});

test("podman on a dual-stack network: the guest has the IPv6 address and route; IPv6 ping and TCP work", async () => {
  const v6 = netA.v6 ?? "";
  const result = await podman(["run", "--rm", "--cap-add", "NET_RAW", "--network", netA.name, "localhost/busybox", "sh", "-c", `ip -6 addr show eth0; ip -6 route; ping -6 -c 1 -W 10 ${v6}::1 && wget -q -O - http://[${v6}::1]:${port6}/`]);
  assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
  assert.match(result.stdout, new RegExp(`inet6 ${v6}::[0-9a-f]+/64 scope global`), result.stdout);
  assert.match(result.stdout, new RegExp(`^default via ${v6}::1 dev eth0`, "m"), result.stdout);
  assert.match(result.stdout, /1 packets transmitted, 1 packets received/, result.stdout);
  assert.match(result.stdout, new RegExp(`hello from the host, ${v6}::[0-9a-f]+\\n`), result.stdout);
});

test("podman on two networks: two interfaces in one namespace, each with its network's address", async () => {
  const result = await podman(["run", "--rm", "--network", `${netA.name},${netB.name}`, "localhost/busybox", "sh", "-c", "ip -4 addr show; ip route"]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, new RegExp(`inet ${escaped(netA.subnet)}\\.\\d+/24 .*eth\\d`), result.stdout);
  assert.match(result.stdout, new RegExp(`inet ${escaped(netB.subnet)}\\.\\d+/24 .*eth\\d`), result.stdout);
  const interfaces = new Set([...result.stdout.matchAll(/^\d+: (eth\d)/gm)].map((match) => match[1]));
  assert.deepEqual([...interfaces].sort(), ["eth0", "eth1"], result.stdout);
});
