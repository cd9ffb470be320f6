import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, test } from "node:test";
import { CONNECTED, ForwardedConnections, MAX_CONNECTIONS, parseHeader, parseReady, READ_BYTES, REFUSED, redirectRule, type PortPeer } from "./port-forward.js";

test("moat-port-relay's ready line: two ports, IPv6's 0 when it has none, or no loopback; anything else is refused", () => {
  assert.equal(parseReady("no-loopback\n"), "no-loopback");
  assert.deepEqual(parseReady("ready 40123 40123\n"), { port4: 40123, port6: 40123 });
  assert.deepEqual(parseReady("ready 40123 0"), { port4: 40123, port6: 0 });
  for (const line of ["ready 0 0", "ready 70000 1", "ready 1 70000", "ready 1", "ready -1 2", "hello", "ready 1 2 3", ""]) assert.equal(parseReady(line), undefined, line);
});

test("a relay connection's header is a u16 port; 0 and short headers name none", () => {
  assert.equal(parseHeader(Buffer.from([0x1f, 0x90])), 8080);
  assert.equal(parseHeader(Buffer.from([0, 0])), undefined);
  assert.equal(parseHeader(Buffer.from([1])), undefined);
});

test("the REDIRECT rules take TCP to the loopback only, to the relay's port, and say whose they are", () => {
  assert.deepEqual(redirectRule(4, 41000), { tool: "iptables", spec: ["OUTPUT", "-o", "lo", "-d", "127.0.0.1/32", "-p", "tcp", "-m", "comment", "--comment", "moat port-forward", "-j", "REDIRECT", "--to-ports", "41000"] });
  assert.equal(redirectRule(6, 41001).tool, "ip6tables");
  assert.ok(redirectRule(6, 41001).spec.includes("::1/128"));
});

/** A guest scripted by the test: what it answers to each call, and what it was sent. */
class ScriptedGuest implements PortPeer {
  dialled: number[] = [];
  written: Buffer[] = [];
  halfClosed: number[] = [];
  closed: number[] = [];
  /** Answers to reads, in order; a read past them waits until the connection is closed. */
  reads: Array<{ data: Uint8Array; eof: boolean }> = [];
  refuse = false;
  private waiting: Array<() => void> = [];

  async dialPort(port: number): Promise<number> {
    this.dialled.push(port);
    if (this.refuse) throw new Error("guest: nothing answers");
    return this.dialled.length;
  }
  async readPort(): Promise<{ data: Uint8Array; eof: boolean }> {
    const next = this.reads.shift();
    if (next) return next;
    await new Promise<void>((resolve) => this.waiting.push(resolve));
    return { data: new Uint8Array(0), eof: true };
  }
  async writePort(_id: number, data: Uint8Array): Promise<void> {
    this.written.push(Buffer.from(data));
  }
  async closePortWrite(id: number): Promise<void> {
    this.halfClosed.push(id);
  }
  async closePort(id: number): Promise<void> {
    this.closed.push(id);
    for (const wake of this.waiting.splice(0)) wake();
  }
}

