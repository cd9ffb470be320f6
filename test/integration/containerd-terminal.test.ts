// Terminals through containerd (issue 4): `ctr run -t` and `ctr task exec -t` on a real pty
// (harness/pty.c), as a person runs them. containerd hands the shim a stdin FIFO and a stdout
// FIFO carrying the terminal's one stream, and ctr turns its own terminal's SIGWINCH into
// Task.ResizePty. The process sees a real terminal in its guest: its name, ctr's window size,
// typed input echoed once, a resize (with SIGWINCH), end of input through CloseIO, and the
// exit status reaches ctr.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { containerdTask } from "../../src/shared/protocol/index.js";
import { connectUnix, TtrpcClient } from "../../src/shared/ttrpc/index.js";
import { containerdForTestFile, MOAT_RUNTIME, NAMESPACE } from "./harness/containerd.js";
import { BUSYBOX_IMAGE } from "./harness/oci-image.js";
import { TerminalSession } from "./harness/terminal.js";

const { workspace, containerd } = containerdForTestFile();

/**
 * What runs on each terminal. ctr sets the window size only once the process has started, so
 * the script waits for it (a pty starts at 0x0, where busybox's `stty size` prints nothing), then shows
 * its name and size, reads a line, and once a resize has reached it as SIGWINCH (the trap
 * runs when the current sleep ends) shows the size again and exits 3. ctr's terminal is
 * 30x100; the test resizes it to 50x120.
 */
const SCRIPT = `tty; until size=$(stty size 2>/dev/null) && [ -n "$size" ]; do sleep 0.1; done; echo "$size"; echo ready; read line; echo "got $line"; trap 'stty size; exit 3' WINCH; echo armed; while :; do sleep 1; done`;

/**
 * A line end as ctr's terminal shows it: the guest's terminal ends lines with CRLF, and ctr's
 * raw mode keeps output processing on (containerd/console's SetRaw sets OPOST), so its own
 * terminal adds a CR. runc's shim shows the same.
 */
const EOL = "\r\r\n";

/** The terminal's whole output: each line once (the guest's terminal echoes; ctr's does not). */
const CONVERSATION = new RegExp(`^/dev/pts/\\d+${EOL}30 100${EOL}ready${EOL}hello${EOL}got hello${EOL}armed${EOL}50 120${EOL}$`);

function ctrOnTerminal(args: string[]): TerminalSession {
  return TerminalSession.run(workspace.dir, 30, 100, ["ctr", "-a", containerd.socket, "-n", NAMESPACE, ...args]);
}

/** Types a line once the script is ready, then resizes ctr's terminal: the kernel sends ctr SIGWINCH, ctr sends ResizePty. */
async function converse(terminal: TerminalSession): Promise<void> {
  await terminal.waitFor(`ready${EOL}`);
  terminal.type("hello\r"); // Enter, as a terminal sends it: the guest's terminal turns CR into NL
  await terminal.waitFor(`armed${EOL}`);
  terminal.resize(50, 120);
  await terminal.waitFor(`50 120${EOL}`);
}

function explain(terminal: TerminalSession): string {
  return `terminal: ${JSON.stringify(terminal.output)}\n--- moatd.log\n${workspace.daemonLog()}\n--- containerd.log (tail)\n${containerd.log().slice(-4000)}`;
}

async function ok(result: Promise<{ code: number | null; stdout: string; stderr: string }>): Promise<string> {
  const done = await result;
  assert.equal(done.code, 0, done.stderr);
  return done.stdout;
}

test("ctr run -t: the task's terminal shows its output, takes typed input, follows a resize, and ctr exits with its status", async () => {
  const terminal = ctrOnTerminal(["run", "-t", "--rm", "--runtime", MOAT_RUNTIME, "--fifo-dir", containerd.fifoDir, BUSYBOX_IMAGE, "tty-run-1", "sh", "-c", SCRIPT]);
  await converse(terminal);
  assert.equal(await terminal.exit, 3, explain(terminal));
  assert.match(terminal.output, CONVERSATION, explain(terminal));
  await containerd.assertNothingLeft();
});

test("ctr task exec -t: the same on an exec'd process's terminal; CloseIO ends a terminal's input", async () => {
  await ok(containerd.run(["-d", BUSYBOX_IMAGE, "tty-exec-1", "sleep", "1000"]));
  const exec = ctrOnTerminal(["task", "exec", "-t", "--exec-id", "shell", "tty-exec-1", "sh", "-c", SCRIPT]);
  await converse(exec);
  assert.equal(await exec.exit, 3, explain(exec));
  assert.match(exec.output, CONVERSATION, explain(exec));

  // ctr never closes a terminal's input (its stdin is the terminal), so CloseIO is sent as
  // the CRI plugin sends it when an attached client's stdin ends: cat then reads end of file.
  const cat = ctrOnTerminal(["task", "exec", "-t", "--exec-id", "cat", "tty-exec-1", "sh", "-c", "echo ready; cat; echo cat-done"]);
  await cat.waitFor(`ready${EOL}`);
  cat.type("typed\r");
  await cat.waitFor(`typed${EOL}typed${EOL}`); // the echo, then cat's copy
  const client = new TtrpcClient(await connectUnix(join(workspace.stateRoot, "containerd-task.sock")), "test");
  try {
    await client.call(containerdTask.Task.method.closeIO, { id: "tty-exec-1", execId: "cat", stdin: true }, { timeoutMs: 10_000 });
  } finally {
    client.close();
  }
  assert.equal(await cat.exit, 0, explain(cat));
  assert.match(cat.output, new RegExp(`cat-done${EOL}$`), explain(cat));

  await ok(containerd.ctr(["tasks", "kill", "--signal", "SIGKILL", "tty-exec-1"]));
  while (!/tty-exec-1\s+\d+\s+STOPPED/.test(await ok(containerd.ctr(["tasks", "ls"])))) await new Promise((resolve) => setTimeout(resolve, 100));
  await ok(containerd.ctr(["tasks", "delete", "tty-exec-1"]));
  await ok(containerd.ctr(["containers", "delete", "tty-exec-1"]));
  await containerd.assertNothingLeft();
});
