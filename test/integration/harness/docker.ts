// A real Docker 20.10 (Debian's docker.io) for a test file, with moat registered as a runtime
// the way a user's daemon.json registers it. Everything is private and under the workspace:
// dockerd's data root, exec root, API socket and pid file, and the containerd that dockerd
// starts and manages itself (its socket, config and state go under the exec root). No bridge
// and no iptables rules (containers run with `--network none`), unless made with
// `{ network: true }`: then dockerd runs in a network namespace of its own (nsenter --net: its
// mounts stay this process's), with its default bridge on 198.18.x.1/24, user-defined networks
// from 198.19.0.0/16, and iptables on. Its bridges, veths, iptables rules and docker-proxy
// listeners are all in that namespace, so none can collide with the host's docker0 or touch
// the host's iptables, and removing the namespace at the end removes whatever dockerd left
// there (it leaves its DOCKER chains and its bridge behind on SIGTERM). moat
// gets the workspace's configuration (its socket root) through the runtime's runtimeArgs;
// its state root is the one Docker passes: `<exec root>/runtime-runc/moby`, the same --root
// Docker 20.10 gives every runtime it drives through containerd's runc shim (runc's too).
//
// /usr/local/bin/docker on these machines is an unrelated Docker 28 client: the client is
// always /usr/bin/docker, from the same package as dockerd.
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { settleWithin } from "../../../src/shared/deadline.js";
import { moatBinary, runCommand, type CliResult } from "./moat-cli.js";
import { buildBusyboxDockerArchive } from "./oci-image.js";
import { DAEMON_FILES, processesMatching, TestWorkspace } from "./state-root.js";

export const DOCKER_CLIENT = "/usr/bin/docker";
export const DOCKERD = "/usr/sbin/dockerd";
/** The runtime's name in daemon.json, as `docker run --runtime` names it. */
export const MOAT_RUNTIME_NAME = "moat";
export const BUSYBOX_TAG = "moat-test/busybox:latest";
const START_TIMEOUT_MS = 60_000;
/** dockerd stops its containers (there are none by then) and its containerd on SIGTERM. */
const STOP_GRACE_MS = 30_000;

export class Docker {
  readonly dir: string;
  readonly socket: string;
  readonly execRoot: string;
  readonly dataRoot: string;
  /** The --root dockerd's containerd passes to moat (and to runc): moat's state root for Docker's containers. */
  readonly moatRoot: string;
  private readonly pidFile: string;
  private readonly logPath: string;
  private readonly configPath: string;
  private readonly clientConfig: string;
  private child: ChildProcess | undefined;
  /** With `network`: dockerd's own network namespace (a name under /run/netns) and its default bridge's /24. */
  readonly netns: string | undefined;
  readonly bridgeSubnet: string | undefined;

  constructor(private readonly workspace: TestWorkspace, options: { network?: boolean } = {}) {
    this.dir = join(workspace.dir, "docker");
    this.socket = join(this.dir, "docker.sock");
    this.execRoot = join(this.dir, "exec");
    this.dataRoot = join(this.dir, "data");
    this.moatRoot = join(this.execRoot, "runtime-runc", "moby");
    this.pidFile = join(this.dir, "dockerd.pid");
    this.logPath = join(this.dir, "dockerd.log");
    this.configPath = join(this.dir, "daemon.json");
    this.clientConfig = join(this.dir, "client");
    mkdirSync(this.clientConfig, { recursive: true });
    if (options.network) {
      const suffix = randomBytes(3).toString("hex");
      this.netns = `moat-dk-${suffix}`;
      // A /24 of 198.18.0.0/15 of its own, so that two runs on one host do not meet.
      this.bridgeSubnet = `198.18.${100 + (parseInt(suffix.slice(0, 2), 16) % 150)}`;
    }
    const moatConfig = workspace.configFile("docker-moat", "");
    // What README tells a user to put in /etc/docker/daemon.json, with this workspace's configuration.
    writeFileSync(this.configPath, JSON.stringify({ runtimes: { [MOAT_RUNTIME_NAME]: { path: moatBinary, runtimeArgs: ["--config", moatConfig] } } }, null, 2) + "\n");
  }

