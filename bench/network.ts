// bench/network: the network a container gets, for moat beside runc and gVisor (runsc, with its
// own netstack), every container on the same CNI bridge network (Debian's plugins: bridge,
// host-local on 198.18.0.0/15, made and removed by this benchmark) in the same run, rounds
// interleaved:
// - TCP throughput from the host to the container and back (Debian's iperf3, --time seconds);
// - short HTTP requests: --requests GETs of a small page from busybox httpd in the container,
//   each on a new connection, 8 at a time, requests per second;
// - round trip: the median of 20 ICMP echoes from the host.
// Every round starts a fresh container per runtime (create + start through the runtime's OCI
// CLI on a namespace CNI made), measures from the host, then deletes it and its network.
//
//   node dist/bench/network.js [--runs N] [--time SECONDS] [--requests N] [--compare DIR]
//
// --compare DIR measures another built moat checkout (DIR/bin/moat, its own moatd and state
// root) beside this one, in the same rounds: a change's before and after in one run.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { repoRoot } from "../test/integration/harness/moat-cli.js";
import { busyboxBundle } from "./support/baselines.js";
import { benchNetwork, type Attachment } from "./support/bench-network.js";
import { addNetworkTools } from "./support/net-rootfs.js";
import { httpRequestsPerSecond, pingMedianMs, tcpThroughputMbits, waitForPort } from "./support/net-probes.js";
import { report, type Row } from "./support/report.js";
import { summarize } from "./support/stats.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    time: { type: "string", default: "5" },
    requests: { type: "string", default: "300" },
    compare: { type: "string" },
  },
});
const runs = Number(values.runs);
const seconds = Number(values.time);
const requests = Number(values.requests);
const HTTP_PORT = 8080;
const STARTUP_TIMEOUT_MS = 120_000;

const work = mkdtempSync(join(tmpdir(), "moat-bench-network-"));
const moat = join(repoRoot, "bin", "moat");

/**
 * Debian 12's runsc (2022-12-19) refuses its own netstack in any namespace where
 * /proc/sys/net/core/rmem_default exists, which it takes to mean the host's root namespace; the
 * host kernel here (6.x) has that file in every network namespace. Run in a mount namespace of
 * its own with /proc/sys/net hidden, runsc takes the CNI namespace's interface as it should
 * (checked: its netstack gets the address and routes).
 */
const RUNSC_ROOT_NETNS_CHECK_HIDDEN = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount -t tmpfs tmpfs /proc/sys/net && exec "$0" "$@"'];

/** An OCI runtime's command line, with its own state root: moat, runc and gVisor take the same verbs. */
const RUNTIMES: Record<string, string[]> = {
  moat: [moat, "--root", join(work, "moat"), "--config", join(work, "moat.toml")],
  ...(values.compare ? { [`moat (${values.compare})`]: [join(values.compare, "bin", "moat"), "--root", join(work, "moat-compared"), "--config", join(work, "moat.toml")] } : {}),
  runc: ["runc", "--root", join(work, "runc")],
  "gVisor (ptrace, netstack)": [...RUNSC_ROOT_NETNS_CHECK_HIDDEN, "runsc", "--root", join(work, "runsc"), "--platform=ptrace", "--network=sandbox"],
};

