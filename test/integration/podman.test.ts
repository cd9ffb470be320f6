// Podman with conmon drives moat as its OCI runtime (issue 3): private storage, a busybox
// image imported locally, moat's state under the test's own root (a wrapper passes --root);
// terminals too.
import assert from "node:assert/strict";
import { test } from "node:test";
import { podmanForTestFile } from "./harness/podman.js";

const { podman } = podmanForTestFile();

const run = ["run", "--network", "none", "--rm"];

test("podman run --rm: output and the guest's kernel", async () => {
  const result = await podman([...run, "localhost/busybox", "uname", "-r"]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /-moat\n$/);
});

test("podman run: the exit code propagates; -i relays stdin", async () => {
  const failed = await podman([...run, "localhost/busybox", "sh", "-c", "exit 3"]);
  assert.equal(failed.code, 3, failed.stderr);
  const echoed = await podman([...run, "-i", "localhost/busybox", "cat"], "through podman\n");
  assert.equal(echoed.code, 0, echoed.stderr);
  assert.equal(echoed.stdout, "through podman\n");
});

test("podman run -d, exec, logs, pause/unpause, kill -s, rm", async () => {
  const started = await podman(["run", "-d", "--network", "none", "--name", "detached", "localhost/busybox", "sh", "-c", "echo started; sleep 1000"]);
  assert.equal(started.code, 0, started.stderr);
  const exec = await podman(["exec", "detached", "sh", "-c", "echo from-exec; exit 5"]);
  assert.equal(exec.code, 5, exec.stderr);
  assert.equal(exec.stdout, "from-exec\n");
  const logs = await podman(["logs", "detached"]);
  assert.equal(logs.stdout, "started\n");
  assert.equal((await podman(["pause", "detached"])).code, 0);
  assert.match((await podman(["inspect", "--format", "{{.State.Status}}", "detached"])).stdout, /paused/);
  assert.equal((await podman(["unpause", "detached"])).code, 0);
  const killed = await podman(["kill", "-s", "KILL", "detached"]);
  assert.equal(killed.code, 0, killed.stderr);
  const waited = await podman(["wait", "detached"]);
  assert.equal(waited.stdout.trim(), "137");
  assert.equal((await podman(["rm", "detached"])).code, 0);
});

test("podman stop: SIGTERM, then SIGKILL after the timeout", async () => {
  assert.equal((await podman(["run", "-d", "--network", "none", "--name", "stopped", "localhost/busybox", "sleep", "1000"])).code, 0);
  const stopped = await podman(["stop", "-t", "1", "stopped"]);
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.equal((await podman(["rm", "stopped"])).code, 0);
});

// Terminals: conmon listens on the console socket, moat's stand-in sends it the pty master.
test("podman run -t: the container's stdout is a terminal; output is one stream in CRLF; the exit status propagates", async () => {
  const result = await podman([...run, "-t", "localhost/busybox", "sh", "-c", "tty; echo to-stderr >&2; exit 4"]);
  assert.equal(result.code, 4, result.stderr);
  assert.match(result.stdout, /^\/dev\/pts\/\d+\r\nto-stderr\r\n$/);
});

test("podman exec -t and exec -i -t into a running container", async () => {
  const started = await podman(["run", "-d", "--network", "none", "--name", "tty-exec", "localhost/busybox", "sleep", "1000"]);
  assert.equal(started.code, 0, started.stderr);
  const exec = await podman(["exec", "-t", "tty-exec", "sh", "-c", "tty; exit 5"]);
  assert.equal(exec.code, 5, exec.stderr);
  assert.match(exec.stdout, /^\/dev\/pts\/\d+\r\n$/);
  // Input goes through the terminal: the guest's terminal echoes it, once.
  const interactive = await podman(["exec", "-i", "-t", "tty-exec", "sh", "-c", "read line; echo got $line"], "hello\n");
  assert.equal(interactive.code, 0, interactive.stderr);
  assert.equal(interactive.stdout, "hello\r\ngot hello\r\n");
  assert.equal((await podman(["rm", "--force", "tty-exec"])).code, 0);
});

test("podman run --shm-size: /dev/shm is a tmpfs of that size in the guest, not podman's host tmpfs shared in", async () => {
  const result = await podman([...run, "--shm-size", "8m", "localhost/busybox", "sh", "-c", "grep ' /dev/shm ' /proc/mounts | tail -1 | cut -d' ' -f3; df -P -k /dev/shm | tail -1"]);
  assert.equal(result.code, 0, result.stderr);
  const [fsType, df = ""] = result.stdout.trim().split("\n");
  assert.equal(fsType, "tmpfs", `/dev/shm's file system:\n${result.stdout}`);
  assert.equal(df.trim().split(/\s+/)[1], "8192", `df -P -k /dev/shm: 8 MiB:\n${result.stdout}`);
});
