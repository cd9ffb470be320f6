import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { encodeFrame, FrameDecoder, FrameError, FrameType, HEADER_BYTES, MAX_DATA_BYTES, type Frame } from "./frame.js";

const frameArbitrary = fc.record({
  streamId: fc.integer({ min: 1, max: 0xffffffff }),
  type: fc.constantFrom(FrameType.REQUEST, FrameType.RESPONSE, FrameType.DATA),
  flags: fc.integer({ min: 0, max: 255 }),
  data: fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
}).map((record): Frame => ({ ...record })); // fast-check records have a null prototype; decoded frames do not

/** Cuts `bytes` at the given offsets (any order, any count). */
function cut(bytes: Buffer, offsets: number[]): Buffer[] {
  const points = [...new Set(offsets.map((offset) => offset % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let start = 0;
  for (const point of [...points, bytes.length]) {
    pieces.push(bytes.subarray(start, point));
    start = point;
  }
  return pieces;
}

test("any split or coalescing of frames decodes to the same frames", () => {
  fc.assert(
    fc.property(fc.array(frameArbitrary, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 20 }), (frames: Frame[], offsets) => {
      const wire = Buffer.concat(frames.map(encodeFrame));
      const decoder = new FrameDecoder();
      const decoded = cut(wire, offsets).flatMap((piece) => decoder.push(piece));
      assert.deepEqual(decoded, frames);
      assert.equal(decoder.bufferedBytes, 0);
    }),
  );
});

test("random bytes only ever produce frames or a FrameError", () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 10 }), (chunks) => {
      const decoder = new FrameDecoder();
      try {
        for (const chunk of chunks) decoder.push(Buffer.from(chunk));
      } catch (error) {
        assert.ok(error instanceof FrameError, `unexpected ${String(error)}`);
      }
      assert.ok(decoder.bufferedBytes <= MAX_DATA_BYTES + HEADER_BYTES);
    }),
  );
});

test("a header announcing more than 4 MiB is rejected before its data arrives", () => {
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32BE(MAX_DATA_BYTES + 1, 0);
  header.writeUInt32BE(1, 4);
  header.writeUInt8(FrameType.RESPONSE, 8);
  assert.throws(() => new FrameDecoder().push(header), /over the 4194304-byte limit/);
});

test("a frame of exactly 4 MiB is accepted", () => {
  const frame = { streamId: 1, type: FrameType.DATA, flags: 0, data: Buffer.alloc(MAX_DATA_BYTES, 7) };
  const [decoded] = new FrameDecoder().push(encodeFrame(frame));
  assert.equal(decoded?.data.length, MAX_DATA_BYTES);
});

test("unknown frame types and stream id 0 are rejected", () => {
  const bad = (streamId: number, type: number) => {
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32BE(streamId, 4);
    header.writeUInt8(type, 8);
    return header;
  };
  assert.throws(() => new FrameDecoder().push(bad(1, 9)), /unknown type 0x09/);
  assert.throws(() => new FrameDecoder().push(bad(0, FrameType.REQUEST)), /stream id 0/);
});

test("encoding refuses data over the limit", () => {
  assert.throws(() => encodeFrame({ streamId: 1, type: FrameType.DATA, flags: 0, data: Buffer.alloc(MAX_DATA_BYTES + 1) }), FrameError);
});

test("the header layout is big-endian length, stream id, type, flags", () => {
  const bytes = encodeFrame({ streamId: 0x01020304, type: FrameType.RESPONSE, flags: 0x01, data: Buffer.from("ab") });
  assert.deepEqual([...bytes], [0, 0, 0, 2, 1, 2, 3, 4, 2, 1, 0x61, 0x62]);
});
