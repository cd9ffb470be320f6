// moat-jail (moat-jail.c, built by `make build` into dist/bin) run on small programs instead of
// QEMU: what the program sees of itself and of the host, how its end reaches the caller, and
// what the launcher refuses. Needs root, as moatd does.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";

/** dist/bin/moat-jail, from dist/src/host/hypervisor where this runs. */
const JAIL = fileURLToPath(new URL("../../../bin/moat-jail", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "moat-jail-test-"));
after(() => rmSync(work, { recursive: true, force: true }));

function jail(args: string[], script: string) {
  return spawnSync(JAIL, [...args, "--", "/usr/bin/sh", "-c", script], { encoding: "utf8" });
}

test("the program is pid 1 of its own pid namespace, with the capabilities named, no_new_privs, and only its paths", () => {
  const rw = join(work, "rw");
  mkdirSync(rw);
  const pidFile = join(work, "pid");
  const result = jail(["--pidfile", pidFile, "--rw", rw, "--caps", "chown,fowner"], `grep -E '^(NSpid|CapEff|CapBnd|CapInh|CapAmb|NoNewPrivs|Uid)' /proc/1/status; echo --; ls -A /; ls /proc; echo x > ${rw}/written`);
  assert.equal(result.status, 0, result.stderr);
  const lines = result.stdout.split("\n");
  assert.match(lines.find((line) => line.startsWith("NSpid")) ?? "", /\s1$/, "pid 1 in its namespace");
  assert.equal(lines.find((line) => line.startsWith("CapEff"))?.split(/\s+/)[1], "0000000000000009", "CAP_CHOWN and CAP_FOWNER only");
  assert.equal(lines.find((line) => line.startsWith("CapBnd"))?.split(/\s+/)[1], "0000000000000009");
  assert.equal(lines.find((line) => line.startsWith("CapAmb"))?.split(/\s+/)[1], "0000000000000000");
  assert.equal(lines.find((line) => line.startsWith("NoNewPrivs"))?.split(/\s+/)[1], "1");
  const root = lines.slice(lines.indexOf("--") + 1, lines.indexOf("1"));
  assert.deepEqual(root, ["bin", "dev", "etc", "lib", "lib64", "proc", "sbin", "tmp", "usr"].filter((name) => name !== "lib64" || root.includes("lib64")), "/ holds /usr and what it needs, and the one path given (under /tmp)");
  const proc = lines.slice(lines.indexOf("1")).filter(Boolean);
  assert.deepEqual(proc.filter((name) => !/^\d+$/.test(name)), ["self", "thread-self"], "its /proc has process directories only");
  assert.ok(proc.filter((name) => /^\d+$/.test(name)).every((pid) => Number(pid) < 10), `and only the jail's processes: ${proc.join(" ")}`);
  assert.ok(Number(readFileSync(pidFile, "utf8")) > 1, "the pid file holds the pid the host sees");
  assert.equal(readFileSync(join(rw, "written"), "utf8"), "x\n", "a read-write path is the host's");
});

test("the program's descriptors past 2 are closed but the kept ones; its root is read-only; a read-only path refuses writes", () => {
  const ro = join(work, "ro");
  mkdirSync(ro, { recursive: true });
  writeFileSync(join(ro, "file"), "ro\n");
  // Descriptors 3, 4 and 5 are open (sockets, as Node makes stdio pipes); only 3 is kept.
  // ls sees stderr and the kept one as sockets; 4 and 5 would be too, were they passed on.
  const result = spawnSync(JAIL, ["--keep-fds", "1", "--ro", ro, "--caps", "none", "--", "/usr/bin/sh", "-c", `ls -l /proc/self/fd/ | grep -c socket; cat ${ro}/file; echo > ${ro}/new || echo refused; touch /x || echo root-refused`], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe", "pipe", "pipe", "pipe"],
  });
  assert.equal(result.status, 0, result.stderr);
  assert.equal(result.stdout, "2\nro\nrefused\nroot-refused\n");
});

test("the program's end is the launcher's: its exit status, or killed by the same signal", () => {
  assert.equal(jail(["--caps", "none"], "exit 7").status, 7);
  const outside = spawnSync("/usr/bin/sh", ["-c", `${JAIL} --pidfile ${work}/p2 --caps none -- /usr/bin/sleep 30 & sleep 0.5; kill -KILL $(cat ${work}/p2); wait $!; echo $?`], { encoding: "utf8" });
  assert.equal(outside.stdout.trim(), String(128 + 9), "killed QEMU: the launcher ends killed by SIGKILL too");
});

