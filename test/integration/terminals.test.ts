// Terminals (issue 3): a container's or exec'd process's terminal handed to the caller's
// console socket as runc hands it to conmon, and a person's terminal under `moat run -t` and
// `moat exec -t`. In every case the process sees a real terminal in the guest: its name, its
// size at start, a resize (with SIGWINCH), input without a second echo, and its exit status.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { test } from "node:test";
import { busyboxBundle } from "./harness/bundle.js";
import { moatBinary, runCommand } from "./harness/moat-cli.js";
import { createAsConmon, ociWorkspace } from "./harness/oci-runtime.js";
import { TestWorkspace } from "./harness/state-root.js";
import { TerminalSession } from "./harness/terminal.js";

const workspace = new TestWorkspace();
const { subreaper, moat } = ociWorkspace(workspace);

/**
 * What runs on each terminal: its name and size, then a line of input, then the size again
 * once a resize has reached it as SIGWINCH (the trap runs when the current sleep ends), then
 * exit 3. The size starts as 30x100 everywhere; the test resizes to 50x120.
 */
const SCRIPT = `tty; stty size; echo ready; read line; echo "got $line"; trap 'stty size; exit 3' WINCH; echo armed; while :; do sleep 1; done`;

/** The terminal's whole output: each line once (no second echo), CRLF from the guest's terminal only. */
const CONVERSATION = /\/dev\/pts\/\d+\r\n30 100\r\nready\r\nhello\r\ngot hello\r\narmed\r\n50 120\r\n/;

async function converse(terminal: TerminalSession): Promise<void> {
  await terminal.waitFor("ready\r\n");
  terminal.type("hello\r"); // Enter, as a terminal sends it: the guest's terminal turns CR into NL
  await terminal.waitFor("armed\r\n");
  terminal.resize(50, 120);
  await terminal.waitFor("50 120\r\n");
}

/** Runs `command` on a 30x100 terminal, showing the terminal's settings before and after it. */
function onPersonsTerminal(command: string[]): TerminalSession {
  return TerminalSession.run(workspace.dir, 30, 100, ["sh", "-c", 'stty -g; "$@"; status=$?; stty -g; exit $status', "sh", ...command]);
}

/** The terminal's settings were the same before and after the command (raw mode was undone). */
function assertRestored(output: string): void {
  const lines = output.split("\r\n");
  assert.ok(lines.length > 2, output);
  assert.equal(lines.at(-2), lines[0], `terminal settings before and after: ${JSON.stringify(output)}`);
}

test("create --console-socket: the pty master reaches the caller's socket as runc sends it; tty, size, input, resize, exit status", async () => {
  const socket = `${workspace.dir}/create.sock`;
  const terminal = await TerminalSession.console(workspace.dir, socket);
  const bundle = busyboxBundle(`${workspace.dir}/tty-create`, ["sh", "-c", SCRIPT], (spec) => {
    spec.process.terminal = true;
    spec.process.consoleSize = { height: 30, width: 100 };
  });
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, "tty-1", "", ["--console-socket", socket]);
  assert.equal(await container.created, 0, container.stderr());
  assert.match(await terminal.receivedName(), /^\/dev\/pts\/\d+$/, "the message's payload is the pty's name");
  const started = await moat(["start", "tty-1"]);
  assert.equal(started.code, 0, started.stderr);
  await converse(terminal);
  assert.equal((await container.standIn).exitStatus, 3, "the stand-in exits with the container's status");
  assert.equal(await terminal.exit, 0, "the master hangs up once the stand-in is gone");
  assert.match(terminal.output, CONVERSATION);
  assert.equal(container.stdout() + container.stderr(), "", "with a terminal, the caller's own stdio carries nothing");
  assert.equal((await moat(["delete", "tty-1"])).code, 0);
});

