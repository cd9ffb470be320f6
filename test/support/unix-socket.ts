// Unix-socket fixtures for unit tests: a connected pair, or a server whose peer the test
// scripts byte by byte. Sockets live in a private temporary directory, removed afterwards.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface SocketPair {
  client: Socket;
  server: Socket;
  close(): void;
}

/** A connected pair of unix sockets. */
export async function socketPair(): Promise<SocketPair> {
  const { path, server, close } = await listen();
  const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
  const client = connect(path);
  await new Promise((resolve) => client.once("connect", resolve));
  const peer = await accepted;
  // Tests close either end on purpose; a reset seen by the other end is expected.
  client.on("error", () => undefined);
  peer.on("error", () => undefined);
  return {
    client,
    server: peer,
    close: () => {
      client.destroy();
      peer.destroy();
      close();
    },
  };
}

/** A listening unix socket in a fresh temporary directory. */
export async function listen(): Promise<{ path: string; server: Server; close(): void }> {
  const dir = mkdtempSync(join(tmpdir(), "moat-test-"));
  const path = join(dir, "test.sock");
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    server,
    close: () => {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
