import assert from "node:assert/strict";
import { test } from "node:test";
import { timed, type GuestStep } from "./guest-steps.js";

test("timed records a step with its name and a monotonic span, and passes the result through", async () => {
  const steps: GuestStep[] = [];
  assert.equal(await timed(steps, "wait", () => new Promise((resolve) => setTimeout(() => resolve(7), 5))), 7);
  assert.equal(steps.length, 1);
  assert.equal(steps[0]!.name, "wait"); // one was pushed
  assert.ok(steps[0]!.endNs > steps[0]!.startNs, "the wait is inside the span"); // one was pushed
});

test("timed records the step of work that fails, and rethrows", async () => {
  const steps: GuestStep[] = [];
  await assert.rejects(timed(steps, "fails", () => Promise.reject(new Error("no"))), /no/);
  assert.deepEqual(steps.map((step) => step.name), ["fails"]);
});
