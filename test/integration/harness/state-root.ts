// A private workspace per test file: a state root and a socket root for sandboxes and room
// for config files; and the check that a test left nothing behind: no QEMU or virtiofsd
// process started for it, no mount (a share's bind mount) under the workspace, no state
// directory, socket or log under its state root, no socket directory of its sandboxes (under
// its own socket root, or the default one that `--root` without a configuration file uses).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
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

  /**
   * Everything a sandbox of this workspace could leave on the host, listed: processes whose
   * command line names the workspace (QEMU, moat-jail, virtiofsd, stand-ins, shims, relays;
   * moatd and containerd themselves excepted), mounts under it, taps in the host's namespace
   * (moat's are `tap<N>_moat`, made only inside a sandbox's namespace), network namespaces
   * `moat-<id>` of the given ids, cgroups left under the given parents (cgroupsPath's parent,
   * in every hierarchy), entries under the state root other than moatd's own files and the
   * template cache, socket directories, and moatd's open descriptors (pid and count).
   */
  census(options: { ids?: string[]; cgroupParents?: string[]; daemonFiles?: string[] } = {}): Census {
    const kept = [...(options.daemonFiles ?? DAEMON_FILES), ".templates"];
    const daemon = this.daemonProcesses()[0];
    const daemonPid = daemon === undefined ? undefined : Number(daemon.split(" ")[0]);
    return {
      processes: processesMatching(this.dir).filter((line) => !/ containerd --config |moatd\.mjs --root |moatd-launch /.test(line)),
      mounts: this.mounts(),
      taps: listDir("/sys/class/net").filter((name) => name.endsWith("_moat")),
      netns: listDir("/run/netns").filter((name) => (options.ids ?? []).some((id) => name === `moat-${id}`)),
      cgroups: (options.cgroupParents ?? []).flatMap((parent) => cgroupHierarchyDirs().flatMap((hierarchy) => listDir(join(hierarchy, parent)).filter((entry) => statIsDir(join(hierarchy, parent, entry))).map((entry) => join(hierarchy, parent, entry)))),
      stateRoot: listDir(this.stateRoot).filter((name) => !kept.includes(name)),
      socketDirs: this.socketDirs(),
      daemon: daemonPid === undefined ? undefined : { pid: daemonPid, descriptors: listDir(`/proc/${daemonPid}/fd`).length },
    };
  }

  /**
   * Asserts that the census finds nothing left; with `daemonDescriptors`, that moatd (if it
   * still runs) holds that many descriptors, its count when it served no container.
   */
  assertCensusClean(options: { ids?: string[]; cgroupParents?: string[]; daemonFiles?: string[]; daemonDescriptors?: number } = {}): void {
    const census = this.census(options);
    const where = `\nmoatd.log:\n${this.daemonLog().slice(-4000)}`;
    assert.deepEqual(census.processes, [], `processes left${where}`);
    assert.deepEqual(census.mounts, [], "mounts left under the workspace");
    assert.deepEqual(census.taps, [], "taps left in the host's network namespace");
    assert.deepEqual(census.netns, [], "network namespaces left");
    assert.deepEqual(census.cgroups, [], "cgroups left");
    assert.deepEqual(census.stateRoot, [], `left in ${this.stateRoot}`);
    assert.deepEqual(census.socketDirs, [], "socket directories left");
    if (options.daemonDescriptors !== undefined && census.daemon !== undefined) {
      const fds = listDir(`/proc/${census.daemon.pid}/fd`).map((fd) => `${fd} -> ${readlinkOr(`/proc/${census.daemon!.pid}/fd/${fd}`)}`); // daemon checked on this line's condition
      assert.equal(census.daemon.descriptors, options.daemonDescriptors, `moatd ${census.daemon.pid} holds ${census.daemon.descriptors} descriptors, not its baseline ${options.daemonDescriptors}:\n${fds.join("\n")}`);
    }
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

export interface Census {
  processes: string[];
  mounts: string[];
  taps: string[];
  netns: string[];
  cgroups: string[];
  stateRoot: string[];
  socketDirs: string[];
  daemon: { pid: number; descriptors: number } | undefined;
}

/** The host's cgroup hierarchies: v2's root, or each v1 hierarchy (cgroup v1 here: /sys/fs/cgroup/<controller>). */
function cgroupHierarchyDirs(): string[] {
  if (listDir("/sys/fs/cgroup").includes("cgroup.controllers")) return ["/sys/fs/cgroup"];
  return listDir("/sys/fs/cgroup")
    .map((name) => join("/sys/fs/cgroup", name))
    .filter((dir) => statIsDir(dir) && !lstatSync(dir).isSymbolicLink());
}

function statIsDir(path: string): boolean {
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return false;
  }
}

function readlinkOr(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return "(gone)";
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

/**
 * Processes whose command line matches `pattern` (pgrep -f), as "pid cmdline" lines, without
 * pgrep itself. The one process lister of the harness (docker.ts, containerd.ts use it too).
 */
export function processesMatching(pattern: string): string[] {
  try {
    return execFileSync("pgrep", ["-a", "-f", pattern], { encoding: "utf8" })
      .split("\n")
      .filter((line) => line.trim().length > 0 && !/^\d+ pgrep /.test(line));
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}
