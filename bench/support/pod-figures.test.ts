import assert from "node:assert/strict";
import { test } from "node:test";
import { criLogMessages, perPodBreakdown, podFixedMemory, processLabel } from "./pod-figures.js";

test("criLogMessages: full lines, partial lines joined, other lines skipped", () => {
  const log = [
    "2026-12-08T00:01:02.123456789Z stdout F Hello from Kata",
    "2026-12-08T00:01:02.2Z stderr P half ",
    "2026-12-08T00:01:02.3Z stderr F and half",
    "not a CRI line",
    "2026-12-08T00:01:02.4Z stdout F ",
    "2026-12-08T00:01:02.5Z stdout F cut off with no newl", // complete: F
    "2026-12-08T00:01:02.6Z stdo",
  ].join("\n");
  assert.deepEqual(criLogMessages(log), ["Hello from Kata", "half and half", "", "cut off with no newl"]);
  assert.deepEqual(criLogMessages(""), []);
  assert.deepEqual(criLogMessages("2026-12-08T00:01:02Z stdout P never finished"), []);
});

test("processLabel: a program's base name, an interpreter's script", () => {
  assert.equal(processLabel(["/usr/bin/qemu-system-x86_64", "-machine", "q35"]), "qemu-system-x86_64");
  assert.equal(processLabel(["/usr/bin/node", "--enable-source-maps", "/x/dist/bundle/moatd.mjs", "--root", "/s"]), "moatd.mjs");
  assert.equal(processLabel(["node", "-e", "0"]), "node");
  assert.equal(processLabel(["sh", "-c", "echo Hello && sleep 3600"]), "sh");
  assert.equal(processLabel(["/pause"]), "pause");
  assert.equal(processLabel([]), "?");
  assert.equal(processLabel([""]), "?");
});

test("perPodBreakdown: summed by label, divided by the pods, largest first", () => {
  const samples = [
    { label: "qemu", pssMiB: 60 },
    { label: "qemu", pssMiB: 62 },
    { label: "moatd.mjs", pssMiB: 50 },
    { label: "relay", pssMiB: 0.2 },
    { label: "relay", pssMiB: 0.2 },
  ];
  assert.deepEqual(perPodBreakdown(samples, 2), [
    { label: "qemu", processes: 2, mibPerPod: 61 },
    { label: "moatd.mjs", processes: 1, mibPerPod: 25 },
    { label: "relay", processes: 2, mibPerPod: 0.2 },
  ]);
  assert.deepEqual(perPodBreakdown([], 3), []);
});

test("podFixedMemory: rounded up to the next 10 Mi, never below the figure", () => {
  assert.equal(podFixedMemory(68.1), "70Mi");
  assert.equal(podFixedMemory(70), "70Mi");
  assert.equal(podFixedMemory(70.01), "80Mi");
  assert.equal(podFixedMemory(0.3), "10Mi");
  assert.throws(() => podFixedMemory(Number.NaN), /not a measured figure/);
  assert.throws(() => podFixedMemory(0), /not a measured figure/);
});
