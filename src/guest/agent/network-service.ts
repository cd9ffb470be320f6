// NetworkService: the guest's network set as the host side of the sandbox has it
// (docs/networking.md). Each NIC is found by the MAC it has now, renamed (through a temporary
// name, so that two NICs can swap names), given the interface's MAC and MTU, brought up, and
// given its addresses; then the routes and neighbours. Every setting is one rtnetlink request
// through moat-sys, in this process: no program is started (each costs 0.1-0.2 s under TCG).
import { readdirSync, readFileSync } from "node:fs";
import type { ConfigureNetworkRequest, NetworkService } from "../../shared/protocol/index.js";
import { MoatError } from "../../shared/errors.js";
import { Code, type ServiceImplementation } from "../../shared/ttrpc/index.js";
import { DnsRelay } from "./dns-relay.js";
import { log } from "./log.js";
import { addressAdd, linkSet, linkUpDown, macBytes, neighbourAdd, routeAdd } from "./netlink.js";
import { sys } from "./sys.js";

const MAX_INTERFACES = 16;
const MAX_ADDRESSES = 64;
const MAX_ROUTES = 1024;
const MAX_NEIGHBOURS = 1024;
const IFNAME = /^[^\s/:]{1,15}$/;
/** lo is the first link of every network namespace. */
const LOOPBACK_INDEX = 1;

export function networkService(): ServiceImplementation<typeof NetworkService> {
  const dns = new DnsRelay();
  return {
    async readDnsQueries(request, context) {
      return { queries: await dns.read(request.maxQueries, context.signal) };
    },
    async writeDnsAnswers(request) {
      dns.write(request.answers);
      return {};
    },
    async configureNetwork(request) {
      const receivedAt = performance.now();
      check(request);
      const byMac = guestInterfaces();
      const indexOf = new Map<string, number>();
      // The container shares this namespace: its loopback is up, as on the host side.
      const steps: Array<[string, Buffer]> = [["set lo up", linkUpDown(LOOPBACK_INDEX, true)]];
      for (const [position, entry] of request.interfaces.entries()) {
        const index = byMac.get(entry.deviceMac.toLowerCase());
        if (index === undefined) throw invalid(`interface ${entry.name}: no NIC with MAC ${entry.deviceMac} in the guest`);
        indexOf.set(entry.name, index);
        steps.push([`set ${entry.name} down`, linkUpDown(index, false)], [`rename NIC ${entry.deviceMac} to a temporary name`, linkSet(index, { name: `moatnic${position}` })]);
      }
      for (const entry of request.interfaces) {
        const index = indexOf.get(entry.name)!; // set in the loop above
        steps.push([`set ${entry.name}'s name, MAC ${entry.mac} and MTU ${entry.mtu}`, linkSet(index, { name: entry.name, mac: entry.mac, mtu: entry.mtu })]);
        if (entry.up) steps.push([`set ${entry.name} up`, linkUpDown(index, true)]);
        for (const { address, prefixLength } of entry.addresses) steps.push([`add address ${address}/${prefixLength} to ${entry.name}`, build(() => addressAdd(index, address, prefixLength))]);
      }
      for (const route of request.routes) {
        const outputIndex = indexOf.get(route.device);
        if (outputIndex === undefined) throw invalid(`route ${route.destination}: device ${route.device} is not one of the request's interfaces`);
        const what = `add IPv${route.family} route ${route.destination}${route.gateway ? ` via ${route.gateway}` : ""} dev ${route.device}${route.mtu ? ` mtu ${route.mtu}` : ""}`;
        steps.push([what, build(() => routeAdd({ ...route, outputIndex }))]);
      }
      for (const neighbour of request.neighbours) {
        const index = indexOf.get(neighbour.device);
        if (index === undefined) throw invalid(`neighbour ${neighbour.address}: device ${neighbour.device} is not one of the request's interfaces`);
        steps.push([`add neighbour ${neighbour.address} lladdr ${neighbour.mac} dev ${neighbour.device}`, build(() => neighbourAdd(index, neighbour.address, neighbour.mac, neighbour.state))]);
      }
      const startedAt = performance.now();
      let slowest = { what: "", ms: 0 };
      for (const [what, bytes] of steps) {
        const stepAt = performance.now();
        try {
          sys().netlink(bytes);
          const ms = performance.now() - stepAt;
          if (ms > slowest.ms) slowest = { what, ms };
        } catch (error) {
          throw new MoatError("MOAT_GUEST_NETWORK", `guest: cannot ${what}: ${error instanceof Error ? error.message : String(error)}`, { status: Code.INVALID_ARGUMENT });
        }
      }
      log(`network: ${request.interfaces.map((entry) => `${entry.name} (MTU ${entry.mtu}, ${entry.addresses.length} addresses)`).join(", ")}, ${request.routes.length} routes, ${request.neighbours.length} neighbours; ${steps.length} rtnetlink requests in ${Math.round(performance.now() - startedAt)} ms (slowest: ${slowest.what}, ${Math.round(slowest.ms)} ms); checking the request and finding its NICs took ${Math.round(startedAt - receivedAt)} ms`);
      return {};
    },
  };
}

/**
 * The guest's interfaces by MAC (lowercase), to their index. Read synchronously: sysfs answers
 * at once, while the promise API's first use in a clone costs ~0.1 s under TCG (libuv's
 * thread pool; measured, docs/networking.md).
 */
function guestInterfaces(): Map<string, number> {
  const found = new Map<string, number>();
  const read = (path: string) => {
    try {
      return readFileSync(path, "utf8").trim();
    } catch {
      return ""; // the interface went away meanwhile
    }
  };
  for (const name of readdirSync("/sys/class/net")) {
    const [address, index] = [read(`/sys/class/net/${name}/address`), read(`/sys/class/net/${name}/ifindex`)];
    if (address && index) found.set(address.toLowerCase(), Number(index));
  }
  return found;
}

/** Bounds and shapes of the request, before anything is changed. */
function check(request: ConfigureNetworkRequest): void {
  if (request.interfaces.length > MAX_INTERFACES || request.routes.length > MAX_ROUTES || request.neighbours.length > MAX_NEIGHBOURS) {
    throw invalid(`at most ${MAX_INTERFACES} interfaces, ${MAX_ROUTES} routes and ${MAX_NEIGHBOURS} neighbours`);
  }
  const names = new Set<string>();
  for (const entry of request.interfaces) {
    if (!IFNAME.test(entry.name) || names.has(entry.name)) throw invalid(`interface name ${JSON.stringify(entry.name)}: 1 to 15 bytes, no space, '/' or ':', and unique`);
    names.add(entry.name);
    build(() => [macBytes(entry.mac), macBytes(entry.deviceMac)]);
    if (entry.mtu < 68 || entry.mtu > 65535) throw invalid(`interface ${entry.name}: MTU ${entry.mtu} is not 68 to 65535`);
    if (entry.addresses.length > MAX_ADDRESSES) throw invalid(`interface ${entry.name}: at most ${MAX_ADDRESSES} addresses`);
  }
}

/** Builds a request, turning a malformed value into an INVALID_ARGUMENT that names it. */
function build<T>(make: () => T): T {
  try {
    return make();
  } catch (error) {
    throw invalid(error instanceof Error ? error.message : String(error));
  }
}

function invalid(what: string): MoatError {
  return new MoatError("MOAT_GUEST_NETWORK", `guest: ConfigureNetwork: ${what}`, { status: Code.INVALID_ARGUMENT });
}
