import assert from "node:assert/strict";
import { test } from "node:test";
import { parseSignal } from "./signals.js";

test("signals by name, SIG-name or number, as runc takes them", () => {
  assert.equal(parseSignal("TERM"), 15);
  assert.equal(parseSignal("SIGKILL"), 9);
  assert.equal(parseSignal("kill"), 9);
  assert.equal(parseSignal("10"), 10);
  assert.throws(() => parseSignal("NOPE"), /unknown signal "NOPE"/);
  assert.throws(() => parseSignal("0"), /unknown signal "0"/);
});
