// A sandbox on CNI networks (`moat run --network NAME`, docs/networking.md): moat is the CNI
// runtime, as nerdctl is for containerd. It makes a named network namespace for the sandbox,
// runs each network's plugins (ADD) with interface eth<i> in it, and hands the namespace to the
// tcfilter path as a caller's would be. cni.json in the sandbox's state directory records the
// namespace and each network before it is made (the conflist as it was read, and ADD's result
// once it came), so that the teardown (DEL in reverse, then the namespace removed) finishes
// after a failure, a killed QEMU or a restarted moatd, whatever the conf dir says by then.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { tracer } from "../../shared/trace.js";
import { Code } from "../../shared/ttrpc/index.js";
import { standInNetns } from "./own-netns.js";
import { checkConflist, cniAdd, cniDel, DEFAULT_CNI_PATH, loadNetwork, type CniAttachment, type CniNetwork, type CniResult, type PortMapping } from "./cni/index.js";

const trace = tracer("network");

const RECORD_FILE = "cni.json";
/** Where `ip netns` keeps named namespaces (bind mounts of nsfs files). */
const NETNS_DIR = "/run/netns";
/** More networks than this is a mistake, not a configuration (the tcfilter model carries 16 interfaces). */
const MAX_NETWORKS = 8;

/** What a sandbox asks of CNI: networks by name, from one conf dir, with ports published on the first. */
export interface CniRequest {
  confDir: string;
  networks: string[];
  portMappings: PortMapping[];
  /** Where the plugins are; Debian's dir, then upstream's, by default. */
  cniPath?: string[];
}

/** The networks a request names, found and checked: what attachCni makes the sandbox's. */
export interface CniPlan {
  request: CniRequest;
  networks: CniNetwork[];
}

/** cni.json: the namespace and, per network, what DEL needs. */
interface CniRecord {
  netns: string;
  networks: Array<{ file: string; conflist: unknown; attachment: CniAttachment; result?: CniResult }>;
}

/**
 * Finds and checks the request's networks before anything is made: an unknown network, a
 * conflist with a bad field or a wrong count is refused naming it.
 */
export async function planCni(request: CniRequest): Promise<CniPlan> {
  if (request.networks.length === 0) throw new MoatError("MOAT_CNI_CONFIG", "--network: name at least one CNI network", { status: Code.INVALID_ARGUMENT });
  if (request.networks.length > MAX_NETWORKS) throw new MoatError("MOAT_CNI_CONFIG", `--network: at most ${MAX_NETWORKS} networks, got ${request.networks.length}`, { status: Code.INVALID_ARGUMENT });
  const twice = request.networks.find((name, index) => request.networks.indexOf(name) !== index);
  if (twice !== undefined) throw new MoatError("MOAT_CNI_CONFIG", `--network: ${twice} is named twice`, { status: Code.INVALID_ARGUMENT });
  const networks: CniNetwork[] = [];
  for (const name of request.networks) networks.push(await loadNetwork(request.confDir, name));
  return { request, networks };
}

/** The sandbox's namespace: named after it, so that `ip netns` shows whose it is. */
export function sandboxNetnsPath(id: string): string {
  return join(NETNS_DIR, `moat-${id}`);
}

function run(argv: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] ?? "", argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stderr: stderr.trim() }));
  });
}

async function writeRecord(stateDir: string, record: CniRecord): Promise<void> {
  const path = join(stateDir, RECORD_FILE);
  await writeFile(`${path}.next`, JSON.stringify(record) + "\n");
  await rename(`${path}.next`, path);
}

/**
 * Makes sandbox `id`'s network namespace and adds it to each network of `plan` (interface
 * eth<i>, ports on each network whose portmap plugin takes them); returns the namespace's
 * path. With `standInPid`, the namespace is that process's (the container's stand-in, started
 * in a new one; never moatd's own), named as a made one is (`ip netns attach`), so that the
 * hooks given its pid act on the namespace CNI filled. Recorded in `stateDir` before each
 * step: on a failure the caller runs detachCni, which removes what was made.
 */
