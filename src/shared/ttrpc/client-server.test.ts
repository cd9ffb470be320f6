import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { Socket } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { socketPair, type SocketPair } from "../../../test/support/unix-socket.js";
import { rejectsWithCode } from "../../../test/support/assertions.js";
import { MoatError } from "../errors.js";
import { GuestService, HealthService, ResponseSchema } from "../protocol/index.js";
import { TtrpcClient } from "./client.js";
import { encodeFrame, FrameDecoder, FrameType, HEADER_BYTES, MAX_DATA_BYTES, type Frame } from "./frame.js";
import { TtrpcServer } from "./server.js";
import { Code } from "./status.js";

const pairs: SocketPair[] = [];
after(() => pairs.forEach((pair) => pair.close()));

async function pair(): Promise<SocketPair> {
  const created = await socketPair();
  pairs.push(created);
  return created;
}

function healthServer(): TtrpcServer {
  const server = new TtrpcServer();
  server.register(HealthService, {
    async check() {
      return { uptimeSeconds: 1.5 };
    },
    async version() {
      throw new MoatError("MOAT_TEST", "version is broken here", { status: Code.FAILED_PRECONDITION });
    },
  });
  return server;
}


test("a unary call round-trips through a real server", async () => {
  const { client, server } = await pair();
  healthServer().serve(server, "server");
  const ttrpc = new TtrpcClient(client, "test");
  const answer = await ttrpc.call(HealthService.method.check, {}, { timeoutMs: 5000 });
  assert.equal(answer.uptimeSeconds, 1.5);
});

test("a handler's error arrives as its status and message", async () => {
  const { client, server } = await pair();
  healthServer().serve(server, "server");
  const ttrpc = new TtrpcClient(client, "test");
  const error = await rejectsWithCode(ttrpc.call(HealthService.method.version, {}, { timeoutMs: 5000 }), "MOAT_TTRPC_STATUS", /version is broken here/);
  assert.equal(error.status, Code.FAILED_PRECONDITION);
});

test("an unregistered service is UNIMPLEMENTED and the connection stays usable", async () => {
  const { client, server } = await pair();
  healthServer().serve(server, "server");
  const ttrpc = new TtrpcClient(client, "test");
  const error = await rejectsWithCode(ttrpc.call(GuestService.method.details, {}, { timeoutMs: 5000 }), "MOAT_TTRPC_STATUS", /no such method/);
  assert.equal(error.status, Code.UNIMPLEMENTED);
  assert.equal((await ttrpc.call(HealthService.method.check, {}, { timeoutMs: 5000 })).uptimeSeconds, 1.5);
});

// A hostile peer: the test plays the server's side byte by byte.

test("garbage from the peer closes the connection and fails the pending call", async () => {
  const { client, server } = await pair();
  const ttrpc = new TtrpcClient(client, "test");
  server.once("data", () => server.write(Buffer.from("HTTP/1.1 400 Bad Request\r\n\r\n")));
  await rejectsWithCode(ttrpc.call(HealthService.method.check, {}, { timeoutMs: 5000 }), "MOAT_TTRPC_CLOSED");
  assert.match((await ttrpc.closed).message, /protocol violation/);
});

test("an oversize frame header closes the connection at once", async () => {
  const { client, server } = await pair();
  const ttrpc = new TtrpcClient(client, "test");
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32BE(MAX_DATA_BYTES + 1, 0);
  header.writeUInt32BE(1, 4);
  header.writeUInt8(FrameType.RESPONSE, 8);
  server.once("data", () => server.write(header));
  await rejectsWithCode(ttrpc.call(HealthService.method.check, {}, { timeoutMs: 5000 }), "MOAT_TTRPC_CLOSED");
  assert.match((await ttrpc.closed).message, /over the 4194304-byte limit/);
});

test("a response on a stream that was never opened closes the connection", async () => {
  const { client, server } = await pair();
  const ttrpc = new TtrpcClient(client, "test");
  const response = Buffer.from(toBinary(ResponseSchema, create(ResponseSchema, {})));
  server.once("data", () => server.write(encodeFrame({ streamId: 99, type: FrameType.RESPONSE, flags: 0, data: response })));
  await rejectsWithCode(ttrpc.call(HealthService.method.check, {}, { timeoutMs: 5000 }), "MOAT_TTRPC_CLOSED");
  assert.match((await ttrpc.closed).message, /stream 99, which was never opened/);
});

test("a frame cut in half and then a closed socket fail the call cleanly", async () => {
  const { client, server } = await pair();
  const ttrpc = new TtrpcClient(client, "test");
  const response = encodeFrame({ streamId: 1, type: FrameType.RESPONSE, flags: 0, data: Buffer.alloc(40) });
  server.once("data", () => server.end(response.subarray(0, 20)));
  await rejectsWithCode(ttrpc.call(HealthService.method.check, {}, { timeoutMs: 5000 }), "MOAT_TTRPC_CLOSED");
});

