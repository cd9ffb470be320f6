// Issue 10, item 2: Docker 20.10 (Debian's docker.io) runs containers on moat, registered as a
// runtime in daemon.json. dockerd drives moat through containerd's runc shim as if it were
// runc, with `--root <exec root>/runtime-runc/moby` and 64-character ids: a state directory
// too long for the sandbox's unix sockets when they lived in it. A private dockerd and its
// own containerd (harness/docker.ts); `--network none` until networking lands.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, before, test } from "node:test";
import { BUSYBOX_TAG, Docker, MOAT_RUNTIME_NAME } from "./harness/docker.js";
import { TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const docker = new Docker(workspace);

before(async () => {
  await docker.start();
  await docker.loadBusybox();
});
afterEach(() => docker.assertNothingLeft());
after(async () => {
  try {
    await docker.finish();
  } finally {
    workspace.remove();
  }
});

const run = ["run", "--runtime", MOAT_RUNTIME_NAME, "--network", "none"];

/** Says what Docker and moat logged, for an assertion that failed. */
function context(result: { stderr: string }): string {
  return `${result.stderr}\n--- moat runtime logs:\n${docker.runtimeLogs()}\n--- dockerd log (tail):\n${docker.log().slice(-3000)}`;
}

test("docker run: output; the id and Docker's --root do not decide whether it starts", async () => {
  // A 64-character id under <exec root>/runtime-runc/moby: more than 107 bytes with a socket name.
  assert.ok(`${docker.moatRoot}/${"f".repeat(64)}/stdio.sock`.length > 107, "the state directory alone leaves no room for sockets");
  const result = await docker.docker([...run, "--rm", BUSYBOX_TAG, "echo", "hello from moat"]);
  assert.equal(result.code, 0, context(result));
  assert.equal(result.stdout, "hello from moat\n");
});

test("docker run: the exit code propagates", async () => {
  const result = await docker.docker([...run, "--rm", BUSYBOX_TAG, "sh", "-c", "echo out; exit 7"]);
  assert.equal(result.code, 7, context(result));
  assert.equal(result.stdout, "out\n");
});

test("docker run -i: stdin reaches the container", async () => {
  const result = await docker.docker([...run, "--rm", "-i", BUSYBOX_TAG, "sh", "-c", "tr a-z A-Z; echo done"], { input: "one\ntwo\n" });
  assert.equal(result.code, 0, context(result));
  assert.equal(result.stdout, "ONE\nTWO\ndone\n");
});

test("docker run: the container sees the guest's kernel, not the host's", async () => {
  const result = await docker.docker([...run, "--rm", BUSYBOX_TAG, "uname", "-r"]);
  assert.equal(result.code, 0, context(result));
  assert.match(result.stdout, /-moat\n$/);
  assert.notEqual(result.stdout.trim(), execFileSync("uname", ["-r"], { encoding: "utf8" }).trim());
});

test("docker run -d, exec, logs, pause/unpause, stop, rm", async () => {
  const started = await docker.docker([...run, "--detach", "--name", "moat-d1", BUSYBOX_TAG, "sh", "-c", "echo started; while true; do sleep 1; done"]);
  assert.equal(started.code, 0, context(started));
  const id = started.stdout.trim();
  assert.match(id, /^[0-9a-f]{64}$/);

  const exec = await docker.docker(["exec", "moat-d1", "sh", "-c", "echo in $(hostname); exit 4"]);
  assert.equal(exec.code, 4, context(exec));
  assert.equal(exec.stdout, `in ${id.slice(0, 12)}\n`);
  const execInput = await docker.docker(["exec", "-i", "moat-d1", "cat"], { input: "piped\n" });
  assert.equal(execInput.stdout, "piped\n", context(execInput));

  const logs = await docker.docker(["logs", "moat-d1"]);
  assert.equal(logs.code, 0, context(logs));
  assert.equal(logs.stdout, "started\n");

  const status = async () => (await docker.docker(["inspect", "--format", "{{.State.Status}}", "moat-d1"])).stdout.trim();
  const paused = await docker.docker(["pause", "moat-d1"]);
  assert.equal(paused.code, 0, context(paused));
  assert.equal(await status(), "paused");
  const unpaused = await docker.docker(["unpause", "moat-d1"]);
  assert.equal(unpaused.code, 0, context(unpaused));
  assert.equal(await status(), "running");
  const afterThaw = await docker.docker(["exec", "moat-d1", "echo", "thawed"]);
  assert.equal(afterThaw.stdout, "thawed\n", context(afterThaw));

  // Docker sends 0 for every limit it does not change: the memory limit must not become 0.
  const updated = await docker.docker(["update", "--cpus", "0.5", "moat-d1"]);
  assert.equal(updated.code, 0, context(updated));
  const limits = await docker.docker(["exec", "moat-d1", "sh", "-c", `cat /sys/fs/cgroup/docker/${id}/cpu.max /sys/fs/cgroup/docker/${id}/memory.max`]);
  assert.equal(limits.stdout, "50000 100000\nmax\n", context(limits));
  assert.equal(await status(), "running");
  // docker top looks the pids up on the host: the stand-in's, not the guest's.
  const top = await docker.docker(["top", "moat-d1"]);
  assert.equal(top.code, 0, context(top));
  assert.deepEqual(top.stdout.trim().split("\n").slice(1).map((line) => /moat-standin/.test(line)), [true], top.stdout);

  // sh as PID 1 ignores SIGTERM: docker stop waits its timeout, then SIGKILL.
  const stopped = await docker.docker(["stop", "--time", "1", "moat-d1"]);
  assert.equal(stopped.code, 0, context(stopped));
  assert.equal(await status(), "exited");
  assert.equal((await docker.docker(["inspect", "--format", "{{.State.ExitCode}}", "moat-d1"])).stdout.trim(), "137");

  const removed = await docker.docker(["rm", "moat-d1"]);
  assert.equal(removed.code, 0, context(removed));
});

test("a restarted moatd adopts Docker's running container by its sockets, and leaves runc's beside it alone", async () => {
  // Docker gives runc (its default runtime) the same --root as moat: <exec root>/runtime-runc/moby.
  const moat = await docker.docker([...run, "--detach", "--name", "moat-a1", BUSYBOX_TAG, "sh", "-c", "while true; do sleep 1; done"]);
  assert.equal(moat.code, 0, context(moat));
  const runc = await docker.docker(["run", "--network", "none", "--detach", "--name", "runc-a1", BUSYBOX_TAG, "sh", "-c", "while true; do sleep 1; done"]);
  assert.equal(runc.code, 0, runc.stderr);
  const runcId = runc.stdout.trim();
  assert.ok(existsSync(join(docker.moatRoot, runcId, "state.json")), "runc keeps its state in moat's state root");

  await docker.stopMoatd();
  const adopted = await docker.docker(["exec", "moat-a1", "echo", "adopted"]); // starts a moatd, which adopts first
  assert.equal(adopted.stdout, "adopted\n", context(adopted));
  assert.match(readFileSync(join(docker.moatRoot, "moatd.log"), "utf8"), new RegExp(`container ${moat.stdout.trim()}: adopted`));
  assert.ok(existsSync(join(docker.moatRoot, runcId, "state.json")), "moatd removed runc's state directory");
  const runcExec = await docker.docker(["exec", "runc-a1", "echo", "runc"]);
  assert.equal(runcExec.stdout, "runc\n", runcExec.stderr);

  for (const name of ["moat-a1", "runc-a1"]) {
    const removed = await docker.docker(["rm", "--force", name]);
    assert.equal(removed.code, 0, context(removed));
  }
});

test("docker run -t; kill -s, restart, kill, wait", async () => {
  const tty = await docker.docker([...run, "--rm", "-t", BUSYBOX_TAG, "sh", "-c", "tty; exit 3"]);
  assert.equal(tty.code, 3, context(tty));
  assert.equal(tty.stdout, "/dev/pts/0\r\n", "one stream, through a terminal");

  const started = await docker.docker([...run, "--detach", "--name", "moat-k1", BUSYBOX_TAG, "sh", "-c", "trap 'echo got USR1' USR1; while true; do sleep 1; done"]);
  assert.equal(started.code, 0, context(started));
  const signalled = await docker.docker(["kill", "--signal", "USR1", "moat-k1"]);
  assert.equal(signalled.code, 0, context(signalled));
  // The trap runs once the current sleep ends: no timing, the test's own timeout bounds it.
  while (!(await docker.docker(["logs", "moat-k1"])).stdout.includes("got USR1\n")) await new Promise((resolve) => setTimeout(resolve, 200));

  const restarted = await docker.docker(["restart", "--time", "1", "moat-k1"]);
  assert.equal(restarted.code, 0, context(restarted));
  const exec = await docker.docker(["exec", "moat-k1", "echo", "after restart"]);
  assert.equal(exec.stdout, "after restart\n", context(exec));

  assert.equal((await docker.docker(["kill", "moat-k1"])).code, 0);
  const waited = await docker.docker(["wait", "moat-k1"]);
  assert.equal(waited.stdout, "137\n", context(waited));
  assert.equal((await docker.docker(["rm", "moat-k1"])).code, 0);
});