export async function attachCni(stateDir: string, id: string, plan: CniPlan, standInPid?: number): Promise<string> {
  const netns = sandboxNetnsPath(id);
  if (standInPid !== undefined) await standInNetns(standInPid, `sandbox ${id}`, "on CNI networks its namespace becomes the sandbox's");
  const record: CniRecord = { netns, networks: [] };
  await writeRecord(stateDir, record);
  const made = await run(["ip", "netns", ...(standInPid === undefined ? ["add", `moat-${id}`] : ["attach", `moat-${id}`, String(standInPid)])]);
  if (made.code !== 0) {
    // Another's, or a leftover: never taken over, nor removed (the record names it, so detach must not).
    await writeRecord(stateDir, { netns: "", networks: [] });
    throw new MoatError("MOAT_CNI_NETNS", `sandbox ${id}: cannot make network namespace ${netns}: ${made.stderr || `exit status ${made.code}`}`, {
      hint: existsSync(netns) ? `a namespace of that name exists already; if no sandbox ${id} runs, remove it: ip netns del moat-${id}` : undefined,
      status: existsSync(netns) ? Code.ALREADY_EXISTS : Code.INTERNAL,
    });
  }
  trace(id, `made network namespace ${netns}`);
  for (const [index, network] of plan.networks.entries()) {
    const attachment: CniAttachment = {
      containerId: id,
      netns,
      ifName: `eth${index}`,
      args: [],
      cniPath: plan.request.cniPath ?? [...DEFAULT_CNI_PATH],
      capabilityArgs: plan.request.portMappings.length > 0 ? { portMappings: plan.request.portMappings } : {},
    };
    const entry: CniRecord["networks"][number] = { file: network.file, conflist: conflistJson(network), attachment };
    record.networks.push(entry);
    await writeRecord(stateDir, record);
    try {
      entry.result = await cniAdd(network, attachment);
    } catch (error) {
      // cniAdd deleted what this network's plugins added: only the ones before it are left to undo.
      record.networks.pop();
      await writeRecord(stateDir, record);
      throw new MoatError(error instanceof MoatError ? error.code : "MOAT_CNI_PLUGIN", `sandbox ${id}`, { cause: error, status: error instanceof MoatError ? error.status : Code.INTERNAL });
    }
    await writeRecord(stateDir, record);
  }
  return netns;
}

/** The conflist as its file said it, for cni.json (checkConflist reads it back). */
function conflistJson(network: CniNetwork): unknown {
  const { cniVersion, name, disableCheck, plugins } = network.conflist;
  return { cniVersion, name, disableCheck, plugins: plugins.map((plugin) => plugin.raw) };
}

/**
 * Undoes attachCni for the sandbox in `stateDir` (its cni.json says what): DEL of each network
 * in reverse, with its conflist as recorded and ADD's result, then the namespace removed. What
 * is gone counts as removed; no cni.json: nothing to do. Every step runs; failures are thrown
 * together, and cni.json stays so that a later try finishes.
 */
export async function detachCni(stateDir: string): Promise<void> {
  const path = join(stateDir, RECORD_FILE);
  const text = await readFile(path, "utf8").catch(() => undefined);
  if (text === undefined) return;
  const record = JSON.parse(text) as CniRecord; // written by attachCni
  const failures: string[] = [];
  for (const entry of [...record.networks].reverse()) {
    try {
      const network: CniNetwork = { file: entry.file, conflist: checkConflist(entry.conflist, `${path} (from ${entry.file})`) };
      await cniDel(network, entry.attachment, entry.result);
    } catch (error) {
      failures.push(error instanceof Error ? error.message : String(error));
    }
  }
  if (record.netns !== "" && existsSync(record.netns)) {
    const name = record.netns.slice(NETNS_DIR.length + 1);
    const removed = await run(["ip", "netns", "del", name]);
    if (removed.code !== 0 && existsSync(record.netns)) failures.push(`ip netns del ${name}: ${removed.stderr || `exit status ${removed.code}`}`);
  }
  if (failures.length > 0) throw new MoatError("MOAT_CNI_TEARDOWN", `${stateDir}: ${failures.join("; ")}`, { status: Code.INTERNAL });
  await writeRecord(stateDir, { netns: "", networks: [] });
  trace(stateDir, `detached from ${record.networks.length} CNI network(s), ${record.netns || "no namespace"} removed`);
}
