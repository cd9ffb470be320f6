import assert from "node:assert/strict";
import { test } from "node:test";
import { retryWhile } from "./deadline.js";

test("retryWhile: a transient failure is tried again; another is thrown at once; the last is thrown at the limit", async () => {
  let calls = 0;
  const busy = new Error("busy");
  assert.equal(await retryWhile(async () => (++calls < 3 ? Promise.reject(busy) : "done"), (error) => error === busy, 1000, 1), "done");
  assert.equal(calls, 3);

  calls = 0;
  const other = new Error("other");
  await assert.rejects(retryWhile(async () => (++calls, Promise.reject(other)), (error) => error === busy, 1000, 1), other);
  assert.equal(calls, 1);

  await assert.rejects(retryWhile(async () => Promise.reject(busy), (error) => error === busy, 20, 5), busy);
});
