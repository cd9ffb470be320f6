import assert from "node:assert/strict";
import { test } from "node:test";
import { CleanupStack } from "./cleanup.js";

test("undos run newest first, all of them, and failures are reported, not thrown", async () => {
  const order: string[] = [];
  const stack = new CleanupStack();
  stack.push("first", () => void order.push("first"));
  stack.push("second", () => {
    order.push("second");
    throw new Error("boom");
  });
  stack.push("third", async () => void order.push("third"));
  const failures = await stack.unwind();
  assert.deepEqual(order, ["third", "second", "first"]);
  assert.deepEqual(failures, ["second: boom"]);
  assert.deepEqual(await stack.unwind(), [], "a second unwind has nothing left to do");
});

test("release forgets the undos", async () => {
  let ran = false;
  const stack = new CleanupStack();
  stack.push("x", () => void (ran = true));
  stack.release();
  await stack.unwind();
  assert.equal(ran, false);
});
