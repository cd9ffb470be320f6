// A private workspace per test file: a state root and a socket root for sandboxes and room
// for config files; and the check that a test left nothing behind: no QEMU or virtiofsd
// process started for it, no mount (a share's bind mount) under the workspace, no state
// directory, socket or log under its state root, no socket directory of its sandboxes (under
// its own socket root, or the default one that `--root` without a configuration file uses).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_SOCKET_ROOT, defaultConfig, type Config } from "../../../src/host/config/index.js";
import { STATE_DIR_LINK } from "../../../src/host/hypervisor/index.js";

/** moatd's own files under a state root (its sockets and log), which outlive containers until it exits idle. */
export const DAEMON_FILES = ["moatd.sock", "moatd.log", "moatd.lock", "containerd-task.sock"];

export class TestWorkspace {
  readonly dir = mkdtempSync(join(tmpdir(), "moat-it-"));
  readonly stateRoot = join(this.dir, "state");
  readonly socketRoot = join(this.dir, "sockets");

  /** The built-in configuration with this workspace's state root and socket root. */
  config(): Config {
    const config = defaultConfig();
    return { ...config, runtime: { ...config.runtime, stateRoot: this.stateRoot, socketRoot: this.socketRoot } };
  }

  /** Writes a configuration file into the workspace (with its state root and socket root) and returns its path. */
  configFile(name: string, toml: string): string {
    const path = join(this.dir, `${name}.toml`);
    // Literal (single-quoted) strings, as an operator may write them: the shim's C front end once
    // read only basic strings and then served another state root than the CLI (issue 10).
    writeFileSync(path, `[runtime]\nstate_root = '${this.stateRoot}'\nsocket_root = '${this.socketRoot}'\n\n${toml}`);
    return path;
  }

  /**
   * The socket directories of this workspace's sandboxes, templates and pool VMs that exist:
   * everything under its own socket root, and those under the default one whose link names a
   * state directory in this workspace.
   */
  socketDirs(): string[] {
    const own = listDir(this.socketRoot).map((name) => join(this.socketRoot, name));
    const shared = listDir(DEFAULT_SOCKET_ROOT)
      .map((name) => join(DEFAULT_SOCKET_ROOT, name))
      .filter((dir) => {
        try {
          return readlinkSync(join(dir, STATE_DIR_LINK)).startsWith(`${this.dir}/`);
        } catch {
          return false;
        }
      });
    return [...own, ...shared];
  }

  /**
   * QEMU processes started for this workspace, as "pid cmdline" lines. QEMU's launcher
   * (moat-jail, whose command line holds QEMU's) is not one: it exits as its QEMU does.
   */
  qemuProcesses(): string[] {
    return processesMatching(`qemu-system.*${this.stateRoot}/`).filter((line) => !/^\d+ \S*moat-jail /.test(line));
  }

  /** virtiofsd processes (and their forked servers) started for this workspace, as "pid cmdline" lines. */
  virtiofsdProcesses(): string[] {
    const inWorkspace = processesMatching(`virtiofsd.*--socket-path=${this.socketRoot}/`);
    const inDefault = this.socketDirs()
      .filter((dir) => dir.startsWith(`${DEFAULT_SOCKET_ROOT}/`))
      .flatMap((dir) => processesMatching(`virtiofsd.*--socket-path=${dir}/`));
    return [...inWorkspace, ...inDefault];
  }

  /**
   * Fails, listing what is left, if any sandbox outlived the test; `daemonFiles` are moatd's
   * own. The VM templates kept under the state root are a cache, not a sandbox: they may stay,
   * but not a half-built one.
   */
  assertNothingLeft(daemonFiles: string[] = []): void {
    assert.deepEqual(this.qemuProcesses(), [], "QEMU processes left running");
    assert.deepEqual(this.virtiofsdProcesses(), [], "virtiofsd processes left running");
    assert.deepEqual(this.mounts(), [], "mounts left under the workspace");
    const kept = [...daemonFiles, ".templates"];
    const entries = listDir(this.stateRoot).filter((name) => !kept.includes(name));
    assert.deepEqual(entries, [], `left in ${this.stateRoot}`);
    const building = listDir(join(this.stateRoot, ".templates")).filter((name) => name.includes(".building-"));
    assert.deepEqual(building, [], "half-built VM templates left");
    assert.deepEqual(this.socketDirs(), [], "socket directories left");
  }

  /**
   * Waits up to `timeoutMs` for the sandboxes to be gone, then asserts as assertNothingLeft:
   * for callers whose cleanup runs after they return (podman removes a --rm container from
   * conmon's exit command, asynchronously).
   */
  async assertNothingLeftWithin(timeoutMs: number, daemonFiles: string[] = []): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const leftovers = () => listDir(this.stateRoot).filter((name) => ![...daemonFiles, ".templates"].includes(name)).length;
    while (Date.now() < deadline && (this.qemuProcesses().length > 0 || leftovers() > 0 || this.mounts().length > 0 || this.socketDirs().length > 0)) await new Promise((resolve) => setTimeout(resolve, 200));
    this.assertNothingLeft(daemonFiles);
  }

  /** Mount points under this workspace (shares' bind mounts), from this process's mount namespace. */
  mounts(): string[] {
    return readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((line) => line.split(" ")[4] ?? "")
      .filter((point) => point.startsWith(`${this.dir}/`));
  }

  /** moatd's log, to attach to an assertion message. */
  daemonLog(): string {
    try {
      return readFileSync(join(this.stateRoot, "moatd.log"), "utf8");
    } catch {
      return "(no moatd.log)";
    }
  }

  /** The moatd serving this workspace, if one runs, as "pid cmdline" lines. */
  daemonProcesses(): string[] {
    return processesMatching(`moatd.mjs --root ${this.stateRoot}`);
  }

  /** Stops this workspace's moatd (SIGTERM) and waits until it is gone. */
  async stopDaemon(): Promise<void> {
    for (const line of this.daemonProcesses()) {
      try {
        process.kill(Number(line.split(" ")[0]), "SIGTERM");
      } catch {
        // Already gone.
      }
    }
    while (this.daemonProcesses().length > 0) await new Promise((resolve) => setTimeout(resolve, 50));
  }

  /** Removes the workspace; first kills what a failed test left, so one failure does not leak into the next. */
  remove(): void {
    for (const line of [...this.qemuProcesses(), ...this.virtiofsdProcesses(), ...this.daemonProcesses()]) {
      try {
        process.kill(Number(line.split(" ")[0]), "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    // A recursive delete must not reach into a share's source through a mount a failed test left.
    for (const point of this.mounts().reverse()) execFileSync("umount", ["--lazy", point]);
    for (const dir of this.socketDirs()) rmSync(dir, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A directory's entries; none for a directory that was never created. */
function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** Processes whose command line matches `pattern` (pgrep -f), as "pid cmdline" lines. */
function processesMatching(pattern: string): string[] {
  try {
    return execFileSync("pgrep", ["-a", "-f", pattern], { encoding: "utf8" })
      .split("\n")
      .filter((line) => line.trim().length > 0);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}
