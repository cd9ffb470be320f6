import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import { after, test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { MAX_BUFFERED_BYTES, MAX_CONNECTIONS, PortForwards, type Session } from "./port-forward.js";

/** A server on 127.0.0.1 standing in for a program in the pod; `accepted` are its sockets. */
async function podServer(onSocket: (socket: Socket) => void = () => undefined): Promise<{ server: Server; port: number; accepted: Socket[] }> {
  const accepted: Socket[] = [];
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    accepted.push(socket);
    socket.on("error", () => undefined);
    onSocket(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === "object");
  after(() => {
    for (const socket of accepted) socket.destroy();
    server.close();
  });
  return { server, port: address.port, accepted };
}

function session(id: string): Session & { end: () => void } {
  let end!: () => void; // assigned by the executor, which runs at once
  const closed = new Promise<Error>((resolve) => (end = () => resolve(new Error("session ended"))));
  return { id, closed, end };
}

const live = new AbortController().signal;

function statusOf(error: unknown): Code | undefined {
  return error instanceof MoatError ? error.status : undefined;
}

test("a dialled connection carries bytes both ways, half-closes each way, and ends", async () => {
  const { port, accepted } = await podServer((socket) => {
    let got = "";
    socket.on("data", (chunk: Buffer) => (got += chunk.toString()));
    socket.on("end", () => socket.end(`echo:${got}`));
  });
  const forwards = new PortForwards();
  const host = session("host-1");
  const { connectionId, address } = await forwards.dial(port, host, live);
  assert.equal(address, "127.0.0.1");
  await forwards.write(connectionId, Buffer.from("ping"), host);
  forwards.closeWrite(connectionId, host);
  let answer = "";
  for (;;) {
    const { data, eof } = await forwards.read(connectionId, 3, host, live);
    assert.ok(data.length <= 3, "never more than asked for");
    if (eof) break;
    answer += data.toString();
  }
  assert.equal(answer, "echo:ping");
  forwards.close(connectionId, host);
  assert.equal(forwards.size, 0);
  forwards.close(connectionId, host); // gone already: no error
  assert.equal(accepted.length, 1);
});

test("a port with nothing listening is refused UNAVAILABLE, after 127.0.0.1 and ::1 were tried", async () => {
  const { server, port } = await podServer();
  await new Promise((resolve) => server.close(resolve));
  const forwards = new PortForwards();
  const error = await forwards.dial(port, session("host-1"), live).catch((caught: unknown) => caught);
  assert.equal(statusOf(error), Code.UNAVAILABLE);
  assert.match(String(error), /127\.0\.0\.1: ECONNREFUSED.*::1: /);
  assert.equal(forwards.size, 0);
});

test("a port outside 1 to 65535 and a read size out of bounds are refused", async () => {
  const forwards = new PortForwards();
  const host = session("host-1");
  for (const port of [0, 65536, 1.5]) assert.equal(statusOf(await forwards.dial(port, host, live).catch((caught: unknown) => caught)), Code.INVALID_ARGUMENT, String(port));
  const { port } = await podServer();
  const { connectionId } = await forwards.dial(port, host, live);
  for (const size of [0, (1 << 20) + 1]) assert.equal(statusOf(await forwards.read(connectionId, size, host, live).catch((caught: unknown) => caught)), Code.INVALID_ARGUMENT, String(size));
  forwards.close(connectionId, host);
});

test("another session cannot touch a connection; the session's end closes its connections", async () => {
  const { port, accepted } = await podServer();
  const forwards = new PortForwards();
  const first = session("host-1");
  const second = session("host-2");
  const { connectionId } = await forwards.dial(port, first, live);
  assert.equal(statusOf(await forwards.write(connectionId, Buffer.from("x"), second).catch((caught: unknown) => caught)), Code.NOT_FOUND);
  forwards.close(connectionId, second); // not its own: nothing happens
  assert.equal(forwards.size, 1);
  const pending = forwards.read(connectionId, 100, first, live);
  first.end();
  assert.deepEqual(await pending, { data: Buffer.alloc(0), eof: true }, "a pending read ends");
  assert.equal(forwards.size, 0);
  const accepted0 = accepted[0]!; // the server accepted the one dialled
  if (!accepted0.readableEnded) await new Promise((resolve) => accepted0.once("end", resolve).resume());
});

test("at most MAX_CONNECTIONS at once: one more is RESOURCE_EXHAUSTED", async () => {
  const { port } = await podServer();
  const forwards = new PortForwards();
  const host = session("host-1");
  const ids: number[] = [];
  for (let index = 0; index < MAX_CONNECTIONS; index++) ids.push((await forwards.dial(port, host, live)).connectionId);
  assert.equal(new Set(ids).size, MAX_CONNECTIONS, "ids are unique");
  assert.equal(statusOf(await forwards.dial(port, host, live).catch((caught: unknown) => caught)), Code.RESOURCE_EXHAUSTED);
  host.end();
  await host.closed;
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(forwards.size, 0);
});

/** More than the agent's buffer and the loopback's socket buffers (a few MiB) together. */
const FLOOD_BYTES = 64 * MAX_BUFFERED_BYTES;

test("a pod program that floods is paused once MAX_BUFFERED_BYTES wait for the host, and resumed as the host reads", async () => {
  const chunk = Buffer.alloc(64 * 1024, 0x62);
  let written = 0;
  const { port } = await podServer((socket) => {
    const pump = () => {
      while (written < FLOOD_BYTES) {
        written += chunk.length;
        if (!socket.write(chunk)) return void socket.once("drain", pump);
      }
      socket.end();
    };
    pump();
  });
  const forwards = new PortForwards();
  const host = session("host-1");
  const { connectionId } = await forwards.dial(port, host, live);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.ok(written < FLOOD_BYTES, `the program could write only what buffers hold (${written} bytes)`);
  let total = 0;
  for (;;) {
    const { data, eof } = await forwards.read(connectionId, 1 << 20, host, live);
    if (eof) break;
    total += data.length;
  }
  assert.equal(total, FLOOD_BYTES, "everything arrives once the host reads");
  forwards.close(connectionId, host);
});

test("two reads at once on one connection: the second is refused", async () => {
  const { port } = await podServer();
  const forwards = new PortForwards();
  const host = session("host-1");
  const { connectionId } = await forwards.dial(port, host, live);
  const first = forwards.read(connectionId, 10, host, live);
  assert.equal(statusOf(await forwards.read(connectionId, 10, host, live).catch((caught: unknown) => caught)), Code.FAILED_PRECONDITION);
  forwards.close(connectionId, host);
  assert.equal((await first).eof, true);
});
