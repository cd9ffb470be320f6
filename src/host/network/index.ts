// A sandbox on the network namespace its caller made (docs/networking.md, the tcfilter model):
// the namespace read and checked, the VM's NICs and taps chosen, the tc plumbing between each
// interface and its tap, and its removal. Everything made is recorded in the sandbox's state
// directory (network.json) before it is made, so that a restarted moatd, or the delete after a
// killed QEMU, removes it; nothing outside that namespace is touched.
import { existsSync } from "node:fs";
import { readFile, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { tracer } from "../../shared/trace.js";
import { Code } from "../../shared/ttrpc/index.js";
import { packageRoot } from "../config/index.js";
import type { Nic } from "../hypervisor/index.js";
import { inNetns } from "./netns-exec.js";
import { networkPlan, withDeviceMacs, type ConfigureNetworkInit, type NetworkPlan } from "./netns-plan.js";

export {
  checkConflist,
  cniAdd,
  cniDel,
  DEFAULT_CNI_CONF_DIR,
  DEFAULT_CNI_PATH,
  loadNetwork,
  parsePortMapping,
  type CniAttachment,
  type CniNetwork,
  type CniResult,
  type Conflist,
  type PortMapping,
} from "./cni/index.js";
export { attachCni, detachCni, planCni, sandboxNetnsPath, type CniPlan, type CniRequest } from "./cni-netns.js";
export { pinNetns, pinnedNetns, unpinNetns } from "./own-netns.js";
export { DnsRelay, type DnsPeer } from "./dns-relay.js";
export { PortForwardRelay, recordedPortForwardNetns, removePortForward, type PortPeer } from "./port-forward.js";
export { CARRIED_KINDS, MAX_INTERFACES, networkPlan, withDeviceMacs, type NetnsDump, type NetworkPlan, type PlannedInterface } from "./netns-plan.js";

const trace = tracer("network");

/** statfs's f_type of a namespace file (NSFS_MAGIC). */
const NSFS_MAGIC = 0x6e736673;
const RECORD_FILE = "network.json";
/** What iproute2's tools print when what is to be removed is gone already. */
const GONE = /Cannot find device|Cannot find specified qdisc|No such device|No such file or directory|does not exist/i;

/** A network namespace read and checked, ready to be carried into a sandbox. */
export interface SandboxNetwork {
  netns: string;
  plan: NetworkPlan;
}

/** What moat made in the namespace, as network.json records it. */
interface NetworkRecord {
  netns: string;
  /** Taps, by name: non-persistent, they go when QEMU does; removed by name all the same. */
  taps: string[];
  /** The interfaces given an ingress qdisc (their mirred filter goes with it). */
  ingress: string[];
}

/**
 * Reads network namespace `netns` (a path, as the spec's linux.namespaces gives it) and plans
 * what the sandbox carries: refuses by name a path that does not exist or is not a network
 * namespace, an interface the model cannot carry, or one that has an ingress qdisc already
 * (moat's would replace the caller's). Makes nothing.
 */
export async function readNetwork(netns: string): Promise<SandboxNetwork> {
  const where = `network namespace ${netns}`;
  const hint = "the spec's linux.namespaces entry of type network must name a network namespace file (e.g. /run/netns/NAME, /proc/PID/ns/net)";
  const fs = await statfs(netns).catch((error: NodeJS.ErrnoException) => {
    const what = error.code === "ENOENT" ? "does not exist" : `cannot be read (${error.code ?? error.message})`;
    throw new MoatError("MOAT_NETNS_MISSING", `${where}: ${what}`, { hint, status: Code.NOT_FOUND });
  });
  if (fs.type !== NSFS_MAGIC) throw new MoatError("MOAT_NETNS_INVALID", `${where}: is not a namespace file`, { hint, status: Code.INVALID_ARGUMENT });
  const ip = async (args: string[]): Promise<unknown> => {
    const ran = await inNetns(netns, ["ip", "-j", ...args]);
    if (ran.code !== 0) {
      if (/reassociate|Invalid argument/.test(ran.stderr)) throw new MoatError("MOAT_NETNS_INVALID", `${where}: is not a network namespace: ${ran.stderr}`, { hint, status: Code.INVALID_ARGUMENT });
      throw new MoatError("MOAT_NETNS_READ", `${where}: ip ${args.join(" ")} failed: ${ran.stderr || `exit status ${ran.code}`}`, { status: Code.INTERNAL });
    }
    try {
      return JSON.parse(ran.stdout || "[]");
    } catch (error) {
      throw new MoatError("MOAT_NETNS_READ", `${where}: ip ${args.join(" ")} printed no JSON`, { cause: error, status: Code.INTERNAL });
    }
  };
  const startedAt = performance.now();
  const links = await ip(["-d", "addr", "show"]);
  const [routes4, routes6, neighbours] = await Promise.all([ip(["-4", "route", "show", "table", "main"]), ip(["-6", "route", "show", "table", "main"]), ip(["neigh", "show"])]);
  const plan = networkPlan(netns, { links, routes4, routes6, neighbours });
  for (const { name } of plan.interfaces) {
    const ran = await inNetns(netns, ["tc", "qdisc", "show", "dev", name, "ingress"]);
    if (ran.code === 0 && ran.stdout.trim() !== "") {
      throw new MoatError("MOAT_NETNS_INTERFACE", `${where}: interface ${name} has an ingress qdisc already (${ran.stdout.trim()}); moat's would replace it`, { status: Code.FAILED_PRECONDITION });
    }
  }
  for (const line of plan.skipped) trace(netns, `not carried: ${line}`);
  trace(netns, `read ${plan.interfaces.length} interface(s), ${plan.request.routes.length} route(s), ${plan.request.neighbours.length} neighbour(s) in ${Math.round(performance.now() - startedAt)} ms`);
  return { netns, plan };
}

/** The tap that carries interface `index` of the namespace (kept short: names have 15 bytes). */
function tapName(index: number): string {
  return `tap${index}_moat`;
}

/**
 * The NICs a VM template for a sandbox with `count` interfaces has (docs/networking.md): one
 * per interface, without backend. Locally administered MACs, the same in every template: a
 * clone keeps its template's devices, and the agent gives each NIC its interface's MAC.
 */
export function templateNics(count: number): Nic[] {
  return Array.from({ length: count }, (_, index) => ({ id: `nic${index}`, mac: `02:6d:6f:61:74:${index.toString(16).padStart(2, "0")}` }));
}

/** How many NICs a sandbox on `network` has: one per interface. */
export function nicCount(network: SandboxNetwork | undefined): number {
  return network?.plan.interfaces.length ?? 0;
}

/**
 * The VM's NICs for `network`, each with its interface's tap: a clone has its template's
 * (`templateNics`), a VM booted cold has the interfaces' own MACs.
 */
export function sandboxNics(network: SandboxNetwork | undefined, fromTemplate: boolean): Nic[] {
  const interfaces = network?.plan.interfaces ?? [];
  const devices = fromTemplate ? templateNics(interfaces.length) : interfaces.map((entry, index) => ({ id: `nic${index}`, mac: entry.mac }));
  return devices.map((nic, index) => ({ ...nic, tap: tapName(index) }));
}

/** The VmSpec.network of a sandbox with `network`: where moat-tap-exec makes its taps. */
export function vmNetwork(network: SandboxNetwork): { netns: string; tapExec: string } {
  const tapExec = join(packageRoot(), "dist", "bin", "moat-tap-exec");
  if (!existsSync(tapExec)) throw new MoatError("MOAT_NETNS_CONNECT", `network namespace ${network.netns}: ${tapExec} does not exist`, { hint: "make build", status: Code.FAILED_PRECONDITION });
  return { netns: network.netns, tapExec };
}

/**
 * Records in `stateDir` what connectNetwork is about to make for `nics`: call before QEMU starts
 * (it makes the taps), so that whatever happens after, disconnectNetwork finds it.
 */
export async function recordNetwork(stateDir: string, network: SandboxNetwork, nics: Nic[]): Promise<void> {
  const taps = nics.flatMap((nic) => (nic.tap === undefined ? [] : [nic.tap]));
  const record: NetworkRecord = { netns: network.netns, taps, ingress: network.plan.interfaces.slice(0, taps.length).map((entry) => entry.name) };
  await writeFile(join(stateDir, RECORD_FILE), JSON.stringify(record) + "\n");
}

/**
 * Joins each interface to its tap once QEMU holds the taps: the tap at the interface's MTU and
 * up, an ingress qdisc on both, and a u32 filter matching every packet whose action is a mirred
 * redirect to the other, each way. The agent's request comes back, with each NIC's MAC.
 */
export async function connectNetwork(network: SandboxNetwork, nics: Nic[], where: string): Promise<ConfigureNetworkInit> {
  const pairs = network.plan.interfaces.map((entry, index) => ({ ...entry, tap: nics[index]?.tap ?? "" }));
  const startedAt = performance.now();
  const run = async (tool: string, lines: string[]) => {
    const ran = await inNetns(network.netns, [tool, "-batch", "-"], lines.join("\n") + "\n");
    if (ran.code !== 0) throw new MoatError("MOAT_NETNS_CONNECT", `${where}: network namespace ${network.netns}: ${tool}: ${ran.stderr || `exit status ${ran.code}`}`, { status: Code.INTERNAL });
  };
  await run("ip", pairs.map(({ tap, mtu }) => `link set dev ${tap} mtu ${mtu} up`));
  const redirect = (from: string, to: string) => `filter add dev ${from} parent ffff: protocol all u32 match u8 0 0 action mirred egress redirect dev ${to}`;
  await run(
    "tc",
    pairs.flatMap(({ name, tap }) => [`qdisc add dev ${name} ingress`, `qdisc add dev ${tap} ingress`, redirect(name, tap), redirect(tap, name)]),
  );
  trace(where, `connected ${pairs.map(({ name, tap, mtu }) => `${name} <-> ${tap} (MTU ${mtu})`).join(", ")} in ${network.netns} (${Math.round(performance.now() - startedAt)} ms)`);
  return withDeviceMacs(network.plan, nics.slice(0, pairs.length).map((nic) => nic.mac));
}

/**
 * Takes the taps of a warm pool VM (QEMU pid `qemuPid`) for the sandbox: each NIC's throwaway
 * tap, which moat-jail made as `throwaway<i>` in QEMU's own network namespace, is renamed to
 * the NIC's tap name and moved into the sandbox's namespace (one `ip -batch` there), where
 * connectNetwork then plumbs it as one moat-tap-exec made. QEMU keeps its descriptor on it
 * throughout: a tap moves between namespaces with it open, and is still removed when QEMU
 * closes it. A name already taken in the sandbox's namespace fails the move, and the pool VM
 * is then killed by the caller, its taps with it.
 */
export async function takePoolTaps(qemuPid: number, network: SandboxNetwork, nics: Nic[], where: string): Promise<void> {
  const lines = nics.flatMap((nic, index) => (nic.tap === undefined ? [] : [`link set dev throwaway${index} name ${nic.tap}`, `link set dev ${nic.tap} netns ${network.netns}`]));
  const ran = await inNetns(`/proc/${qemuPid}/ns/net`, ["ip", "-batch", "-"], lines.join("\n") + "\n");
  if (ran.code !== 0) throw new MoatError("MOAT_NETNS_CONNECT", `${where}: cannot move the warm pool VM's taps into network namespace ${network.netns}: ${ran.stderr || `exit status ${ran.code}`}`, { status: Code.INTERNAL });
  trace(where, `moved the pool VM's taps into ${network.netns}: ${nics.map((nic) => nic.tap).join(", ")}`);
}

/**
 * Removes what the sandbox in `stateDir` made in its namespace (its network.json says what):
 * the interfaces' ingress qdiscs, with their filters, and the taps. What is gone already, the
 * namespace included, counts as removed. Throws if something could not be removed.
 */
export async function disconnectNetwork(stateDir: string): Promise<void> {
  const text = await readFile(join(stateDir, RECORD_FILE), "utf8").catch(() => undefined);
  if (text === undefined) return;
  const record = JSON.parse(text) as NetworkRecord; // written by recordNetwork
  if (!existsSync(record.netns)) return;
  const failures: string[] = [];
  const remove = async (argv: string[]) => {
    const ran = await inNetns(record.netns, argv);
    if (ran.code !== 0 && !GONE.test(ran.stderr)) failures.push(`${argv.join(" ")}: ${ran.stderr || `exit status ${ran.code}`}`);
  };
  for (const name of record.ingress) await remove(["tc", "qdisc", "del", "dev", name, "ingress"]);
  for (const tap of record.taps) await remove(["ip", "link", "del", "dev", tap]);
  if (failures.length > 0) throw new MoatError("MOAT_NETNS_DISCONNECT", `${stateDir}: network namespace ${record.netns}: ${failures.join("; ")}`, { status: Code.INTERNAL });
  trace(stateDir, `disconnected from ${record.netns}`);
}
