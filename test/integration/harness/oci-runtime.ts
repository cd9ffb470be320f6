// Drives `moat` as an OCI runtime's callers do. `createAsConmon` plays conmon's part: it runs
// `moat create` as a child subreaper with pipes for the container's stdio (which the
// stand-in inherits), and learns the stand-in's exit status when it exits.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import type { Readable } from "node:stream";
import { dirname, join } from "node:path";
import { after, afterEach } from "node:test";
import { helperBinary } from "./c-helper.js";
import { moatBinary, runMoat } from "./moat-cli.js";
import { DAEMON_FILES, type TestWorkspace } from "./state-root.js";

export interface CreatedContainer {
  /** Resolves with `moat create`'s own exit status. */
  created: Promise<number>;
  /** Resolves with the stand-in's pid (from the pid file) and exit status once it has exited. */
  standIn: Promise<{ pid: number; exitStatus: number }>;
  stdout: () => string;
  stderr: () => string;
}

/**
 * Runs `moat --root STATE_ROOT create --bundle BUNDLE --pid-file PIDFILE ID` under the subreaper.
 * Other processes may be left to the subreaper too (a moatd that `create` started), so the
 * stand-in is told apart by the pid in its pid file.
 */
export function createAsConmon(subreaper: string, stateRoot: string, bundle: string, id: string, stdin: string, extraArgs: string[] = []): CreatedContainer {
  const pidFile = join(dirname(bundle), `${id}.pid`);
  return underSubreaper(subreaper, ["--root", stateRoot, "create", "--bundle", bundle, "--pid-file", pidFile, ...extraArgs, id], pidFile, stdin);
}

/**
 * Runs `moat ARGS…` under the subreaper, as conmon runs the runtime; the process it leaves
 * behind is told apart by `pidFile`, which ARGS must name as --pid-file.
 */
export function underSubreaper(subreaper: string, args: string[], pidFile: string, stdin: string): CreatedContainer {
  const child = spawn(subreaper, [moatBinary, ...args], { stdio: ["pipe", "pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let reports = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  (child.stdio[3] as Readable).on("data", (chunk) => (reports += chunk)); // stdio[3] is the "pipe" asked for
  child.stdin.end(stdin);
  const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
  const report = (pattern: RegExp) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const look = () => {
        const match = pattern.exec(reports);
        if (match) resolve(match);
        return match;
      };
      (child.stdio[3] as Readable).on("data", look);
      void closed.then(() => look() ?? reject(new Error(`no "${pattern.source}" report; stderr: ${stderr}`)));
    });
  return {
    created: report(/^command (\d+)$/m).then((match) => Number(match[1])),
    standIn: report(/^command 0$/m).then(async () => {
      const pid = Number(readFileSync(pidFile, "utf8"));
      const match = await report(new RegExp(`^orphan ${pid} (\\d+)$`, "m"));
      return { pid, exitStatus: Number(match[1]) };
    }),
    stdout: () => stdout,
    stderr: () => stderr,
  };
}

/**
 * A test file's workspace for the OCI commands: moat run with its state root, the subreaper,
 * a check after each test that only moatd's own files are left, and moatd stopped at the end.
 */
export function ociWorkspace(workspace: TestWorkspace): { subreaper: string; moat: (args: string[]) => ReturnType<typeof runMoat> } {
  afterEach(() => workspace.assertNothingLeft(DAEMON_FILES));
  after(async () => {
    await workspace.stopDaemon();
    workspace.remove();
  });
  return { subreaper: helperBinary(workspace.dir, "subreaper"), moat: (args) => runMoat(["--root", workspace.stateRoot, ...args]) };
}
