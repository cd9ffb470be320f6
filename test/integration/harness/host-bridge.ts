// A test network's host side: a bridge with an address on 198.18.0.0/15, and an HTTP server on
// that address which answers with the caller's address (what a container on the network
// reaches on the host). Used by tests that run CNI's bridge plugin themselves.
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * Makes `bridge` with `address`/24 (and `mtu`, if given) and starts the server on `address`.
 * The bridge is made up front, not by the bridge plugin (which would, and CNI never removes
 * it), so that the server listens on its address from the start; the caller deletes both.
 */
export async function hostBridgeWithServer(bridge: string, address: string, mtu?: number): Promise<{ server: Server; port: number }> {
  const ip = (...args: string[]) => execFileSync("ip", args, { encoding: "utf8" });
  ip("link", "add", bridge, ...(mtu === undefined ? [] : ["mtu", String(mtu)]), "type", "bridge");
  ip("addr", "add", `${address}/24`, "dev", bridge);
  ip("link", "set", bridge, "up");
  const server = createServer((request, response) => response.end(`hello from the host, ${request.socket.remoteAddress}\n`));
  server.listen(0, address);
  await once(server, "listening");
  return { server, port: (server.address() as AddressInfo).port }; // listening on an IP address and port
}
