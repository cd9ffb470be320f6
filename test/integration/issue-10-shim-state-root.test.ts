// Issue 10, item 10: containerd-shim-moat-v2's C front end finds the same state root as the CLI
// and moatd, because it asks their TOML parser (through the Node shim, cached per version of
// the file) instead of scanning for one key. A single-quoted state_root once sent the shim to
// /run/moat while the CLI used the configured root.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { repoRoot, runCommand } from "./harness/moat-cli.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
/** The workspace a changed configuration moves the state root to. */
const moved = new TestWorkspace();
const shim = join(repoRoot, "dist", "bin", "containerd-shim-moat-v2");

after(async () => {
  for (const each of [workspace, moved]) {
    await each.stopDaemon();
    each.remove();
  }
});

/** Runs the shim as containerd runs it for task `id`, in a bundle directory of its own. */
function runShim(id: string, command: "start" | "delete", config: string) {
  const bundle = join(workspace.dir, `bundle-${id}`);
  mkdirSync(bundle, { recursive: true });
  const args = ["-namespace", "moat-test", "-address", join(workspace.dir, "no-containerd.sock"), "-publish-binary", "/bin/false", "-id", id, command];
  return runCommand(shim, args, { cwd: bundle, env: { MOAT_CONFIG: config } });
}

test("the shim's start uses the state root the configuration gives, written as a literal string", async () => {
  const config = workspace.configFile("literal", ""); // state_root = '<workspace>' (harness/state-root.ts)
  const started = await runShim("literal", "start", config);
  assert.equal(started.code, 0, started.stderr);
  assert.match(started.stdout, new RegExp(`^unix://${workspace.stateRoot}/task-[0-9a-f]{16}\\.sock\\n$`));
  assert.ok(existsSync(join(workspace.stateRoot, "moatd.sock")), "moatd serves the configured state root");
  assert.equal(workspace.daemonProcesses().length, 1, "one moatd, for the configured root");

  // A second start reads the cached answer; changing the file makes it ask again.
  const again = await runShim("literal-2", "start", config);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, new RegExp(`^unix://${workspace.stateRoot}/task-`));
  writeFileSync(config, `[runtime]\nstate_root = '${moved.stateRoot}' # moved\n`);
  const third = await runShim("literal-3", "start", config);
  assert.equal(third.code, 0, third.stderr);
  assert.match(third.stdout, new RegExp(`^unix://${moved.stateRoot}/task-`), "a changed configuration is read again, not served from the cache");
  assert.equal(moved.daemonProcesses().length, 1);

  const deleted = [await runShim("literal-3", "delete", config)];
  workspace.configFile("literal", ""); // back to the first root, for the first two tasks' deletes
  for (const id of ["literal", "literal-2"]) deleted.push(await runShim(id, "delete", config));
  for (const { code, stderr } of deleted) assert.equal(code, 0, stderr);
  await moved.stopDaemon();
  moved.assertNothingLeft(DAEMON_FILES);
  await workspace.stopDaemon();
  workspace.assertNothingLeft(DAEMON_FILES);
});

test("an invalid configuration fails the shim's start with the configuration's own error, and starts no moatd", async () => {
  const config = join(workspace.dir, "invalid.toml");
  writeFileSync(config, "[runtime]\nstate_root = 42\n");
  const started = await runShim("invalid", "start", config);
  assert.equal(started.code, 1);
  assert.match(started.stderr, new RegExp(`${config}: runtime.state_root: `), "the parser's error names the file and key");
  assert.match(started.stderr, /containerd-shim-moat-v2: cannot read \[runtime\] state_root from /);
  assert.equal(started.stdout, "");
  assert.deepEqual(workspace.daemonProcesses(), []);
});
