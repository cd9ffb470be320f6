import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { vmPaths } from "../hypervisor.js";
import { TRIM_ABOVE_BYTES, TRIM_KEEP_BYTES, trimLogs } from "./log-dir.js";

const dir = mkdtempSync(join(tmpdir(), "moat-log-dir-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("a log past the threshold keeps its newest lines, from a line's start; an appender goes on at the new end", async () => {
  const paths = vmPaths(dir);
  mkdirSync(paths.logDir, { recursive: true });
  const lines = Array.from({ length: 40_000 }, (_, index) => `line ${index} ${"x".repeat(40)}\n`).join("");
  assert.ok(lines.length > TRIM_ABOVE_BYTES);
  // QEMU's file chardev with append=on: a descriptor opened O_APPEND that stays open.
  const qemu = openSync(paths.consoleLog, "a");
  writeSync(qemu, lines);
  writeFileSync(paths.vmLog, "small\n");
  await trimLogs(paths);
  const kept = readFileSync(paths.consoleLog, "utf8");
  assert.ok(kept.length <= TRIM_KEEP_BYTES, `${kept.length} bytes kept`);
  assert.match(kept, /^line \d+ x+\n/, "starts at a whole line");
  assert.ok(kept.endsWith(`line 39999 ${"x".repeat(40)}\n`), "the newest line is kept");
  writeSync(qemu, "after the trim\n");
  closeSync(qemu);
  assert.ok(readFileSync(paths.consoleLog, "utf8").endsWith(`line 39999 ${"x".repeat(40)}\nafter the trim\n`), "QEMU's next line lands at the new end, no hole");
  assert.equal(statSync(paths.consoleLog).size, kept.length + "after the trim\n".length);
  assert.equal(readFileSync(paths.vmLog, "utf8"), "small\n", "a small log is left alone");
});

test("logs that do not exist count as trimmed", async () => {
  await trimLogs(vmPaths(join(dir, "gone")));
});
