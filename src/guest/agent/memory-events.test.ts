import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { oomKillCount } from "./memory-events.js";

test("oom_kill is read from memory.events as the kernel writes it", () => {
  assert.equal(oomKillCount("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"), 1);
  assert.equal(oomKillCount("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"), 0);
  assert.equal(oomKillCount("oom_group_kill 3\noom_kill 7\n"), 7, "the line named oom_kill, not oom_group_kill");
});

test("a file without an oom_kill count, or with a count that is not a safe integer, has none", () => {
  assert.equal(oomKillCount(""), undefined);
  assert.equal(oomKillCount("oom 1\n"), undefined);
  assert.equal(oomKillCount("oom_kill -1\n"), undefined);
  assert.equal(oomKillCount("oom_kill 99999999999999999999\n"), undefined);
  assert.equal(oomKillCount("xoom_kill 3\n"), undefined);
});

test("garbage never throws and never yields anything but a safe non-negative integer", () => {
  fc.assert(
    fc.property(fc.string(), (text) => {
      const count = oomKillCount(text);
      assert.ok(count === undefined || (Number.isSafeInteger(count) && count >= 0));
    }),
  );
});