const dir = mkdtempSync(join(tmpdir(), "moat-port-forward-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let serial = 0;
/** Every relay-side socket a test made: half-open ones would keep the test process alive. */
const clients: Socket[] = [];
afterEach(() => clients.splice(0).forEach((socket) => socket.destroy()));

async function serve(guest: PortPeer): Promise<{ connections: ForwardedConnections; server: Server; path: string }> {
  const path = join(dir, `port-${++serial}.sock`);
  const connections = new ForwardedConnections(guest, "test");
  const server = createServer({ allowHalfOpen: true }, (socket) => connections.carry(socket));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { connections, server, path };
}

/** Connects as moat-port-relay does and sends the port; resolves with the socket and everything it receives. */
function relayConnection(path: string, header: Buffer): { socket: Socket; received: Promise<Buffer>; ended: Promise<"end" | "close"> } {
  const socket = connect({ path, allowHalfOpen: true });
  clients.push(socket);
  socket.write(header);
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.on("error", () => undefined);
  const ended = new Promise<"end" | "close">((resolve) => {
    socket.once("end", () => resolve("end"));
    socket.once("close", () => resolve("close"));
  });
  return { socket, received: ended.then(() => Buffer.concat(chunks)), ended };
}

const port = (value: number) => Buffer.from([value >> 8, value & 0xff]);

test("a connection: the port dialled, CONNECTED, bytes each way, half-closes passed on, the guest's end closed", async () => {
  const guest = new ScriptedGuest();
  guest.reads = [{ data: Buffer.from("hello "), eof: false }, { data: Buffer.from("client"), eof: false }, { data: new Uint8Array(0), eof: true }];
  const { connections, server, path } = await serve(guest);
  const relay = relayConnection(path, Buffer.concat([port(8080), Buffer.from("GET /")]));
  relay.socket.end(" more");
  assert.equal(await relay.ended, "end", "the guest's end-of-file reaches the relay as a half-close");
  assert.equal((await relay.received).toString(), `${String.fromCharCode(CONNECTED)}hello client`);
  await new Promise((resolve) => relay.socket.once("close", resolve).destroy());
  while (connections.size > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(guest.dialled, [8080]);
  assert.equal(Buffer.concat(guest.written).toString(), "GET / more", "bytes sent with the header are not lost");
  assert.deepEqual(guest.halfClosed, [1]);
  assert.deepEqual(guest.closed, [1]);
  server.close();
});

test("a port the guest refuses: REFUSED, and the connection ends", async () => {
  const guest = new ScriptedGuest();
  guest.refuse = true;
  const { connections, server, path } = await serve(guest);
  const relay = relayConnection(path, port(9));
  assert.deepEqual([...(await relay.received)], [REFUSED]);
  while (connections.size > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  server.close();
});

test("a header naming port 0 is dropped without a dial", async () => {
  const guest = new ScriptedGuest();
  const { connections, server, path } = await serve(guest);
  const relay = relayConnection(path, port(0));
  assert.equal((await relay.received).length, 0);
  assert.deepEqual(guest.dialled, []);
  while (connections.size > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  server.close();
});

test("a guest that never answers holds at most MAX_CONNECTIONS connections; more are dropped; stop() ends them all", async () => {
  const guest = new ScriptedGuest();
  const { connections, server, path } = await serve(guest);
  const held = Array.from({ length: MAX_CONNECTIONS }, () => relayConnection(path, port(80)));
  while (guest.dialled.length < MAX_CONNECTIONS) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(connections.size, MAX_CONNECTIONS);
  const over = relayConnection(path, port(80));
  assert.equal((await over.received).length, 0, "one over the bound gets no answer: the relay resets its client");
  assert.equal(guest.dialled.length, MAX_CONNECTIONS);
  connections.stop();
  await Promise.all(held.map((relay) => relay.ended));
  while (connections.size > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(guest.closed.length, MAX_CONNECTIONS, "each guest end closed");
  server.close();
});

test("the next read waits until the client took the last: a guest that floods is read at the client's pace", async () => {
  let reads = 0;
  const guest = new ScriptedGuest();
  guest.readPort = async () => {
    reads++;
    return { data: Buffer.alloc(READ_BYTES, 0x61), eof: false };
  };
  const { connections, server, path } = await serve(guest);
  const relay = relayConnection(path, port(80));
  relay.socket.pause(); // a client that does not read
  while (reads < 2) await new Promise((resolve) => setTimeout(resolve, 10));
  // Unbounded, the reads would go on for as long as the test waits (thousands a second); held
  // back, they stop once the socket's buffers are full (a few hundred KiB).
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.ok(reads < 64, `${reads} reads of ${READ_BYTES} bytes while the client read nothing`);
  relay.socket.destroy();
  while (connections.size > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  server.close();
});
