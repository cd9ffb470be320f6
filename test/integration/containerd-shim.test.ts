// containerd-shim-moat-v2 driven by a real containerd and `ctr` (issue 4): tasks in their own
// VMs, their output and exit codes, events in the order containerd requires, and nothing left
// afterwards (no QEMU, mount, task state or FIFO).
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { after, before, test } from "node:test";
import { BUSYBOX_IMAGE } from "./harness/oci-image.js";
import { Containerd, mountsUnder } from "./harness/containerd.js";
import { TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const containerd = new Containerd(workspace);
/** moatd's own files under the state root, which outlive tasks until it exits idle. */
const DAEMON_FILES = ["moatd.sock", "moatd.log", "containerd-task.sock"];

before(async () => {
  await containerd.start();
  await containerd.importBusybox();
});

after(async () => {
  await containerd.stop();
  await workspace.stopDaemon();
  workspace.remove();
});

/** Everything a finished test must have cleaned: containerd's tasks, moat's sandboxes, mounts, FIFOs. */
async function assertNothingLeft(): Promise<void> {
  const tasks = await containerd.ctr(["tasks", "ls", "-q"]);
  assert.equal(tasks.stdout.trim(), "", "containerd still lists tasks");
  const containers = await containerd.ctr(["containers", "ls", "-q"]);
  assert.equal(containers.stdout.trim(), "", "containerd still lists containers");
  workspace.assertNothingLeft(DAEMON_FILES);
  assert.deepEqual(mountsUnder(workspace.dir), [], "mounts left");
  assert.deepEqual(readdirSync(containerd.fifoDir), [], "FIFOs left");
}

function explain(result: { stderr: string }): string {
  return `${result.stderr}\n--- moatd.log\n${workspace.daemonLog()}\n--- containerd.log (tail)\n${containerd.log().slice(-4000)}`;
}

test("ctr run --rm: the task's output, and its exit code 0", async () => {
  const result = await containerd.run(["--rm", BUSYBOX_IMAGE, "echo-1", "echo", "hello from moat"]);
  assert.equal(result.code, 0, explain(result));
  assert.equal(result.stdout, "hello from moat\n");
  await assertNothingLeft();
});

test("ctr run --rm: stdout and stderr apart, stdin, a non-zero exit code", async () => {
  const result = await containerd.run(["--rm", BUSYBOX_IMAGE, "exit-3", "sh", "-c", "read line; echo got $line; echo to-err >&2; exit 3"], { stdin: "hello\n" });
  assert.equal(result.code, 3, explain(result));
  assert.equal(result.stdout, "got hello\n");
  assert.equal(result.stderr, "to-err\n");
  await assertNothingLeft();
});
