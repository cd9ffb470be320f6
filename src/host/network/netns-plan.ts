// A network namespace as iproute2 prints it (`ip -j -d addr show`, `ip -j route show table
// main` for each family, `ip -j neigh show`) turned into what the guest is to have: one NIC per
// interface but `lo`, and the agent's ConfigureNetwork request. Pure: the JSON comes in, the
// plan goes out, so the translation is tested beside it (netns-plan.test.ts).
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

/** The agent's ConfigureNetworkRequest (proto/moat/agent/v1/agent.proto), as plain values. */
export interface ConfigureNetworkInit {
  interfaces: Array<{ deviceMac: string; name: string; mac: string; mtu: number; addresses: Array<{ address: string; prefixLength: number }>; up: boolean }>;
  routes: Array<{ destination: string; family: number; gateway: string; device: string; source: string; scope: number; mtu: number; metric: number }>;
  neighbours: Array<{ device: string; address: string; mac: string; state: number }>;
}

/** The interface types the tcfilter model carries (ipvlan too, where the host kernel has it). */
export const CARRIED_KINDS: readonly string[] = ["veth", "macvlan", "ipvlan"];
/** The most interfaces one sandbox carries (the agent takes at most 16). */
export const MAX_INTERFACES = 16;
const MAX_ROUTES = 1024;
const MAX_NEIGHBOURS = 1024;

/** What `ip -j ...` printed in the namespace, parsed. */
export interface NetnsDump {
  links: unknown;
  routes4: unknown;
  routes6: unknown;
  neighbours: unknown;
}

export interface PlannedInterface {
  name: string;
  mac: string;
  mtu: number;
  kind: string;
}

export interface NetworkPlan {
  /** The interfaces carried, in the namespace's order: NIC i is interfaces[i]. */
  interfaces: PlannedInterface[];
  /**
   * The agent's request, short of each interface's device_mac (the MAC its NIC has in the
   * guest, known only once the VM's devices are chosen: withDeviceMacs).
   */
  request: ConfigureNetworkInit;
  /** What was left out and why ("route 10.0.0.0/8: multipath"), for the tracer. */
  skipped: string[];
}

/** rtnetlink's route scopes by the names iproute2 prints. */
const SCOPES: Record<string, number> = { global: 0, universe: 0, site: 200, link: 253, host: 254, nowhere: 255 };
/** rtnetlink's NUD states by the names iproute2 prints. */
const NUD: Record<string, number> = { INCOMPLETE: 0x01, REACHABLE: 0x02, STALE: 0x04, DELAY: 0x08, PROBE: 0x10, FAILED: 0x20, NOARP: 0x40, PERMANENT: 0x80 };
const NUD_STALE = 0x04;
const KEPT_NUD = NUD.NOARP! | NUD.PERMANENT!; // both keys are in the table above
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IFNAME = /^[^\s/:]{1,15}$/;

/**
 * The plan for namespace `netns` from what iproute2 printed there. Refuses, naming it, an
 * interface of a type the model cannot carry, or output that is not what iproute2 prints.
 */
