import assert from "node:assert/strict";
import { after, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { socketPair, type SocketPair } from "../../../test/support/unix-socket.js";
import { rejectsWithCode } from "../../../test/support/assertions.js";
import { MoatError } from "../errors.js";
import { GuestService, HealthService, ResponseSchema } from "../protocol/index.js";
import { TtrpcClient } from "./client.js";
import { encodeFrame, FrameType, HEADER_BYTES, MAX_DATA_BYTES } from "./frame.js";
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
  healthServer(); // the connection must still work: answer the next request properly
  server.once("data", () => {
    const answer = Buffer.from(toBinary(ResponseSchema, create(ResponseSchema, { payload: new Uint8Array([9, 0, 0, 0, 0, 0, 0, 0, 0]) })));
    server.write(encodeFrame({ streamId: 3, type: FrameType.RESPONSE, flags: 0, data: answer }));
  });
  const answer = await ttrpc.call(HealthService.method.check, {}, { timeoutMs: 5000 });
  assert.equal(answer.uptimeSeconds, 0);
});

test("a flood of late responses is dropped without growing memory", async () => {
  const { client, server } = await pair();
  const ttrpc = new TtrpcClient(client, "test");
  server.on("data", () => undefined);
  await rejectsWithCode(ttrpc.call(HealthService.method.check, {}, { timeoutMs: 20 }), "MOAT_TTRPC_TIMEOUT");
  const late = encodeFrame({ streamId: 1, type: FrameType.RESPONSE, flags: 0, data: Buffer.alloc(1000) });
  const burst = Buffer.concat(Array.from({ length: 2000 }, () => late)); // 2 MB of answers to a call long gone
  const before = process.memoryUsage().heapUsed;
  await new Promise<void>((resolve) => server.write(burst, () => resolve()));
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.ok(process.memoryUsage().heapUsed - before < 64 * 1024 * 1024);
  const closed = await Promise.race([ttrpc.closed.then(() => true), Promise.resolve(false)]);
  assert.equal(closed, false, "late answers are not a protocol violation");
  ttrpc.close();
});

test("the server answers an undecodable request envelope with INVALID_ARGUMENT", async () => {
  const { client, server } = await pair();
  healthServer().serve(server, "server");
  const answers: Buffer[] = [];
  client.on("data", (chunk: Buffer) => answers.push(chunk));
  client.write(encodeFrame({ streamId: 1, type: FrameType.REQUEST, flags: 0, data: Buffer.from([0xff, 0xff, 0xff]) }));
  await new Promise((resolve) => setTimeout(resolve, 100));
  const wire = Buffer.concat(answers);
  assert.equal(wire.readUInt8(8), FrameType.RESPONSE);
  assert.equal(wire.readUInt32BE(4), 1);
});
