import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { missingExecutable, pathOf, resolveInRoot, DEFAULT_PATH } from "./executable.js";

// A container root: /bin/busybox, /bin/sh -> /bin/busybox (absolute: the container's, not
// ours), /usr/bin -> ../bin, a file without an execute bit, a directory, and a symlink loop.
const root = mkdtempSync(join(tmpdir(), "moat-exec-root-"));
after(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, "bin"));
mkdirSync(join(root, "usr"));
mkdirSync(join(root, "work"));
writeFileSync(join(root, "bin", "busybox"), "");
chmodSync(join(root, "bin", "busybox"), 0o755);
symlinkSync("/bin/busybox", join(root, "bin", "sh"));
symlinkSync("../bin", join(root, "usr", "bin"));
writeFileSync(join(root, "work", "notes"), "");
symlinkSync("loop-b", join(root, "work", "loop-a"));
symlinkSync("loop-a", join(root, "work", "loop-b"));
// An absolute link that would leave the root if followed by the kernel from here.
symlinkSync("/etc/passwd", join(root, "work", "escape"));

test("symlinks are followed inside the root, absolute ones from the root, .. stops at it", async () => {
  assert.equal(await resolveInRoot(root, "/bin/sh"), join(root, "bin", "busybox"));
  assert.equal(await resolveInRoot(root, "/usr/bin/sh"), join(root, "bin", "busybox"));
  assert.equal(await resolveInRoot(root, "/../../bin/./busybox"), join(root, "bin", "busybox"));
  assert.equal(await resolveInRoot(root, "/work/escape"), undefined, "/etc/passwd is not in this root");
  assert.equal(await resolveInRoot(root, "/work/loop-a"), undefined, "a loop ends");
});

test("a program is found as runc finds it: a path from the cwd, a name in the process's PATH", async () => {
  assert.equal(await missingExecutable(root, "sh", "/", ["PATH=/usr/bin"]), undefined);
  assert.equal(await missingExecutable(root, "busybox", "/", undefined), undefined, "the default PATH has /bin");
  assert.equal(await missingExecutable(root, "/bin/sh", "/", []), undefined);
  assert.equal(await missingExecutable(root, "../bin/sh", "/work", []), undefined, "relative to the cwd");
  assert.equal(await missingExecutable(root, "/no/such/binary", "/", []), 'exec: "/no/such/binary": stat /no/such/binary: no such file or directory');
  assert.equal(await missingExecutable(root, "nope", "/", []), 'exec: "nope": executable file not found in $PATH');
  assert.equal(await missingExecutable(root, "sh", "/", ["PATH=/work"]), 'exec: "sh": executable file not found in $PATH', "only the process's PATH");
  assert.match((await missingExecutable(root, "/work/notes", "/", [])) ?? "", /no such file/, "no execute bit");
  assert.match((await missingExecutable(root, "/work", "/", [])) ?? "", /no such file/, "a directory");
  assert.equal(pathOf(["HOME=/", "PATH=/a:/b"]), "/a:/b");
  assert.equal(pathOf("garbage"), DEFAULT_PATH);
});