  async start(): Promise<void> {
    const log = openSync(this.logPath, "a");
    const network = this.netns
      ? ["--bip", `${this.bridgeSubnet}.1/24`, "--default-address-pool", "base=198.19.0.0/16,size=24", "--iptables=true", "--ip6tables=false", "--ip-masq=true"]
      : ["--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"];
    if (this.netns) {
      execFileSync("ip", ["netns", "add", this.netns]);
      execFileSync("ip", ["netns", "exec", this.netns, "ip", "link", "set", "lo", "up"]);
    }
    try {
      const argv = [
        "--config-file", this.configPath,
        "--data-root", this.dataRoot,
        "--exec-root", this.execRoot,
        "--host", `unix://${this.socket}`,
        "--pidfile", this.pidFile,
        ...network,
        "--exec-opt", "native.cgroupdriver=cgroupfs",
        "--log-level", "debug",
      ];
      // nsenter execs dockerd in the namespace: the child is dockerd itself.
      this.child = this.netns
        ? spawn("nsenter", [`--net=/run/netns/${this.netns}`, "--", DOCKERD, ...argv], { stdio: ["ignore", log, log], detached: true })
        : spawn(DOCKERD, argv, { stdio: ["ignore", log, log], detached: true });
    } finally {
      closeSync(log);
    }
    const deadline = Date.now() + START_TIMEOUT_MS;
    while ((await this.docker(["version"])).code !== 0) {
      if (Date.now() > deadline || this.child.exitCode !== null) throw new Error(`dockerd did not start:\n${this.log().slice(-4000)}`);
      await sleep(200);
    }
  }

  /** Stops dockerd (and with it its containerd) and the moatd that served its containers. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      if ((await settleWithin(exited.then(() => true), STOP_GRACE_MS)) === undefined) {
        child.kill("SIGKILL");
        await exited;
      }
    }
    this.child = undefined;
    // A managed containerd outlives a dockerd that was killed: it is ours, by its config under our exec root.
    for (const line of processesMatching(`containerd --config ${this.execRoot}/`)) kill(line);
    // Shims that outlived a failed test (by their containerd address), with their containers' processes.
    for (const line of processesMatching(`containerd-shim-runc-v2 .*-address ${this.execRoot}/`)) {
      for (const child of processesMatching(".").filter((candidate) => parentOf(candidate) === Number(line.split(" ")[0]))) kill(child);
      kill(line);
    }
    for (const line of this.moatdProcesses()) kill(line, "SIGTERM");
    while (this.moatdProcesses().length > 0 || processesMatching(`containerd --config ${this.execRoot}/`).length > 0) await sleep(50);
    // Its bridges and iptables rules (which dockerd leaves) go with its namespace.
    if (this.netns && existsSync(`/run/netns/${this.netns}`)) execFileSync("ip", ["netns", "del", this.netns]);
  }

  /** Runs `argv` in dockerd's network namespace (where -p publishes), as the host would from there. */
  inNetns(argv: string[]): Promise<CliResult> {
    if (!this.netns) throw new Error("this Docker has no network namespace of its own");
    return runCommand("nsenter", [`--net=/run/netns/${this.netns}`, "--", ...argv]);
  }

  /** Stops the moatd serving Docker's containers (SIGTERM: its sandboxes live on) and waits until it is gone. */
  async stopMoatd(): Promise<void> {
    for (const line of this.moatdProcesses()) kill(line, "SIGTERM");
    while (this.moatdProcesses().length > 0) await sleep(50);
  }

  /** Runs `/usr/bin/docker -H unix://SOCKET ARGS` with a private client configuration. */
  docker(args: string[], options: { input?: string } = {}): Promise<CliResult> {
    return runCommand(DOCKER_CLIENT, ["-H", `unix://${this.socket}`, ...args], { env: { DOCKER_CONFIG: this.clientConfig }, input: options.input });
  }

