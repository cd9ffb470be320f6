// What the network benchmark measures from the host against a container's address: TCP
// throughput (iperf3), short HTTP requests per second and ICMP round trips. Each returns one
// sample; the benchmark repeats them.
import { spawnSync } from "node:child_process";
import { request } from "node:http";
import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: 120_000 });
  if (result.error) throw new Error(`${command}: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")}: exit ${result.status ?? result.signal}: ${result.stderr.trim()}`);
  return result.stdout;
}

/** Resolves once `address:port` accepts a TCP connection; throws after `timeoutMs`. */
export async function waitForPort(address: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const accepted = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: address, port, timeout: 1000 });
      socket.once("connect", () => { socket.destroy(); resolve(true); });
      socket.once("error", () => resolve(false));
      socket.once("timeout", () => { socket.destroy(); resolve(false); });
    });
    if (accepted) return;
    if (Date.now() > deadline) throw new Error(`${address}:${port} did not accept a connection within ${timeoutMs} ms`);
    await sleep(200);
  }
}

/**
 * iperf3 against the container's server for `seconds`: Mbit/s received (`reverse`: container to
 * host). The server takes one test at a time and listens again after each, which can take a
 * moment under emulation: a refused connection is tried again, up to five times.
 */
export async function tcpThroughputMbits(address: string, seconds: number, reverse: boolean): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const output = spawnSync("iperf3", ["--client", address, "--time", String(seconds), "--json", ...(reverse ? ["--reverse"] : [])], { encoding: "utf8", timeout: 120_000 });
    if (output.error) throw new Error(`iperf3: ${output.error.message}`);
    const result = JSON.parse(output.stdout) as { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
    const bits = result.end?.sum_received?.bits_per_second;
    if (typeof bits === "number") return bits / 1e6;
    if (attempt < 5 && result.error?.includes("Connection refused")) {
      await sleep(1000);
      continue;
    }
    throw new Error(`iperf3 to ${address}: no received rate in its report${result.error ? `: ${result.error}` : ""}`);
  }
}

function oneRequest(address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    // agent: false and Connection: close make every request a new TCP connection.
    const req = request({ host: address, port, path: "/index.html", agent: false, headers: { connection: "close" }, timeout: 30_000 }, (response) => {
      response.resume();
      response.once("end", () => (response.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${response.statusCode}`))));
    });
    req.once("error", reject);
    req.once("timeout", () => req.destroy(new Error("timed out")));
    req.end();
  });
}

/** `total` GET requests, each on its own connection, `concurrency` at a time: requests per second. */
export async function httpRequestsPerSecond(address: string, port: number, total: number, concurrency: number): Promise<number> {
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < total) {
      next += 1;
      await oneRequest(address, port);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return total / ((performance.now() - started) / 1000);
}

/** The median of `count` ICMP echo round trips, in ms. */
export function pingMedianMs(address: string, count: number): number {
  const output = run("ping", ["-n", "-c", String(count), "-i", "0.05", "-W", "5", address]);
  const times = [...output.matchAll(/time=([\d.]+) ms/g)].map((match) => Number(match[1])).sort((a, b) => a - b);
  if (times.length === 0) throw new Error(`ping ${address}: no replies`);
  return times[Math.floor(times.length / 2)]!; // non-empty
}
