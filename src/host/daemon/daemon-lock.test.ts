import assert from "node:assert/strict";
import { test } from "node:test";
import { takeDaemonLock } from "./daemon-lock.js";

test("one holder per state root; released, it can be taken again; another root is another lock", async () => {
  const root = `/run/moat-lock-test-${process.pid}`;
  const first = await takeDaemonLock(root);
  assert.ok(first, "a free lock is taken");
  assert.equal(await takeDaemonLock(root), undefined, "a held lock is not taken twice");
  const other = await takeDaemonLock(`${root}-other`);
  assert.ok(other, "another state root has its own lock");
  first.release();
  other.release();
  await new Promise((resolve) => setImmediate(resolve)); // close completes on the next turn
  const again = await takeDaemonLock(root);
  assert.ok(again, "a released lock is taken again");
  again.release();
});
