// The network the network benchmark's containers share: a CNI conflist of Debian's bridge and
// host-local plugins on a test bridge in 198.18.0.0/15, written to the benchmark's own conf
// dir, and one network namespace per container, attached and detached through moat's CNI runner
// (src/host/network/cni), the same code `moat run --network` uses.
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cniAdd, cniDel, DEFAULT_CNI_PATH, loadNetwork, type CniAttachment } from "../../src/host/network/cni/index.js";

const NETWORK_NAME = "moat-bench";
const SUBNET = "198.18.77.0/24";

export interface Attachment {
  netns: string;
  /** The container's IPv4 address on the bridge, without its prefix length. */
  address: string;
  detach(): Promise<void>;
}

export interface BenchNetwork {
  description: string;
  attach(id: string): Promise<Attachment>;
  /** Removes the bridge (each attachment removes its own veth and namespace). */
  close(): Promise<void>;
}

function firstIPv4(result: Record<string, unknown>, where: string): string {
  const ips = Array.isArray(result.ips) ? (result.ips as Array<{ address?: unknown }>) : []; // CNI result: ips is a list of objects
  const address = ips.map((ip) => ip.address).find((value): value is string => typeof value === "string" && value.includes("."));
  if (address === undefined) throw new Error(`${where}: the CNI result has no IPv4 address: ${JSON.stringify(result)}`);
  return address.split("/")[0]!; // split always yields one element
}

export async function benchNetwork(work: string): Promise<BenchNetwork> {
  const bridge = `moatbn${process.pid % 100000}`;
  const confDir = join(work, "cni");
  mkdirSync(confDir, { recursive: true });
  writeFileSync(
    join(confDir, "10-bench.conflist"),
    JSON.stringify({
      cniVersion: "1.0.0",
      name: NETWORK_NAME,
      plugins: [{ type: "bridge", bridge, isGateway: true, ipMasq: false, ipam: { type: "host-local", ranges: [[{ subnet: SUBNET }]], dataDir: join(work, "ipam") } }],
    }),
  );
  const network = await loadNetwork(confDir, NETWORK_NAME);
  return {
    description: `CNI bridge ${bridge}, host-local ${SUBNET}, MTU 1500`,
    async attach(id) {
      const name = `moatbench-${id}`;
      execFileSync("ip", ["netns", "add", name]);
      const attachment: CniAttachment = { containerId: id, netns: `/run/netns/${name}`, ifName: "eth0", args: [], cniPath: [...DEFAULT_CNI_PATH], capabilityArgs: {} };
      const removeNamespace = () => execFileSync("ip", ["netns", "delete", name]);
      let result;
      try {
        result = await cniAdd(network, attachment);
      } catch (error) {
        removeNamespace();
        throw error;
      }
      return {
        netns: attachment.netns,
        address: firstIPv4(result, `${NETWORK_NAME} for ${id}`),
        async detach() {
          await cniDel(network, attachment, result);
          removeNamespace();
        },
      };
    },
    async close() {
      execFileSync("ip", ["link", "delete", bridge]);
    },
  };
}