test("bad arguments are one line and status 127, before anything is made", () => {
  for (const args of [["--caps", "sys_admin"], ["--ro", "relative"], ["--ro", "/a/../b"], ["--uid", "0", "--gid", "5"], ["--uid", "5"], ["--uid", "5", "--gid", "5", "--caps", "chown"], ["--bogus", "x"]]) {
    const result = spawnSync(JAIL, [...args, "--", "/usr/bin/true"], { encoding: "utf8" });
    assert.equal(result.status, 127, args.join(" "));
    assert.match(result.stderr, /^moat-jail: /, args.join(" "));
  }
  const missing = spawnSync(JAIL, ["--ro", "/nonexistent/kernel", "--", "/usr/bin/true"], { encoding: "utf8" });
  assert.equal(missing.status, 127);
  assert.match(missing.stderr, /^moat-jail: find \/nonexistent\/kernel: No such file or directory$/m);
});

test("--9p-proxy: a helper per export, jailed with the file server's capabilities and a filter against set-id modes and device nodes", (t) => {
  // A stand-in for virtfs-proxy-helper (same arguments, same descriptor 3) that tries what a
  // root guest would have the helper do, in a share mounted in the export after the bind moat
  // makes (as moat mounts shares). QEMU's stand-in relays what it reports on its socket end.
  const exportDir = join(work, "export");
  const share = join(exportDir, "share");
  mkdirSync(share, { recursive: true });
  const mount = (...args: string[]) => assert.equal(spawnSync("mount", args).status, 0, `mount ${args.join(" ")}`);
  mount("--bind", exportDir, exportDir);
  mount("--make-shared", exportDir);
  mount("-t", "tmpfs", "moat-jail-test", share);
  t.after(() => spawnSync("umount", ["-R", exportDir]));
  const helper = join(share, "helper.sh");
  writeFileSync(helper, `#!/usr/bin/sh
{
  echo "args $*"
  grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
  cd "$5/share" || exit 1
  touch f && chmod 0750 f && echo chmod-plain-ok
  chmod u+s f 2>/dev/null || echo chmod-setuid-refused
  chmod g+s f 2>/dev/null || echo chmod-setgid-refused
  install -m 4755 f g 2>/dev/null || echo install-setuid-refused
  mknod c c 1 3 2>/dev/null || echo mknod-char-refused
  mknod b b 7 0 2>/dev/null || echo mknod-block-refused
  mkfifo p && echo fifo-ok
  ls /
} >&3
`, { mode: 0o755 });
  const result = spawnSync(JAIL, ["--9p-proxy", exportDir, "--9p-helper", helper, "--caps", "none", "--", "/usr/bin/sh", "-c", "ls /; cat <&3"], { encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  const lines = result.stdout.trim().split("\n");
  const qemuRoot = lines.slice(0, lines.findIndex((line) => line.startsWith("args")));
  assert.ok(!qemuRoot.includes("tmp"), `QEMU's jail does not hold the export: ${qemuRoot.join(" ")}`);
  assert.ok(lines.includes(`args -n -f 3 -p ${exportDir}`), result.stdout);
  // chown, dac_override, dac_read_search, fowner, setgid, setuid, sys_chroot
  assert.ok(lines.includes("CapBnd:\t00000000000400cf"), result.stdout);
  assert.ok(lines.includes("NoNewPrivs:\t1") && lines.includes("Seccomp:\t2"), result.stdout);
  for (const expected of ["chmod-plain-ok", "chmod-setuid-refused", "chmod-setgid-refused", "install-setuid-refused", "mknod-char-refused", "mknod-block-refused", "fifo-ok", "tmp"]) {
    assert.ok(lines.includes(expected), `${expected}: ${result.stdout}`);
  }
  const made = spawnSync("stat", ["-c", "%n %A", ...["f", "p"].map((name) => join(share, name))], { encoding: "utf8" });
  assert.equal(made.stdout, `${join(share, "f")} -rwxr-x---\n${join(share, "p")} prw-r--r--\n`);
});

test("--9p-proxy with QEMU 7.2's own helper: QEMU, with no capability, realizes two 9p devices served by two jailed helpers", (t) => {
  const exportDir = join(work, "qemu-export");
  mkdirSync(exportDir);
  t.after(() => spawnSync("umount", ["-R", exportDir]));
  const devices = ["shares", "live"].flatMap((tag, index) => ["-fsdev", `proxy,id=fs-${tag},sock_fd=${3 + index}`, "-device", `virtio-9p-device,fsdev=fs-${tag},mount_tag=${tag}`]);
  // No guest: the devices are realized (each asks its helper for the export's root) before
  // QMP answers; then quit.
  const result = spawnSync(JAIL, ["--9p-proxy", exportDir, "--9p-proxy", exportDir, "--caps", "none", "--", "/usr/bin/qemu-system-x86_64", "-machine", "microvm", "-nodefaults", "-display", "none", "-S", ...devices, "-qmp", "stdio"], {
    encoding: "utf8",
    input: '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n',
  });
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /"return"/);
  assert.doesNotMatch(result.stderr, /does not exist|capng|moat-jail:/, result.stderr);
});