export function networkPlan(netns: string, dump: NetnsDump): NetworkPlan {
  const where = `network namespace ${netns}`;
  const bad = (what: string) => new MoatError("MOAT_NETNS_READ", `${where}: iproute2 printed ${what}`, { status: Code.INTERNAL });
  if (!Array.isArray(dump.links)) throw bad("no list of links");
  const interfaces: PlannedInterface[] = [];
  const request: ConfigureNetworkInit = { interfaces: [], routes: [], neighbours: [] };
  const skipped: string[] = [];
  for (const link of dump.links as unknown[]) {
    const item = record(link, bad);
    const name = text(item.ifname);
    if (!IFNAME.test(name)) throw bad(`a link without a valid name (${JSON.stringify(item.ifname)})`);
    const flags = Array.isArray(item.flags) ? item.flags.map(String) : [];
    if (flags.includes("LOOPBACK")) continue;
    const linkinfo = typeof item.linkinfo === "object" && item.linkinfo !== null ? (item.linkinfo as Record<string, unknown>) : {};
    const kind = text(linkinfo.info_kind) || `${text(item.link_type) || "unknown"} device`;
    if (!CARRIED_KINDS.includes(kind)) {
      throw new MoatError("MOAT_NETNS_INTERFACE", `${where}: interface ${name} is of type ${kind}, which moat cannot carry into the VM (it carries ${CARRIED_KINDS.join(", ")})`, {
        hint: "give the container a namespace whose interfaces are veth or macvlan links",
        status: Code.INVALID_ARGUMENT,
      });
    }
    const mac = text(item.address).toLowerCase();
    if (!MAC.test(mac)) throw bad(`interface ${name} without an Ethernet address (${JSON.stringify(item.address)})`);
    const mtu = Number(item.mtu);
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw bad(`interface ${name} with MTU ${JSON.stringify(item.mtu)}`);
    const addresses = (Array.isArray(item.addr_info) ? item.addr_info : []).flatMap((entry: unknown) => {
      const info = record(entry, bad);
      const family = text(info.family);
      if (family !== "inet" && family !== "inet6") return [];
      const prefixLength = Number(info.prefixlen);
      if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > (family === "inet" ? 32 : 128)) throw bad(`address ${text(info.local)} on ${name} with prefix ${JSON.stringify(info.prefixlen)}`);
      return [{ address: text(info.local), prefixLength }];
    });
    interfaces.push({ name, mac, mtu, kind });
    request.interfaces.push({ deviceMac: "", name, mac, mtu, addresses, up: flags.includes("UP") });
  }
  if (interfaces.length > MAX_INTERFACES) throw new MoatError("MOAT_NETNS_INTERFACE", `${where}: ${interfaces.length} interfaces; moat carries at most ${MAX_INTERFACES}`, { status: Code.INVALID_ARGUMENT });
  const carried = new Set(interfaces.map((entry) => entry.name));

  const routes: ConfigureNetworkInit["routes"] = [];
  for (const [family, list] of [[4, dump.routes4], [6, dump.routes6]] as const) {
    if (!Array.isArray(list)) throw bad(`no list of IPv${family} routes`);
    for (const entry of list as unknown[]) {
      const route = record(entry, bad);
      const destination = text(route.dst);
      const device = text(route.dev);
      const label = `IPv${family} route ${destination || "?"}${device ? ` dev ${device}` : ""}`;
      // The guest's kernel makes these itself from the addresses, as the host's did.
      if (text(route.protocol) === "kernel") continue;
      if (route.type !== undefined && route.type !== "unicast") {
        skipped.push(`${label}: type ${text(route.type)}`);
        continue;
      }
      if (Array.isArray(route.nexthops) || route.nhid !== undefined) {
        skipped.push(`${label}: multipath or nexthop object`);
        continue;
      }
      if (!carried.has(device)) {
        skipped.push(`${label}: not on a carried interface`);
        continue;
      }
      const scope = route.scope === undefined ? 0 : SCOPES[text(route.scope)];
      if (scope === undefined) throw bad(`${label} with scope ${JSON.stringify(route.scope)}`);
      const metrics = Array.isArray(route.metrics) ? (route.metrics as unknown[]) : [];
      const mtu = metrics.map((metric) => Number(record(metric, bad).mtu)).find((value) => Number.isInteger(value) && value > 0) ?? 0;
      const metric = route.metric === undefined ? 0 : Number(route.metric);
      if (!Number.isInteger(metric) || metric < 0 || metric > 0xffffffff) throw bad(`${label} with metric ${JSON.stringify(route.metric)}`);
      routes.push({ destination, family, gateway: text(route.gateway), device, source: text(route.prefsrc), scope, mtu, metric });
    }
  }
  // A gateway must be reachable when its route is added: routes on the link first.
  routes.sort((a, b) => Number(a.gateway !== "") - Number(b.gateway !== ""));
  if (routes.length > MAX_ROUTES) throw bad(`${routes.length} routes; moat carries at most ${MAX_ROUTES}`);
  request.routes = routes;

  if (!Array.isArray(dump.neighbours)) throw bad("no list of neighbours");
  for (const entry of dump.neighbours as unknown[]) {
    const neighbour = record(entry, bad);
    const device = text(neighbour.dev);
    const mac = text(neighbour.lladdr).toLowerCase();
    if (!carried.has(device) || !MAC.test(mac)) continue; // incomplete or failed entries have no address to copy
    const states = Array.isArray(neighbour.state) ? neighbour.state.map(String) : [];
    const bits = states.reduce((sum, name) => sum | (NUD[name] ?? 0), 0);
    // Static entries are copied as they are; learnt ones as stale, which the guest re-checks.
    request.neighbours.push({ device, address: text(neighbour.dst), mac, state: bits & KEPT_NUD || NUD_STALE });
  }
  if (request.neighbours.length > MAX_NEIGHBOURS) throw bad(`${request.neighbours.length} neighbours; moat carries at most ${MAX_NEIGHBOURS}`);
  return { interfaces, request, skipped };
}

/** The request with each interface's device_mac: the MAC its NIC has in the guest, in NIC order. */
export function withDeviceMacs(plan: NetworkPlan, deviceMacs: string[]): ConfigureNetworkInit {
  return { ...plan.request, interfaces: plan.request.interfaces.map((entry, index) => ({ ...entry, deviceMac: deviceMacs[index] ?? "" })) };
}

function record(value: unknown, bad: (what: string) => MoatError): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw bad(`an entry that is not an object (${JSON.stringify(value)})`);
  return value as Record<string, unknown>; // checked to be a plain object just above
}

function text(value: unknown): string {
  return typeof value === "string" ? value : "";
}
