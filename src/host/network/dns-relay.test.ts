import assert from "node:assert/strict";
import { test } from "node:test";
import { FrameReader, RateLimit } from "./dns-relay.js";

test("the rate limit lets a burst through, then one query per 1/rate seconds", () => {
  let now = 0;
  const limit = new RateLimit(10, 3, () => now);
  assert.deepEqual([limit.take(), limit.take(), limit.take(), limit.take()], [true, true, true, false]);
  now += 100; // one token back at 10 per second
  assert.deepEqual([limit.take(), limit.take()], [true, false]);
  now += 60_000; // never more than the burst
  assert.deepEqual([limit.take(), limit.take(), limit.take(), limit.take()], [true, true, true, false]);
});

test("frames are split across and within chunks", () => {
  const reader = new FrameReader();
  const frame = (text: string) => Buffer.concat([Buffer.from([0, text.length]), Buffer.from(text)]);
  const bytes = Buffer.concat([frame("one"), frame("two"), frame("three")]);
  const got = [...reader.push(bytes.subarray(0, 4)), ...reader.push(bytes.subarray(4, 11)), ...reader.push(bytes.subarray(11))].map(String);
  assert.deepEqual(got, ["one", "two", "three"]);
});
