import assert from "node:assert/strict";
import { test } from "node:test";
import { outOfBounds, StartTimeline } from "./start-timeline.js";

test("host steps are placed from the origin; guest steps from the first guest step, in ms", () => {
  const timeline = new StartTimeline(1000);
  timeline.hostStep("qemu", 1000, 1250.04);
  timeline.guestSteps("create", [
    { name: "mount shares", startNs: 5_000_000_000n, endNs: 5_002_500_000n },
    { name: "crun create", startNs: 5_003_000_000n, endNs: 5_403_000_000n },
  ]);
  timeline.guestSteps("start", [{ name: "crun start", startNs: 6_000_000_000n, endNs: 6_100_000_000n }]);
  assert.deepEqual(timeline.host, [{ name: "qemu", atMs: 0, ms: 250 }]);
  assert.deepEqual(timeline.guest, [
    { name: "create: mount shares", atMs: 0, ms: 2.5 },
    { name: "create: crun create", atMs: 3, ms: 400 },
    { name: "start: crun start", atMs: 1000, ms: 100 },
  ]);
  assert.deepEqual(JSON.parse(timeline.toJson()), { host: timeline.host, guest: timeline.guest });
});

test("a guest list out of bounds is refused whole and said", () => {
  const timeline = new StartTimeline(0);
  timeline.guestSteps("create", [
    { name: "fine", startNs: 1n, endNs: 2n },
    { name: "backwards", startNs: 5n, endNs: 4n },
  ]);
  assert.deepEqual(timeline.guest, []);
  assert.deepEqual(timeline.refused, ['create: step "backwards" ends before it starts']);
  assert.match(JSON.parse(timeline.toJson()).refused[0], /backwards/);
});

test("outOfBounds refuses too many steps, bad names and hour-long steps; accepts an empty list", () => {
  const step = { name: "x", startNs: 0n, endNs: 1n };
  assert.equal(outOfBounds([]), undefined);
  assert.equal(outOfBounds([step]), undefined);
  assert.match(outOfBounds(Array.from({ length: 17 }, () => step)) ?? "", /17 steps, more than 16/);
  assert.match(outOfBounds([{ ...step, name: "" }]) ?? "", /printable/);
  assert.match(outOfBounds([{ ...step, name: "a\nb" }]) ?? "", /printable/);
  assert.match(outOfBounds([{ ...step, name: "x".repeat(65) }]) ?? "", /printable/);
  assert.match(outOfBounds([{ ...step, endNs: 3_600_000_000_001n }]) ?? "", /longer than an hour/);
});
