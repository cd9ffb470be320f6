// Real bind mounts (the suite runs as root, as moat does), in a temporary directory: a single
// file bound into a files share is the caller's file itself, read-only where asked, and
// removeStateDir unmounts it before it removes anything.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { bindFiles, mountsUnder, removeStateDir } from "./share-dir.js";

const dir = mkdtempSync(join(tmpdir(), "moat-share-dir-"));
after(async () => {
  // Never a recursive delete while something is mounted under it: it would go through the bind.
  if ((await mountsUnder(dir)).length === 0) rmSync(dir, { recursive: true, force: true });
});

test("a single file is bound, not copied: the caller's later in-place update is seen, and a read-only one refuses writes", async () => {
  const resolv = join(dir, "resolv.conf");
  const hosts = join(dir, "hosts");
  writeFileSync(resolv, "nameserver 198.18.0.1\n");
  writeFileSync(hosts, "127.0.0.1 localhost\n");
  const stateDir = join(dir, "state");
  const files = join(stateDir, "files");
  mkdirSync(files, { recursive: true });
  await bindFiles(files, [
    { name: "6-resolv.conf", source: resolv, readOnly: true },
    { name: "7-hosts", source: hosts, readOnly: false },
  ], join(stateDir, "staging"), "test");
  assert.deepEqual((await mountsUnder(stateDir)).sort(), [join(files, "6-resolv.conf"), join(files, "7-hosts")]);
  writeFileSync(resolv, "nameserver 198.18.0.2\n"); // the caller rewrites it in place
  assert.equal(readFileSync(join(files, "6-resolv.conf"), "utf8"), "nameserver 198.18.0.2\n");
  assert.throws(() => writeFileSync(join(files, "6-resolv.conf"), "x"), /EROFS/);
  writeFileSync(join(files, "7-hosts"), "127.0.0.1 changed\n");
  assert.equal(readFileSync(hosts, "utf8"), "127.0.0.1 changed\n", "a read-write file bind writes the caller's file, as runc's does");
  await removeStateDir({ stateDir, socketDir: join(dir, "no-socket-dir") });
  assert.ok(!existsSync(stateDir));
  assert.equal(readFileSync(resolv, "utf8"), "nameserver 198.18.0.2\n", "the caller's files survive the state directory");
  assert.equal(readFileSync(hosts, "utf8"), "127.0.0.1 changed\n");
});

test("a file that cannot be bound leaves none of the others mounted", async () => {
  const good = join(dir, "good");
  writeFileSync(good, "x\n");
  const files = join(dir, "state2", "files");
  mkdirSync(files, { recursive: true });
  await assert.rejects(
    bindFiles(files, [
      { name: "1-good", source: good, readOnly: false },
      { name: "2-missing", source: join(dir, "missing"), readOnly: false },
    ], join(dir, "state2", "staging"), "sandbox x"),
    (error: Error & { code?: string }) => error.code === "MOAT_SHARE_MOUNT" && /sandbox x: file .*missing/.test(error.message),
  );
  assert.deepEqual(await mountsUnder(join(dir, "state2")), []);
});
