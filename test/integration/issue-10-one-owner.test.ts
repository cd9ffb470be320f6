// Issue 10, item 1: one owner of every sandbox. `moat run` used to make its sandbox from the
// CLI process, and any command that started moatd (which removed every sandbox it did not
// know) killed it with a stack trace. moatd now makes and owns every sandbox; `moat run` is
// its client and its container's stand-in (docs/design.md, "moat run").
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { busyboxBundle } from "./harness/bundle.js";
import { moatBinary, repoRoot, runCommand, runMoat } from "./harness/moat-cli.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
afterEach(() => workspace.assertNothingLeftWithin(30_000, DAEMON_FILES));
after(async () => {
  await workspace.stopDaemon();
  workspace.remove();
});

const moat = (args: string[]) => runMoat(["--root", workspace.stateRoot, ...args]);

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves once stdout holds `text`; fails if the command ends first. */
  printed: (text: string) => Promise<void>;
  closed: Promise<number | null>;
}

/** Starts `moat --root … ARGS` in the background (stdin a pipe), collecting its output. */
function startMoat(args: string[]): Running {
  const child = spawn(moatBinary, ["--root", workspace.stateRoot, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk) => (stdout += chunk)); // stdio[1] is "pipe"
  child.stderr!.on("data", (chunk) => (stderr += chunk)); // stdio[2] is "pipe"
  const closed = new Promise<number | null>((resolve) => child.once("close", resolve));
  const printed = async (text: string) => {
    let done = false;
    void closed.then(() => (done = true));
    while (!stdout.includes(text)) {
      if (done) assert.fail(`moat ${args.join(" ")} ended before printing ${JSON.stringify(text)}:\nstdout: ${stdout}\nstderr: ${stderr}\nmoatd.log:\n${workspace.daemonLog()}`);
      await sleep(50);
    }
  };
  return { child, stdout: () => stdout, stderr: () => stderr, printed, closed };
}

function daemonPid(): number {
  const daemons = workspace.daemonProcesses();
  assert.equal(daemons.length, 1, `one moatd: ${daemons.join("; ")}`);
  return Number(daemons[0]!.split(" ")[0]); // length checked just above
}

test("moat run survives moat list, moat state and a containerd shim start beside it", async () => {
  const run = startMoat(["run", "-i", "--rm", "--name", "beside", "busybox", "sh", "-c", "echo started; read line; echo got $line; exit 3"]);
  await run.printed("started\n");

  const list = await moat(["list"]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^beside +\d+ +running +/m);
  const state = await moat(["state", "beside"]);
  assert.equal(state.code, 0, state.stderr);
  assert.equal((JSON.parse(state.stdout) as { status: string }).status, "running");

  // containerd's shim start makes sure moatd runs, and leaves a relay for its task.
  const bundle = join(workspace.dir, "shim-bundle");
  mkdirSync(bundle, { recursive: true });
  const shim = join(repoRoot, "dist", "bin", "containerd-shim-moat-v2");
  const config = workspace.configFile("shim", "");
  const shimArgs = ["-namespace", "moat-test", "-address", join(workspace.dir, "no-containerd.sock"), "-id", "shim-beside"];
  const started = await runCommand(shim, [...shimArgs, "start"], { cwd: bundle, env: { MOAT_CONFIG: config } });
  assert.equal(started.code, 0, started.stderr);
  const deleted = await runCommand(shim, [...shimArgs, "-bundle", bundle, "delete"], { cwd: bundle, env: { MOAT_CONFIG: config } });
  assert.equal(deleted.code, 0, deleted.stderr);
  rmSync(bundle, { recursive: true });

  run.child.stdin!.end("go\n"); // stdio[0] is "pipe"
  assert.equal(await run.closed, 3, `${run.stderr()}\nmoatd.log:\n${workspace.daemonLog()}`);
  assert.equal(run.stdout(), "started\ngot go\n");
  assert.equal(run.stderr(), "");
});

test("moat run survives moatd being killed: a new moatd adopts the container, and the run ends with its output and exit status", async () => {
  const run = startMoat(["run", "--rm", "--name", "across", "busybox", "sh", "-c", "echo before; sleep 5; echo after; exit 5"]);
  await run.printed("before\n");
  const first = daemonPid();
  process.kill(first, "SIGKILL");
  // The run starts a new moatd itself, which adopts the container, and reattaches.
  assert.equal(await run.closed, 5, `${run.stderr()}\nmoatd.log:\n${workspace.daemonLog()}`);
  assert.equal(run.stdout(), "before\nafter\n");
  assert.equal(run.stderr(), "");
  assert.notEqual(daemonPid(), first, "a new moatd");
  assert.match(workspace.daemonLog(), /container across: adopted \(running, foreground run\)/);
});

test("a moat run whose client is killed: the container runs on, is listed, and is removed by moatd when it exits", async () => {
  // The container waits for a file the test makes, on a directory bind-mounted from the host.
  const data = join(workspace.dir, "orphan-data");
  mkdirSync(data);
  const bundle = busyboxBundle(join(workspace.dir, "orphan-bundle"), ["sh", "-c", "echo up; while [ ! -e /data/go ]; do sleep 0.1; done; echo done > /data/done"], (spec) => {
    spec.mounts = [...(spec.mounts ?? []), { destination: "/data", type: "bind", source: data, options: ["rbind", "rw"] }];
  });
  const run = startMoat(["run", "--bundle", bundle, "orphan"]);
  await run.printed("up\n");
  run.child.kill("SIGKILL");
  await run.closed;
  const list = await moat(["list"]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^orphan +\d+ +running +/m, "the container runs on without its client");
  writeFileSync(join(data, "go"), "");
  // It exits; moatd removes it (afterEach waits for its VM and state directory to go).
  for (let listed = list.stdout; /^orphan /m.test(listed); listed = (await moat(["list", "-q"])).stdout) await sleep(200);
  assert.equal(readFileSync(join(data, "done"), "utf8"), "done\n", "it ran to its end");
  assert.match(workspace.daemonLog(), /container orphan: its foreground client is gone; the container runs on and is removed when it exits/);
});

test("a run whose container is lost ends with one line, and with --debug the stack", async () => {
  for (const debug of [false, true]) {
    const name = debug ? "lost-debug" : "lost";
    const run = startMoat([...(debug ? ["--debug"] : []), "run", "--rm", "--name", name, "busybox", "sh", "-c", "echo up; sleep 1000"]);
    await run.printed("up\n");
    // moatd and the VM both die: the next moatd finds no VM to adopt, and removes what is left.
    const qemu = workspace.qemuProcesses().map((line) => Number(line.split(" ")[0]));
    assert.equal(qemu.length, 1);
    process.kill(daemonPid(), "SIGKILL");
    process.kill(qemu[0]!, "SIGKILL"); // one, checked just above
    assert.equal(await run.closed, 255, run.stderr());
    const lines = run.stderr().trimEnd().split("\n");
    assert.match(lines[0] ?? "", new RegExp(`^moat: (MoatError: )?container ${name}: lost \\(.*\\); moatd no longer has it`));
    if (debug) assert.match(run.stderr(), /\n +at /, "--debug shows the stack");
    else assert.equal(lines.length, 1, run.stderr());
  }
});