function runtime(name: string, args: string[], mayFail = false): void {
  const [command, ...global] = RUNTIMES[name]!; // names come from RUNTIMES
  const result = spawnSync(command!, [...global, ...args], { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8", timeout: STARTUP_TIMEOUT_MS });
  if (result.status !== 0 && !mayFail) throw new Error(`${name} ${args.join(" ")}: exit ${result.status ?? result.signal}: ${result.stderr.trim()}`);
}

/** A bundle per runtime whose process serves iperf3 and HTTP, joined to `netns`. */
function serverBundle(id: string, netns: string): string {
  const dir = busyboxBundle(join(work, id), ["sh", "-c", `iperf3 --server --daemon && exec httpd -f -p ${HTTP_PORT} -h /www`]);
  addNetworkTools(join(dir, "rootfs"));
  const configPath = join(dir, "config.json");
  const config = JSON.parse(readFileSync(configPath, "utf8")) as { mounts: object[]; linux: { namespaces: { type: string; path?: string }[] } }; // runc spec's shape
  // The root is read-only (runc spec's default); iperf3 writes its stream buffers under /tmp.
  config.mounts.push({ destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "size=64m"] });
  config.linux.namespaces = config.linux.namespaces.map((namespace) => (namespace.type === "network" ? { type: "network", path: netns } : namespace));
  writeFileSync(configPath, JSON.stringify(config));
  return dir;
}

interface Samples {
  toContainer: number[];
  fromContainer: number[];
  requestsPerSecond: number[];
  roundTripMs: number[];
}

async function measureOnce(name: string, round: number, samples: Samples, attach: (id: string) => Promise<Attachment>): Promise<void> {
  const id = `net-${name.replace(/\W/g, "")}-${round}`;
  const attachment = await attach(id);
  try {
    runtime(name, ["create", "--bundle", serverBundle(id, attachment.netns), id]);
    try {
      runtime(name, ["start", id]);
      await waitForPort(attachment.address, HTTP_PORT, STARTUP_TIMEOUT_MS);
      await waitForPort(attachment.address, 5201, STARTUP_TIMEOUT_MS);
      samples.roundTripMs.push(pingMedianMs(attachment.address, 20));
      samples.toContainer.push(await tcpThroughputMbits(attachment.address, seconds, false));
      samples.fromContainer.push(await tcpThroughputMbits(attachment.address, seconds, true));
      samples.requestsPerSecond.push(await httpRequestsPerSecond(attachment.address, HTTP_PORT, requests, 8));
    } finally {
      runtime(name, ["delete", "--force", id], true);
    }
  } finally {
    await attachment.detach();
    rmSync(join(work, id), { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  writeFileSync(join(work, "moat.toml"), "");
  const network = await benchNetwork(work);
  const samples: Record<string, Samples> = Object.fromEntries(
    Object.keys(RUNTIMES).map((name) => [name, { toContainer: [], fromContainer: [], requestsPerSecond: [], roundTripMs: [] }]),
  );
  try {
    for (let round = 0; round < runs; round++) {
      for (const name of Object.keys(RUNTIMES)) {
        process.stdout.write(`round ${round + 1}/${runs}: ${name}\n`);
        await measureOnce(name, round, samples[name]!, (id) => network.attach(id)); // keys of RUNTIMES
      }
    }
  } finally {
    await network.close();
    // moatd would stay 30 s after its last sandbox; the benchmark's own is stopped now.
    for (const root of ["moat", "moat-compared"]) spawnSync("pkill", ["-TERM", "-f", `moatd.mjs --root ${join(work, root)}( |$)`], { stdio: "ignore" });
    rmSync(work, { recursive: true, force: true });
  }
  const context = { what: "host ↔ container on one CNI bridge network, fresh container per round", runs, iperf3Seconds: seconds, httpRequests: requests, httpConcurrency: 8, network: network.description };
  const rows = (pick: (s: Samples) => number[]): Row[] => Object.entries(samples).map(([name, s]) => ({ name, summary: summarize(pick(s)) }));
  report("network-to-container", "TCP throughput, host to container (iperf3)", rows((s) => s.toContainer), "moat", context, "Mbit/s");
  report("network-from-container", "TCP throughput, container to host (iperf3 --reverse)", rows((s) => s.fromContainer), "moat", context, "Mbit/s");
  report("network-http", `HTTP requests per second, each a new connection, 8 at a time`, rows((s) => s.requestsPerSecond), "moat", context, "req/s");
  report("network-rtt", "ICMP round trip from the host (median of 20)", rows((s) => s.roundTripMs), "moat", context, "ms");
}

await main();
