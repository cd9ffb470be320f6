// rtnetlink requests as bytes (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h,
// linux/if_addr.h, linux/neighbour.h), for moat-sys's netlink(): one request per call, each
// asking for an ack. Pure, so that the bytes are tested beside it (netlink.test.ts); the guest
// is x86-64, so the headers' integers are little-endian.
import { isIPv4, isIPv6 } from "node:net";

export const AF_INET = 2;
export const AF_INET6 = 10;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_REPLACE = 0x100;
const NLM_F_CREATE = 0x400;
const RTM_NEWLINK = 16;
const RTM_NEWADDR = 20;
const RTM_NEWROUTE = 24;
const RTM_NEWNEIGH = 28;
const IFF_UP = 0x1;
const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_FLAGS = 8;
/** The host checked the address already: the guest uses it at once, with no duplicate detection. */
const IFA_F_NODAD = 0x02;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_PREFSRC = 7;
const RTA_METRICS = 8;
const RTAX_MTU = 2;
const RT_TABLE_MAIN = 254;
/** What `ip route add` marks its routes with. */
const RTPROT_BOOT = 3;
const RTN_UNICAST = 1;
const NDA_DST = 1;
const NDA_LLADDR = 2;

let sequence = 0;

/** An attribute: header (length, type), payload, padding to four bytes. */
function attribute(type: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt16LE(4 + payload.length, 0);
  header.writeUInt16LE(type, 2);
  const padding = Buffer.alloc((4 - (payload.length % 4)) % 4);
  return Buffer.concat([header, payload, padding]);
}

function u32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(value, 0);
  return bytes;
}

function cString(value: string): Buffer {
  return Buffer.concat([Buffer.from(value, "utf8"), Buffer.alloc(1)]);
}

/** A whole request: the netlink header, the family header, the attributes. */
function message(type: number, flags: number, body: Buffer, attributes: Buffer[]): Buffer {
  const payload = Buffer.concat([body, ...attributes]);
  const header = Buffer.alloc(16);
  header.writeUInt32LE(16 + payload.length, 0);
  header.writeUInt16LE(type, 4);
  header.writeUInt16LE(NLM_F_REQUEST | NLM_F_ACK | flags, 6);
  sequence = (sequence % 0x7fffffff) + 1;
  header.writeUInt32LE(sequence, 8);
  header.writeUInt32LE(0, 12);
  return Buffer.concat([header, payload]);
}

/** Six bytes of "aa:bb:cc:dd:ee:ff". */
export function macBytes(mac: string): Buffer {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) throw new Error(`not a MAC address: ${JSON.stringify(mac)}`);
  return Buffer.from(mac.split(":").map((pair) => parseInt(pair, 16)));
}

/** An IPv4 or IPv6 address's bytes and family. */
export function ipBytes(address: string): { family: number; bytes: Buffer } {
  if (isIPv4(address)) return { family: AF_INET, bytes: Buffer.from(address.split(".").map(Number)) };
  if (!isIPv6(address)) throw new Error(`not an IP address: ${JSON.stringify(address)}`);
  let text = address.replace(/%.*$/, "");
  // A trailing dotted quad ("::ffff:1.2.3.4") is the last two groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad[1]!.split(".").map(Number) as [number, number, number, number]; // the pattern has four numbers
    text = text.slice(0, quad.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? (text.split("::") as [string, string]) : [text, undefined]; // isIPv6 allows one "::" at most
  const groups = (part: string) => (part === "" ? [] : part.split(":").map((group) => parseInt(group, 16)));
  const front = groups(head);
  const back = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? front : [...front, ...Array<number>(8 - front.length - back.length).fill(0), ...back];
  const bytes = Buffer.alloc(16);
  all.forEach((group, index) => bytes.writeUInt16BE(group, index * 2));
  return { family: AF_INET6, bytes };
}

/** Sets interface `index` down or up. */
export function linkUpDown(index: number, up: boolean): Buffer {
  return message(RTM_NEWLINK, 0, ifinfomsg(index, up ? IFF_UP : 0, IFF_UP), []);
}

/** Renames interface `index`, and sets its MAC and MTU where given (it must be down to be renamed). */
export function linkSet(index: number, settings: { name?: string; mac?: string; mtu?: number }): Buffer {
  const attributes: Buffer[] = [];
  if (settings.name !== undefined) attributes.push(attribute(IFLA_IFNAME, cString(settings.name)));
  if (settings.mac !== undefined) attributes.push(attribute(IFLA_ADDRESS, macBytes(settings.mac)));
  if (settings.mtu !== undefined) attributes.push(attribute(IFLA_MTU, u32(settings.mtu)));
  return message(RTM_NEWLINK, 0, ifinfomsg(index, 0, 0), attributes);
}

function ifinfomsg(index: number, flags: number, change: number): Buffer {
  const body = Buffer.alloc(16); // family, pad, type 0
  body.writeInt32LE(index, 4);
  body.writeUInt32LE(flags, 8);
  body.writeUInt32LE(change, 12);
  return body;
}

/** Adds (or replaces) address/prefix on interface `index`, as `ip addr replace` does. */
export function addressAdd(index: number, address: string, prefixLength: number): Buffer {
  const { family, bytes } = ipBytes(address);
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > (family === AF_INET ? 32 : 128)) throw new Error(`prefix length ${prefixLength} for ${address}`);
  const body = Buffer.alloc(8);
  body.writeUInt8(family, 0);
  body.writeUInt8(prefixLength, 1);
  body.writeUInt8(family === AF_INET6 ? IFA_F_NODAD : 0, 2);
  body.writeUInt8(0, 3); // scope universe; the kernel gives link-local addresses their own
  body.writeUInt32LE(index, 4);
  const attributes = [attribute(IFA_LOCAL, bytes), attribute(IFA_ADDRESS, bytes)];
  if (family === AF_INET6) attributes.push(attribute(IFA_FLAGS, u32(IFA_F_NODAD)));
  return message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, body, attributes);
}

