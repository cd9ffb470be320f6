// Fuzz targets (test/support/fuzz.ts) for ttrpc as bytes arrive:
// - "ttrpc-frame": any bytes, in any split, make frames or a FrameError (the frame module's
//   own error kind), and the decoder never holds more than one frame's worth;
// - "ttrpc-server": any bytes sent to a TtrpcServer (moatd serves the CLI and the shim
//   this way; the agent serves the host) are answered or end the connection; the server
//   throws nothing and stays able to serve the next connection.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { bytesNear, fuzzTarget } from "../../../test/support/fuzz.js";
import { socketPair } from "../../../test/support/unix-socket.js";
import { HealthService, RequestSchema } from "../protocol/index.js";
import { TtrpcClient } from "./client.js";
import { encodeFrame, FrameDecoder, FrameError, FrameType, HEADER_BYTES, MAX_DATA_BYTES } from "./frame.js";
import { TtrpcServer } from "./server.js";

const requests = fc
  .record({
    service: fc.constantFrom("moat.agent.v1.Health", "x", ""),
    method: fc.constantFrom("Check", "Version", "Nope", ""),
    payload: fc.uint8Array({ maxLength: 32 }),
    timeoutNano: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  })
  .map((request) => Buffer.from(toBinary(RequestSchema, create(RequestSchema, request))));
const frames = fc
  .tuple(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.constantFrom(0, FrameType.REQUEST, FrameType.RESPONSE, FrameType.DATA, 9), fc.integer({ min: 0, max: 255 }), requests)
  .map(([streamId, type, flags, data]) => {
    const frame = Buffer.concat([Buffer.alloc(HEADER_BYTES), data]);
    frame.writeUInt32BE(data.length, 0);
    frame.writeUInt32BE(streamId, 4);
    frame.writeUInt8(type, 8);
    frame.writeUInt8(flags, 9);
    return frame;
  });
const streams = fc.array(frames, { minLength: 1, maxLength: 4 }).map((list) => Buffer.concat(list));

test("fuzz ttrpc-frame: any bytes in any split make frames or a FrameError, with at most one frame held", async () => {
  await fuzzTarget(
    "ttrpc-frame",
    bytesNear(streams),
    (input) => {
      const decoder = new FrameDecoder();
      // The split points come from the bytes themselves, so that a kept input replays exactly.
      const step = 1 + ((input[0] ?? 0) % 17);
      try {
        for (let at = 0; at < input.length; at += step) {
          decoder.push(input.subarray(at, at + step));
          assert.ok(decoder.bufferedBytes <= MAX_DATA_BYTES + HEADER_BYTES);
        }
      } catch (error) {
        if (!(error instanceof FrameError)) throw error;
      }
    },
    2000,
  );
});

test("fuzz ttrpc-server: any bytes a client sends are answered or end its connection; the server serves the next client", async () => {
  const server = new TtrpcServer();
  server.register(HealthService, {
    async check() {
      return { uptimeSeconds: 1 };
    },
    async version() {
      return { agentVersion: "1", protocolVersion: 1, runtimeVersion: "v20" };
    },
  });
  await fuzzTarget(
    "ttrpc-server",
    bytesNear(streams),
    async (input) => {
      const hostile = await socketPair();
      const honest = await socketPair();
      try {
        server.serve(hostile.server, "hostile");
        hostile.client.write(input);
        // Whatever the hostile client did, another client on another connection is served.
        server.serve(honest.server, "honest");
        const client = new TtrpcClient(honest.client, "honest");
        assert.equal((await client.call(HealthService.method.check, {}, { timeoutMs: 5_000 })).uptimeSeconds, 1);
        client.close();
      } finally {
        hostile.close();
        honest.close();
      }
    },
    300,
  );
});

test("an announced frame over the limit is refused at its header, before its data is awaited", () => {
  const header = encodeFrame({ streamId: 1, type: FrameType.REQUEST, flags: 0, data: Buffer.alloc(0) });
  header.writeUInt32BE(MAX_DATA_BYTES + 1, 0);
  assert.throws(() => new FrameDecoder().push(header), FrameError);
});