test("exec --tty: to a console socket (process file with terminal), on the caller's own terminal, and end of input", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/tty-exec`, ["sleep", "1000"]);
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, "tty-2", "");
  assert.equal(await container.created, 0, container.stderr());
  assert.equal((await moat(["start", "tty-2"])).code, 0);

  const socket = `${workspace.dir}/exec.sock`;
  const terminal = await TerminalSession.console(workspace.dir, socket);
  const processFile = `${workspace.dir}/exec-process.json`;
  writeFileSync(processFile, JSON.stringify({ terminal: true, consoleSize: { height: 30, width: 100 }, args: ["sh", "-c", SCRIPT], env: ["PATH=/bin"], cwd: "/", user: { uid: 0, gid: 0 } }));
  const exec = moat(["exec", "--process", processFile, "--console-socket", socket, "tty-2"]);
  await converse(terminal);
  const result = await exec;
  assert.equal(result.code, 3, result.stderr);
  assert.equal(result.stdout, "");
  assert.match(terminal.output, CONVERSATION);

  const own = onPersonsTerminal([moatBinary, "--root", workspace.stateRoot, "exec", "-t", "tty-2", "sh", "-c", SCRIPT]);
  await converse(own);
  assert.equal(await own.exit, 3);
  assert.match(own.output, CONVERSATION);
  assertRestored(own.output);

  // The end of the caller's input is the end of the terminal's input too (VEOF, after a
  // partial line twice), so `cat` ends as it would without a terminal.
  const cat = await runCommand(moatBinary, ["--root", workspace.stateRoot, "exec", "-t", "tty-2", "cat"], { input: "one\ntwo" });
  assert.equal(cat.code, 0, cat.stderr);
  // Each line twice, the echo and cat's copy, in an order that depends on when cat reads.
  assert.deepEqual([cat.stdout.split("one\r\n").length, cat.stdout.split("two").length], [3, 3], JSON.stringify(cat.stdout));

  assert.equal((await moat(["delete", "--force", "tty-2"])).code, 0);
  assert.equal((await container.standIn).exitStatus, 137);
});

test("run -t -i on a person's terminal: raw while it runs, sized and resized, restored after", async () => {
  const run = onPersonsTerminal([moatBinary, "--root", workspace.stateRoot, "run", "-t", "-i", "busybox", "sh", "-c", SCRIPT]);
  await converse(run);
  assert.equal(await run.exit, 3);
  assert.match(run.output, CONVERSATION);
  assertRestored(run.output);
});

test("run -t without -i: the output's CRLF is the guest's alone; the local terminal is restored", async () => {
  const run = onPersonsTerminal([moatBinary, "--root", workspace.stateRoot, "run", "-t", "busybox", "sh", "-c", "tty; stty size; exit 4"]);
  assert.equal(await run.exit, 4);
  assert.match(run.output, /\r\n\/dev\/pts\/\d+\r\n30 100\r\n[^\r]/);
  assertRestored(run.output);
});

test("terminal misuse is refused as runc refuses it, and a console socket nobody listens on leaves nothing", async () => {
  const withTerminal = busyboxBundle(`${workspace.dir}/tty-bad`, ["sh"], (spec) => (spec.process.terminal = true));
  const noSocket = await moat(["create", "--bundle", withTerminal, "bad-1"]);
  assert.equal(noSocket.code, 1);
  assert.match(noSocket.stderr, /container bad-1: the process has a terminal and runs detached, so --console-socket must say where its terminal goes/);
  const withoutTerminal = busyboxBundle(`${workspace.dir}/no-tty`, ["sh"]);
  const stray = await moat(["create", "--bundle", withoutTerminal, "--console-socket", `${workspace.dir}/any.sock`, "bad-2"]);
  assert.equal(stray.code, 1);
  assert.match(stray.stderr, /container bad-2: --console-socket is given, but the process has no terminal/);
  const nobody = await moat(["create", "--bundle", withTerminal, "--console-socket", `${workspace.dir}/nobody.sock`, "bad-3"]);
  assert.equal(nobody.code, 1);
  assert.match(nobody.stderr, /container bad-3: --console-socket .*nobody\.sock: cannot hand over the terminal: send the pty's master: No such file or directory/);
  const gone = await moat(["state", "bad-3"]);
  assert.match(gone.stderr, /container bad-3: does not exist/);
});
