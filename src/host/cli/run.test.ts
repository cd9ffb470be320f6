import assert from "node:assert/strict";
import { test } from "node:test";
import { parseMemoryMiB } from "./run.js";

test("memory sizes are read as docker reads them", () => {
  assert.equal(parseMemoryMiB("512m"), 512);
  assert.equal(parseMemoryMiB("512M"), 512);
  assert.equal(parseMemoryMiB("2g"), 2048);
  assert.equal(parseMemoryMiB("262144k"), 256);
  assert.equal(parseMemoryMiB("268435456"), 256);
  assert.throws(() => parseMemoryMiB("64m"), /from 128m to 1024g/);
  assert.throws(() => parseMemoryMiB("lots"), /got "lots"/);
});