export interface RouteSpec {
  /** "address/prefix" or "default". */
  destination: string;
  family: number;
  gateway: string;
  outputIndex: number;
  source: string;
  scope: number;
  mtu: number;
  metric: number;
}

/** Adds (or replaces) a route in the main table, as `ip route replace` does. */
export function routeAdd(route: RouteSpec): Buffer {
  const family = route.family === 6 ? AF_INET6 : route.family === 4 ? AF_INET : -1;
  if (family < 0) throw new Error(`route family ${route.family}`);
  const attributes: Buffer[] = [];
  let prefixLength = 0;
  if (route.destination !== "default") {
    const [address = "", prefix] = route.destination.split("/");
    const parsed = ipBytes(address);
    if (parsed.family !== family) throw new Error(`route ${route.destination}: not IPv${route.family}`);
    prefixLength = prefix === undefined ? (family === AF_INET ? 32 : 128) : Number(prefix);
    if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > (family === AF_INET ? 32 : 128)) throw new Error(`route ${route.destination}: prefix length`);
    attributes.push(attribute(RTA_DST, parsed.bytes));
  }
  const body = Buffer.alloc(12);
  body.writeUInt8(family, 0);
  body.writeUInt8(prefixLength, 1);
  body.writeUInt8(RT_TABLE_MAIN, 4);
  body.writeUInt8(RTPROT_BOOT, 5);
  body.writeUInt8(route.scope, 6);
  body.writeUInt8(RTN_UNICAST, 7);
  attributes.push(attribute(RTA_OIF, u32(route.outputIndex)));
  if (route.gateway !== "") attributes.push(attribute(RTA_GATEWAY, sameFamily(route.gateway, family, "gateway")));
  if (route.source !== "") attributes.push(attribute(RTA_PREFSRC, sameFamily(route.source, family, "source")));
  if (route.metric > 0) attributes.push(attribute(RTA_PRIORITY, u32(route.metric)));
  if (route.mtu > 0) attributes.push(attribute(RTA_METRICS, attribute(RTAX_MTU, u32(route.mtu))));
  return message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body, attributes);
}

function sameFamily(address: string, family: number, what: string): Buffer {
  const parsed = ipBytes(address);
  if (parsed.family !== family) throw new Error(`${what} ${address} is not of the route's family`);
  return parsed.bytes;
}

/** Adds (or replaces) a neighbour entry, as `ip neigh replace` does. */
export function neighbourAdd(index: number, address: string, mac: string, state: number): Buffer {
  const { family, bytes } = ipBytes(address);
  const body = Buffer.alloc(12);
  body.writeUInt8(family, 0);
  body.writeInt32LE(index, 4);
  body.writeUInt16LE(state, 8);
  return message(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, body, [attribute(NDA_DST, bytes), attribute(NDA_LLADDR, macBytes(mac))]);
}
