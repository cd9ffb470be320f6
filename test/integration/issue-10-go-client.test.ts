// Issue 10, item 13: containerd's own Go client (the library nerdctl, Docker >= 23 and CRI are
// built on; Debian's containerd 1.6.20 sources, built by `make build` into
// dist/test/bin/moat-go-client) drives moat where ctr takes other paths. Each case is one
// client program run (harness/go-client/main.go), which prints what it saw as JSON:
// - a plain task with stdin, stdout and stderr through cio's FIFOs;
// - a task and an exec with terminals given all three streams (cio names a stderr FIFO it
//   never makes: moat must not try to open it);
// - an exec of a binary the image does not have fails at Start, as with runc, and the task
//   lives on;
// - ResizePty on a task and an exec without terminals is a no-op, as in runc's shim;
// - Pids lists the pid the task reports, and an exec's;
// - Update's CPU limits hold on the host cgroup of the task's pid (found through
//   /proc/PID/cgroup, as containerd's cgroups library finds it), its memory limit in the
//   guest (Task.Metrics);
// - the pids a task and an exec report exist while they run and are gone (kill(pid, 0)
//   fails) once Wait has told of their exit.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { containerdForTestFile, NAMESPACE } from "./harness/containerd.js";
import { repoRoot, runCommand } from "./harness/moat-cli.js";
import { BUSYBOX_IMAGE } from "./harness/oci-image.js";

const { workspace, containerd } = containerdForTestFile();
const client = join(repoRoot, "dist", "test", "bin", "moat-go-client");

/** Runs one case of the Go client against the harness's containerd; what it printed, parsed. */
async function goClient(testCase: string, id: string): Promise<Record<string, unknown>> {
  assert.ok(existsSync(client), `${client} is not built (make build)`);
  const result = await runCommand(client, ["-address", containerd.socket, "-namespace", NAMESPACE, "-image", BUSYBOX_IMAGE, "-fifo-dir", containerd.fifoDir, testCase, id], { env: containerd.env() });
  assert.equal(result.code, 0, `moat-go-client ${testCase}: ${result.stderr}\n${explain()}`);
  const seen = JSON.parse(result.stdout) as Record<string, unknown>; // the client prints one JSON object
  return seen;
}

function explain(): string {
  return `--- moatd.log (tail)\n${workspace.daemonLog().slice(-4000)}\n--- containerd.log (tail)\n${containerd.log().slice(-4000)}`;
}

test("a plain task: stdin, stdout and stderr through cio's FIFOs, and its exit status", async () => {
  const seen = await goClient("stdio", "go-stdio");
  assert.deepEqual({ stdout: seen.stdout, stderr: seen.stderr, exitStatus: seen.exitStatus }, { stdout: "out hello\n", stderr: "err\n", exitStatus: 7 }, explain());
  await containerd.assertNothingLeft();
});

test("a task and an exec with terminals, given a stderr writer as cio.WithStdio gives one: output on the terminal, no stderr", async () => {
  const seen = await goClient("terminal", "go-tty");
  // The guest's terminal echoes the typed line and ends lines with CRLF.
  assert.match(String(seen.stdout), /^\/dev\/pts\/\d+\r\ninit-on-tty\r\ntyped\r\ninit got typed\r\n$/, JSON.stringify(seen));
  assert.equal(seen.exitStatus, 2);
  assert.match(String(seen.execStdout), /^\/dev\/pts\/\d+\r\nexec-on-tty\r\n$/, JSON.stringify(seen));
  assert.equal(seen.execExitStatus, 3);
  assert.deepEqual([seen.stderr, seen.execStderr], ["", ""], "a terminal has no stderr");
  await containerd.assertNothingLeft();
});

test("an exec of a binary that does not exist fails at Start, as with runc; the task lives on", async () => {
  const seen = await goClient("exec-missing", "go-missing");
  assert.match(String(seen.startError), /\/no\/such\/binary/, `Start must fail, naming the binary: ${JSON.stringify(seen)}`);
  assert.equal(seen.exitStatusInstead, undefined);
  assert.equal(seen.deleteError, undefined, "the failed exec is deleted as any other");
  assert.deepEqual([seen.afterExitStatus, seen.afterStdout], [0, "still-here\n"]);
  await containerd.assertNothingLeft();
});

test("ResizePty on a task and an exec without terminals: no error, as runc's shim", async () => {
  const seen = await goClient("resize", "go-resize");
  assert.deepEqual(seen, { taskResizeError: "", execResizeError: "" });
  await containerd.assertNothingLeft();
});

test("Pids lists the pid the task reports, and with an exec running, the exec's too", async () => {
  const seen = await goClient("pids", "go-pids");
  const { pid, execPid } = seen;
  assert.ok(typeof pid === "number" && pid > 0 && typeof execPid === "number" && execPid > 0, JSON.stringify(seen));
  assert.deepEqual(seen.pids, [pid], JSON.stringify(seen));
  assert.deepEqual(seen.pidsWithExec, [pid, execPid], JSON.stringify(seen));
  await containerd.assertNothingLeft();
});

test("Update: CPU limits hold on the host cgroup of the task's pid; the memory limit in the guest", async () => {
  const seen = await goClient("update", "go-update");
  const host = seen.host as Record<string, string>; // the client's map of cgroup files
  // containerd's default spec puts the task in /<namespace>/<id>, and moat its sandbox there.
  assert.match(host.cgroup ?? "", new RegExp(`/${NAMESPACE}/go-update$`), JSON.stringify(seen));
  if ("cpu.cfs_quota_us" in host) {
    assert.deepEqual([host["cpu.cfs_quota_us"], host["cpu.cfs_period_us"], host["cpu.shares"]], ["50000", "100000", "512"], JSON.stringify(seen));
  } else {
    assert.equal(host["cpu.max"], "50000 100000", JSON.stringify(seen));
  }
  assert.equal(seen.guestMemoryLimit, 96 * 1024 * 1024, `the memory limit holds in the container's own cgroup in its guest: ${JSON.stringify(seen)}`);
  await containerd.assertNothingLeft();
});

test("the pids a task and an exec report exist while they run and are gone once Wait has told of their exit", async () => {
  const seen = await goClient("pid-gone", "go-pid-gone");
  assert.deepEqual(
    [seen.aliveWhileRunning, seen.execAliveWhileRunning, seen.execExitStatus, seen.execAliveAfterExit, seen.exitStatus, seen.aliveAfterExit],
    [true, true, 4, false, 5, false],
    JSON.stringify(seen),
  );
  assert.notEqual(seen.pid, seen.execPid);
  await containerd.assertNothingLeft();
});
