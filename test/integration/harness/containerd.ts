// A real containerd (Debian's) for a test file: private root, state, sockets and FIFO
// directory under the workspace, moat's shim on its PATH (dist/bin) and moat's configuration
// (the workspace's state root) in its environment, which the shim and moatd inherit. `ctr`
// runs against its socket. The runtime is chosen per task with `ctr run --runtime
// io.containerd.moat.v2`, which containerd resolves to containerd-shim-moat-v2 on its PATH;
// the config also registers moat for the CRI plugin, as a real installation would. CRI is off
// (it would want CNI) unless a test asks for Kata's containerd snippet with CRI on, which
// proves that snippet loads with moat as it is (less runtime_root, which containerd refuses),
// or for CRI on for real with a network and a sandbox image (harness/cri.ts).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { after, before } from "node:test";
import { mkdirSync, openSync, closeSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { settleWithin } from "../../../src/shared/deadline.js";
import { repoRoot, runCommand, type CliResult } from "./moat-cli.js";
import { buildBusyboxArchive } from "./oci-image.js";
import { DAEMON_FILES, processesMatching, TestWorkspace } from "./state-root.js";

export const MOAT_RUNTIME = "io.containerd.moat.v2";
export const NAMESPACE = "moat-test";
const START_TIMEOUT_MS = 30_000;
/** How long containerd may take to shut down on SIGTERM before it is killed: none may outlive its test file. */
const STOP_GRACE_MS = 15_000;

export interface ContainerdOptions {
  /** Kata's containerd snippet (issue 4) with the CRI plugin on, CNI unconfigured. */
  kataSnippetWithCri?: boolean;
  /**
   * CRI on for real (harness/cri.ts): Kata's snippet, runtimes `runc` and `moat` beside it,
   * this sandbox image, CNI's plugins from /usr/lib/cni with this conf dir, the stream server
   * on 127.0.0.1:streamPort.
   */
  cri?: { confDir: string; sandboxImage: string; streamPort: number };
}

export class Containerd {
  readonly dir: string;
  readonly socket: string;
  readonly fifoDir: string;
  /** A directory on containerd's PATH for `moat install --prefix`. */
  readonly installBin: string;
  /** containerd's config.toml, written by the constructor; a test may rewrite it before start(). */
  readonly configPath: string;
  private readonly logPath: string;
  private child: ChildProcess | undefined;
  /** moat's configuration file for the shim and moatd containerd starts (the state root is the workspace's). */
  private readonly moatConfig: string;

  constructor(
    private readonly workspace: TestWorkspace,
    options: ContainerdOptions = {},
  ) {
    this.dir = join(workspace.dir, "containerd");
    this.socket = join(this.dir, "containerd.sock");
    this.fifoDir = join(this.dir, "fifo");
    this.installBin = join(workspace.dir, "bin");
    this.configPath = join(this.dir, "config.toml");
    this.logPath = join(this.dir, "containerd.log");
    this.moatConfig = workspace.configFile("containerd-moat", "");
    mkdirSync(this.fifoDir, { recursive: true });
    const cri = options.cri;
    const kata = options.kataSnippetWithCri === true || cri !== undefined;
    const lines = ["version = 2", `root = "${join(this.dir, "root")}"`, `state = "${join(this.dir, "state")}"`];
    if (!kata) lines.push('disabled_plugins = ["io.containerd.grpc.v1.cri"]'); // before any table: TOML puts later keys into the table above them
    lines.push("[grpc]", `  address = "${this.socket}"`);
    if (!kata) lines.push('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.moat]', `  runtime_type = "${MOAT_RUNTIME}"`);
    else {
      lines.push(
        // What CRI needs to load, kept private: its stream server on loopback, its directories here.
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${join(this.dir, "opt")}"`,
        '[plugins."io.containerd.grpc.v1.cri"]',
        '  stream_server_address = "127.0.0.1"',
        `  stream_server_port = "${cri?.streamPort ?? 0}"`,
        ...(cri === undefined
          ? []
          : [
              `  sandbox_image = "${cri.sandboxImage}"`,
              "  disable_apparmor = true", // this host has no AppArmor; CRI would ask for its profile
              // The sandbox container's oom_score_adj is -998, and lowering it is refused here
              // (runc: "failed to update /proc/self/oom_score_adj"): no lower than containerd's own.
              "  restrict_oom_score_adj = true",
            ]),
        '  [plugins."io.containerd.grpc.v1.cri".cni]',
        `    conf_dir = "${cri?.confDir ?? join(this.dir, "cni")}"`,
        ...(cri === undefined ? [] : ['    bin_dir = "/usr/lib/cni"', "    max_conf_num = 1"]),
        '  [plugins."io.containerd.grpc.v1.cri".containerd]',
        '    default_runtime_name = "runc"',
        '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
        '      runtime_type = "io.containerd.runc.v2"',
        ...(cri === undefined
          ? []
          : [
              '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.moat]',
              `      runtime_type = "${MOAT_RUNTIME}"`,
              // What Kata's docs tell operators to add so that pods can size their VM by annotation:
              // containerd passes only the pod annotations named here on to the runtime.
              '      pod_annotations = ["io.katacontainers.*", "io.moat.*"]',
              '      container_annotations = ["io.katacontainers.*", "io.moat.*"]',
            ]),
        // Kata's snippet from issue 4, as a Kata user has it, less runtime_root.
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]',
        "  privileged_without_host_devices = true",
        '  runtime_type = "io.containerd.kata.v2"',
        '  sandbox_cgroup_parent = "kubepods"',
        '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata.options]',
        "    SystemdCgroup = true",
      );
    }
    writeFileSync(this.configPath, [...lines, ""].join("\n"));
  }

  /** Sets moat's configuration for the next moatd the shim starts (a running one keeps its own). */
  useMoatConfig(toml: string): void {
    this.workspace.configFile("containerd-moat", toml);
  }

  /** The environment containerd runs in, and so the shim and moatd it starts. */
  env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      // The workspace's bin first: where tests `moat install` shims (installBin).
      PATH: `${this.installBin}:${join(repoRoot, "dist", "bin")}:${process.env.PATH ?? ""}`,
      MOAT_CONFIG: this.moatConfig,
    };
  }

  async start(): Promise<void> {
    const log = openSync(this.logPath, "a");
    try {
      this.child = spawn("containerd", ["--config", this.configPath], { env: this.env(), stdio: ["ignore", log, log], detached: true });
    } finally {
      closeSync(log);
    }
    const deadline = Date.now() + START_TIMEOUT_MS;
    while ((await this.ctr(["version"])).code !== 0) {
      if (Date.now() > deadline || this.child.exitCode !== null) throw new Error(`containerd did not start:\n${this.log()}`);
      await sleep(100);
    }
  }

  /** Stops containerd (SIGTERM, or SIGKILL to simulate a crash); its shims' tasks live on. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill(signal);
    if ((await settleWithin(exited.then(() => true), STOP_GRACE_MS)) === undefined) {
      child.kill("SIGKILL"); // seen once: a containerd that never finished its shutdown, left running after the tests
      await exited;
    }
    this.child = undefined;
  }

  /** Runs `ctr -a SOCKET -n moat-test ARGS`. */
  ctr(args: string[], options: { stdin?: string } = {}): Promise<CliResult> {
    return runCommand("ctr", ["-a", this.socket, "-n", NAMESPACE, ...args], { env: this.env(), input: options.stdin ?? "" });
  }

  /** Runs `ctr -a SOCKET -n NAMESPACE ARGS` (CRI's namespace is k8s.io). */
  ctrIn(namespace: string, args: string[]): Promise<CliResult> {
    return runCommand("ctr", ["-a", this.socket, "-n", namespace, ...args], { env: this.env(), input: "" });
  }

  /** `ctr run` with moat's runtime and the workspace's FIFO directory. */
  run(args: string[], options: { stdin?: string } = {}): Promise<CliResult> {
    return this.ctr(["run", "--runtime", MOAT_RUNTIME, "--fifo-dir", this.fifoDir, ...args], options);
  }

  /**
   * `ctr events` for the test namespace, collected until stopped: stop() gives the topics in
   * the order containerd saw them, stopLines() whole "TIMESTAMP NAMESPACE TOPIC EVENT" lines.
   * Resolves once it has subscribed.
   */
  async watchEvents(): Promise<{ stop(): Promise<string[]>; stopLines(): Promise<string[]>; current(): string[] }> {
    const child = spawn("ctr", ["-a", this.socket, "events"], { env: this.env(), stdio: ["ignore", "pipe", "ignore"] });
    let text = "";
    child.stdout.on("data", (chunk) => (text += chunk));
    const stopLines = async () => {
      const closed = new Promise((resolve) => child.once("close", resolve));
      child.kill();
      await closed;
      return text.split("\n").filter((line) => line.includes(` ${NAMESPACE} /tasks/`));
    };
    await sleep(300); // ctr events subscribes before the task exists
    return {
      stopLines,
      current: () => text.split("\n").filter((line) => line.includes(` ${NAMESPACE} /tasks/`)),
      async stop() {
        return (await stopLines()).map((line) => line.split(" ").find((word) => word.startsWith("/tasks/")) ?? "");
      },
    };
  }

  /** Everything a finished test must have cleaned: containerd's tasks, moat's sandboxes, mounts, FIFOs. */
  async assertNothingLeft(): Promise<void> {
    const tasks = await this.ctr(["tasks", "ls", "-q"]);
    assert.equal(tasks.stdout.trim(), "", "containerd still lists tasks");
    const containers = await this.ctr(["containers", "ls", "-q"]);
    assert.equal(containers.stdout.trim(), "", "containerd still lists containers");
    this.workspace.assertNothingLeft(DAEMON_FILES);
    assert.deepEqual(this.strayProcesses(), [], "processes left (shim, logger, relay)");
    assert.deepEqual(mountsUnder(this.workspace.dir), [], "mounts left");
    assert.deepEqual(readdirSync(this.fifoDir), [], "FIFOs left");
  }

  /** Builds the busybox OCI archive and imports it. */
  async importBusybox(): Promise<void> {
    const archive = buildBusyboxArchive(this.workspace.dir);
    const result = await this.ctr(["images", "import", archive]);
    if (result.code !== 0) throw new Error(`ctr images import: ${result.stderr}`);
  }

  /**
   * Processes started for this workspace other than containerd and moatd themselves (a
   * shim, a logging binary), as "pid cmdline" lines; QEMU is checked by the workspace.
   */
  strayProcesses(): string[] {
    return processesMatching(this.workspace.dir).filter((line) => !/ containerd --config |moatd\.mjs --root |qemu-system/.test(line));
  }

  log(): string {
    try {
      return readFileSync(this.logPath, "utf8");
    } catch {
      return "(no containerd.log)";
    }
  }
}

/**
 * A test file's workspace and containerd: started, with busybox imported, before its first
 * test; stopped, with moatd, and removed after its last.
 */
export function containerdForTestFile(options: ContainerdOptions = {}): { workspace: TestWorkspace; containerd: Containerd } {
  const workspace = new TestWorkspace();
  const containerd = new Containerd(workspace, options);
  before(async () => {
    await containerd.start();
    await containerd.importBusybox();
  });
  after(async () => {
    await containerd.stop();
    await workspace.stopDaemon();
    workspace.remove();
  });
  return { workspace, containerd };
}

/** Mount points under `dir` (rootfs overlays a test left mounted), from /proc/self/mountinfo. */
export function mountsUnder(dir: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "") // field 5 is the mount point
    .filter((mountPoint) => mountPoint.startsWith(dir + "/"));
}