  /** Loads the busybox image (docker-archive format) as BUSYBOX_TAG. */
  async loadBusybox(): Promise<void> {
    const archive = buildBusyboxDockerArchive(this.workspace.dir, BUSYBOX_TAG);
    const result = await this.docker(["load", "--input", archive]);
    if (result.code !== 0) throw new Error(`docker load: ${result.stderr}`);
  }

  /** The moatd serving Docker's containers (state root moatRoot), as "pid cmdline" lines. */
  moatdProcesses(): string[] {
    return processesMatching(`moatd.mjs --root ${this.moatRoot}`);
  }

  /**
   * Everything a finished test must have cleaned: Docker's containers, moat's sandboxes (QEMU,
   * state directories under Docker's --root, socket directories), shims, mounts.
   */
  async assertNothingLeft(): Promise<void> {
    const containers = await this.docker(["ps", "--all", "--quiet"]);
    assert.equal(containers.stdout.trim(), "", "docker still lists containers");
    assert.deepEqual(processesMatching(`qemu-system.*${this.moatRoot}/`), [], "QEMU processes left running");
    const kept = [...DAEMON_FILES, ".templates"];
    assert.deepEqual(listDir(this.moatRoot).filter((name) => !kept.includes(name)), [], `left in ${this.moatRoot}`);
    assert.deepEqual(this.workspace.socketDirs(), [], "socket directories left");
    assert.deepEqual(processesMatching(`containerd-shim-runc-v2 .*-address ${this.execRoot}/`), [], "shims left");
    assert.deepEqual(this.workspace.mounts().filter((point) => !isDockerOwn(point, this)), [], "mounts left (a container's root file system, a share)");
  }

  /**
   * After the last test: removes what a failed test left (containers, then `networks`), stops
   * dockerd, and checks that nothing of it is left.
   */
  async finish(networks: string[] = []): Promise<void> {
    try {
      const left = (await this.docker(["ps", "--all", "--quiet"])).stdout.split("\n").filter((id) => id);
      if (left.length > 0) await this.docker(["rm", "--force", ...left]);
      for (const network of networks) await this.docker(["network", "rm", network]);
    } finally {
      await this.stop();
    }
    this.assertGone();
  }

  /** Nothing of this Docker is left (processes, mounts, network namespaces). */
  assertGone(): void {
    assert.deepEqual(processesMatching(this.dir), [], "processes left");
    assert.deepEqual(this.workspace.mounts(), [], "mounts left");
    assert.equal(existsSync(this.pidFile), false, `${this.pidFile} left`);
    if (this.netns) assert.equal(existsSync(`/run/netns/${this.netns}`), false, `network namespace ${this.netns} left`);
  }

  /** The moat runtime log containerd's shim passes to moat (--log, JSON lines), for a container; empty if there is none. */
  runtimeLogs(): string {
    const tasks = join(this.execRoot, "containerd", "daemon", "io.containerd.runtime.v2.task", "moby");
    return listDir(tasks)
      .map((id) => join(tasks, id, "log.json"))
      .filter((path) => existsSync(path))
      .map((path) => `${path}:\n${readFileSync(path, "utf8")}`)
      .join("\n");
  }

  log(): string {
    try {
      return readFileSync(this.logPath, "utf8");
    } catch {
      return "(no dockerd.log)";
    }
  }
}

/** dockerd's own mounts under its data root, which stay while it runs and go with it. */
function isDockerOwn(point: string, docker: Docker): boolean {
  return point === docker.dataRoot || point === join(docker.dataRoot, "overlay2") || point.startsWith(`${docker.execRoot}/netns`);
}

/** A directory's entries; none for a directory that was never created. */
function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** The parent pid of a "pid cmdline" line's process; 0 if it is gone. */
function parentOf(line: string): number {
  try {
    const stat = readFileSync(`/proc/${line.split(" ")[0]}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return 0;
  }
}

function kill(line: string, signal: NodeJS.Signals = "SIGKILL"): void {
  try {
    process.kill(Number(line.split(" ")[0]), signal);
  } catch {
    // Already gone.
  }
}

