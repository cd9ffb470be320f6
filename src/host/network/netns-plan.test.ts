import assert from "node:assert/strict";
import { test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import { networkPlan, withDeviceMacs, type NetnsDump } from "./netns-plan.js";

// What iproute2 6.1 printed in a namespace made as the integration test makes it, plus an
// IPv6 address and routes (`ip -j -d addr show`, `ip -j -4|-6 route show table main`, `ip -j neigh show`).
const links = [
  { ifindex: 1, ifname: "lo", flags: ["LOOPBACK", "UP", "LOWER_UP"], mtu: 65536, link_type: "loopback", address: "00:00:00:00:00:00", addr_info: [{ family: "inet", local: "127.0.0.1", prefixlen: 8, scope: "host" }] },
  {
    ifindex: 3,
    link_netnsid: 0,
    ifname: "eth0",
    flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
    mtu: 1400,
    link_type: "ether",
    address: "8E:99:67:CB:39:D9",
    linkinfo: { info_kind: "veth" },
    addr_info: [
      { family: "inet", local: "198.18.5.2", prefixlen: 24, scope: "global", label: "eth0" },
      { family: "inet6", local: "fd00:5::2", prefixlen: 64, scope: "global", nodad: true },
      { family: "inet6", local: "fe80::8c99:67ff:fecb:39d9", prefixlen: 64, scope: "link" },
    ],
  },
];
const routes4 = [
  { dst: "default", gateway: "198.18.5.1", dev: "eth0", prefsrc: "198.18.5.2", metric: 7, flags: [], metrics: [{ mtu: 1300 }] },
  { dst: "198.18.5.0/24", dev: "eth0", protocol: "kernel", scope: "link", prefsrc: "198.18.5.2", flags: [] },
  { dst: "198.19.0.0/16", dev: "eth0", scope: "link", flags: [] },
  { dst: "203.0.113.0/24", type: "blackhole", flags: [] },
];
const routes6 = [
  { dst: "fd00:5::/64", dev: "eth0", protocol: "kernel", metric: 256, flags: [], pref: "medium" },
  { dst: "default", gateway: "fd00:5::1", dev: "eth0", metric: 1024, flags: [], pref: "medium" },
];
const neighbours = [
  { dst: "198.18.5.9", dev: "eth0", lladdr: "02:00:00:00:00:09", state: ["PERMANENT"] },
  { dst: "198.18.5.1", dev: "eth0", lladdr: "02:00:00:00:00:01", state: ["REACHABLE"] },
  { dst: "198.18.5.7", dev: "eth0", state: ["FAILED"] },
];
const dump: NetnsDump = { links, routes4, routes6, neighbours };

test("a veth's name, MAC, MTU and every address become the agent's interface", () => {
  const plan = networkPlan("/run/netns/t", dump);
  assert.deepEqual(plan.interfaces, [{ name: "eth0", mac: "8e:99:67:cb:39:d9", mtu: 1400, kind: "veth" }], "lo is not carried; the MAC is lowercased");
  assert.deepEqual(plan.request.interfaces, [
    {
      deviceMac: "",
      name: "eth0",
      mac: "8e:99:67:cb:39:d9",
      mtu: 1400,
      up: true,
      addresses: [
        { address: "198.18.5.2", prefixLength: 24 },
        { address: "fd00:5::2", prefixLength: 64 },
        { address: "fe80::8c99:67ff:fecb:39d9", prefixLength: 64 },
      ],
    },
  ]);
});

test("routes keep gateway, source, scope, MTU and metric; the kernel's own are left to the guest's kernel; link routes come first", () => {
  const plan = networkPlan("/run/netns/t", dump);
  assert.deepEqual(plan.request.routes, [
    { destination: "198.19.0.0/16", family: 4, gateway: "", device: "eth0", source: "", scope: 253, mtu: 0, metric: 0 },
    { destination: "default", family: 4, gateway: "198.18.5.1", device: "eth0", source: "198.18.5.2", scope: 0, mtu: 1300, metric: 7 },
    { destination: "default", family: 6, gateway: "fd00:5::1", device: "eth0", source: "", scope: 0, mtu: 0, metric: 1024 },
  ]);
  assert.deepEqual(plan.skipped, ["IPv4 route 203.0.113.0/24: type blackhole"]);
});

test("static neighbours are copied as they are, learnt ones as stale, incomplete ones not at all", () => {
  assert.deepEqual(networkPlan("/run/netns/t", dump).request.neighbours, [
    { device: "eth0", address: "198.18.5.9", mac: "02:00:00:00:00:09", state: 0x80 },
    { device: "eth0", address: "198.18.5.1", mac: "02:00:00:00:00:01", state: 0x04 },
  ]);
});

test("a macvlan is carried; a bridge or a physical device is refused by name and type", () => {
  const withKind = (linkinfo: object | undefined) => ({ ...dump, links: [{ ...links[1], ...(linkinfo ? { linkinfo } : { linkinfo: undefined, link_type: "ether" }) }] });
  assert.equal(networkPlan("/n", withKind({ info_kind: "macvlan" })).interfaces[0]?.kind, "macvlan");
  assert.throws(
    () => networkPlan("/run/netns/t", withKind({ info_kind: "bridge" })),
    (error: MoatError) => error.code === "MOAT_NETNS_INTERFACE" && /network namespace \/run\/netns\/t: interface eth0 is of type bridge/.test(error.message),
  );
  assert.throws(() => networkPlan("/n", withKind(undefined)), /interface eth0 is of type ether device/);
});

test("output that is not iproute2's is refused, never guessed at", () => {
  assert.throws(() => networkPlan("/n", { ...dump, links: {} }), (error: MoatError) => error.code === "MOAT_NETNS_READ");
  assert.throws(() => networkPlan("/n", { ...dump, links: [{ ...links[1], mtu: 12 }] }), /MTU 12/);
  assert.throws(() => networkPlan("/n", { ...dump, links: [{ ...links[1], address: "x" }] }), /without an Ethernet address/);
  assert.throws(() => networkPlan("/n", { ...dump, routes6: [{ ...routes6[1], scope: "galaxy" }] }), /scope "galaxy"/);
});

test("only a namespace's loopback gives no interfaces and an empty request", () => {
  const plan = networkPlan("/n", { links: [links[0]], routes4: [], routes6: [], neighbours: [] });
  assert.deepEqual(plan.interfaces, []);
  assert.deepEqual(plan.request, { interfaces: [], routes: [], neighbours: [] });
});

test("the request names each NIC by the MAC it has in the guest", () => {
  const request = withDeviceMacs(networkPlan("/n", dump), ["02:6d:6f:61:74:00"]);
  assert.equal(request.interfaces[0]?.deviceMac, "02:6d:6f:61:74:00");
  assert.equal(request.interfaces[0]?.mac, "8e:99:67:cb:39:d9");
});