test("a response that never comes times out; a late one is then dropped", async () => {
  const { client, server } = await pair();
  const ttrpc = new TtrpcClient(client, "test");
  const requests: Buffer[] = [];
  server.on("data", (chunk: Buffer) => requests.push(chunk));
  const error = await rejectsWithCode(ttrpc.call(HealthService.method.check, {}, { timeoutMs: 50 }), "MOAT_TTRPC_TIMEOUT");
  assert.equal(error.status, Code.DEADLINE_EXCEEDED);
  const late = Buffer.from(toBinary(ResponseSchema, create(ResponseSchema, {})));
  server.write(encodeFrame({ streamId: 1, type: FrameType.RESPONSE, flags: 0, data: late }));
  server.once("data", () => {
    const answer = Buffer.from(toBinary(ResponseSchema, create(ResponseSchema, { payload: new Uint8Array([9, 0, 0, 0, 0, 0, 0, 0, 0]) })));
    server.write(encodeFrame({ streamId: 3, type: FrameType.RESPONSE, flags: 0, data: answer }));
  });
  const answer = await ttrpc.call(HealthService.method.check, {}, { timeoutMs: 5000 });
  assert.equal(answer.uptimeSeconds, 0);
});

test("a flood of late responses is dropped without growing memory, and the connection stays usable", async () => {
  const { client, server } = await pair();
  const ttrpc = new TtrpcClient(client, "test");
  const requests = frameReader(server);
  const timedOut = await rejectsWithCode(ttrpc.call(HealthService.method.check, {}, { timeoutMs: 20 }), "MOAT_TTRPC_TIMEOUT");
  assert.equal(timedOut.status, Code.DEADLINE_EXCEEDED);
  assert.equal((await requests.next()).streamId, 1);
  // 64 MiB of answers to the call that timed out, in the largest frames allowed. A client that
  // kept them (or kept a frame's bytes past its handling) would hold all of it; Buffers live
  // outside the V8 heap, so it is arrayBuffers that counts them.
  const late = encodeFrame({ streamId: 1, type: FrameType.RESPONSE, flags: 0, data: Buffer.alloc(MAX_DATA_BYTES) });
  const floodBytes = 16 * late.length;
  const before = await externalBytesAfterGc();
  for (let frame = 0; frame < 16; frame++) server.write(late);
  // The next call is answered after the flood on the same socket: once it resolves, the client
  // has read and handled every late frame, and is still in step with the stream.
  const answered = ttrpc.call(HealthService.method.check, {}, { timeoutMs: 60_000 });
  assert.equal((await requests.next()).streamId, 3);
  const answer = Buffer.from(toBinary(ResponseSchema, create(ResponseSchema, { payload: new Uint8Array([9, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f]) })));
  server.write(encodeFrame({ streamId: 3, type: FrameType.RESPONSE, flags: 0, data: answer }));
  assert.equal((await answered).uptimeSeconds, 1.5, "late answers are not a protocol violation: the connection still works");
  const grown = (await externalBytesAfterGc()) - before;
  assert.ok(grown < floodBytes / 4, `${grown} bytes kept after a flood of ${floodBytes}`);
  ttrpc.close();
});

test("the server answers an undecodable request envelope with INVALID_ARGUMENT", async () => {
  const { client, server } = await pair();
  healthServer().serve(server, "server");
  const answers = frameReader(client);
  client.write(encodeFrame({ streamId: 1, type: FrameType.REQUEST, flags: 0, data: Buffer.from([0xff, 0xff, 0xff]) }));
  const frame = await answers.next();
  assert.equal(frame.type, FrameType.RESPONSE);
  assert.equal(frame.streamId, 1);
  const response = fromBinary(ResponseSchema, frame.data);
  assert.equal(response.status?.code, Code.INVALID_ARGUMENT);
  assert.match(response.status?.message ?? "", /request envelope is not a ttrpc.Request/);
});

/** The frames a test's end of a socket receives, one at a time, as they complete. */
function frameReader(socket: Socket): { next(): Promise<Frame> } {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  let wake = () => undefined as void;
  socket.on("data", (chunk: Buffer) => {
    frames.push(...decoder.push(chunk));
    wake();
  });
  return {
    async next() {
      while (frames.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      return frames.shift()!; // not empty here
    },
  };
}

/**
 * Bytes held in ArrayBuffers (Buffers among them) once garbage is collected. V8 frees dead
 * ArrayBuffers' memory on a background sweeper after a GC, and finishes that sweep at the
 * start of the next GC: so two collections, a turn of the event loop between them, and the
 * least of three such readings (load on the machine can only delay the sweep, never keep
 * bytes a client really holds from being counted).
 */
async function externalBytesAfterGc(): Promise<number> {
  let least = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 3; round++) {
    collectGarbage();
    await new Promise((resolve) => setImmediate(resolve));
    collectGarbage();
    least = Math.min(least, process.memoryUsage().arrayBuffers);
  }
  return least;
}

// gc() without --expose-gc on the test's command line: the flag is set at run time, and a
// new context then has the function.
setFlagsFromString("--expose-gc");
const collectGarbage = runInNewContext("gc") as () => void; // the function V8 installs under --expose-gc
