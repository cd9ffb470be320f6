import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import { pinNetns, unpinNetns } from "./own-netns.js";

const dir = mkdtempSync(join(tmpdir(), "moat-own-netns-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("a stand-in in moatd's own network namespace is refused, and nothing is pinned", async () => {
  await assert.rejects(pinNetns(join(dir, "c1"), process.pid, "container c1"), (error: unknown) => {
    assert.ok(error instanceof MoatError);
    assert.equal(error.code, "MOAT_NETNS_STANDIN");
    assert.match(error.message, /^container c1: stand-in pid \d+ is in moatd's own network namespace; the spec asks for a new one$/);
    return true;
  });
  assert.deepEqual(readdirSync(dir), []);
});

test("a stand-in that is gone is refused by name", async () => {
  await assert.rejects(pinNetns(join(dir, "c2"), 0x3fffff + 1, "container c2"), /^MoatError: container c2: stand-in pid 4194304: its network namespace cannot be found/);
  assert.equal(existsSync(join(dir, "c2.netns")), false);
});

test("unpinning where nothing is pinned counts as done", async () => {
  await unpinNetns(join(dir, "c3"));
});
