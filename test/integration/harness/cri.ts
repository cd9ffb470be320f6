// Kubernetes' CRI, driven as kubelet drives it, against a private containerd with its CRI
// plugin on (issue 12): a gRPC client for the subset of runtime.v1 in proto/k8s/cri/v1
// (@grpc/grpc-js over containerd's unix socket), and a test file's whole CRI node: containerd
// with CRI's stream server on 127.0.0.1, a sandbox image built here (test/support/pause.c)
// and busybox, both imported into the `k8s.io` namespace CRI reads; a private CNI conf dir
// with a bridge conflist on a /24 of 198.18.0.0/15 of its own with a non-default MTU,
// host-local IPAM in the workspace and portmap; the runtimes `runc` (the baseline), `moat`
// (io.containerd.moat.v2) and `kata` as the seeds' snippet has it (moat installed with
// --kata-compat). Images are named on 127.0.0.1:1, so that a pull CRI tries for a missing
// one is refused on this machine and never leaves it. Everything it made is gone at the end,
// and `leftovers()` lists what a pod could leave: pods and containers in CRI, netns, veths on
// the bridge, held addresses, iptables rules for the subnet or a test's host port, mounts,
// cgroups, moat's sandboxes.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, rmdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { credentials, Client, Metadata, status as grpcStatus, type ServiceError } from "@grpc/grpc-js";
import { after, before } from "node:test";
import { ContainerConfigSchema, ContainerState, ContainerStatusSchema, ImageService, PodSandboxConfigSchema, RuntimeService, type PodSandboxConfig } from "../../../src/shared/protocol/gen/k8s/cri/v1/api_pb.js";
import { Containerd } from "./containerd.js";
import { repoRoot, runMoat } from "./moat-cli.js";
import { BUSYBOX_IMAGE, buildBusyboxArchive, buildImageArchive } from "./oci-image.js";
import { TestWorkspace } from "./state-root.js";

export { BUSYBOX_IMAGE };
/** The sandbox image: the pause program of test/support/pause.c alone. */
export const PAUSE_IMAGE = "127.0.0.1:1/moat-test/pause:1";
export const PAUSE_BINARY = join(repoRoot, "dist", "test", "bin", "moat-pause");
/** containerd's namespace for CRI's images, containers and tasks. */
export const CRI_NAMESPACE = "k8s.io";
/** The network's MTU: not the default 1500, so that a guest interface with it got it from the network. */
export const POD_MTU = 1400;
/** moat's default_vcpus and default_memory for this node's pods: a sized pod's VM is this plus its limits. */
export const POD_VM_BASE = { vcpus: 1, memoryMiB: 256 };
/** How long one CRI call may take (a pod's VM boots under TCG inside RunPodSandbox or StartContainer). */
const CALL_DEADLINE_MS = 240_000;

/** A CRI call's failure: the gRPC status's name (NotFound, Unknown, …) and containerd's message. */
export class CriError extends Error {
  constructor(
    readonly method: string,
    readonly code: string,
    readonly details: string,
  ) {
    super(`CRI ${method}: ${code}: ${details}`);
  }
}

/** Every unary method of a generated service, by local name, as a promise of its response. */
type UnaryClient<S extends DescService> = {
  [K in keyof S["method"]]: (request: MessageInitShape<S["method"][K]["input"]>) => Promise<MessageShape<S["method"][K]["output"]>>;
};

/** A gRPC client of containerd's CRI services on its unix socket. */
export class CriClient {
  private readonly client: Client;
  readonly runtime: UnaryClient<typeof RuntimeService>;
  readonly image: UnaryClient<typeof ImageService>;

  constructor(socket: string) {
    this.client = new Client(`unix://${socket}`, credentials.createInsecure());
    this.runtime = this.bind(RuntimeService);
    this.image = this.bind(ImageService);
  }

  close(): void {
    this.client.close();
  }

  private bind<S extends DescService>(service: S): UnaryClient<S> {
    const methods: Record<string, (request: MessageInitShape<DescMessage>) => Promise<unknown>> = {};
    for (const method of service.methods) methods[method.localName] = (request) => this.call(service, method, request);
    return methods as UnaryClient<S>; // one entry per method of the service, by its local name
  }

  private call(service: DescService, method: DescMethod, request: MessageInitShape<DescMessage>): Promise<unknown> {
    const path = `/${service.typeName}/${method.name}`;
    const message = create(method.input, request);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        path,
        (value: typeof message) => Buffer.from(toBinary(method.input, value)),
        (bytes: Buffer) => fromBinary(method.output, bytes),
        message,
        new Metadata(),
        { deadline: Date.now() + CALL_DEADLINE_MS },
        (error: ServiceError | null, response?: unknown) => {
          if (error) reject(new CriError(method.name, grpcStatus[error.code] ?? String(error.code), error.details));
          else resolve(response);
        },
      );
    });
  }
}

/**
 * Calls `probe` until `done` holds for its result or two minutes have passed; returns the last
 * result (the caller asserts on it, so a failure shows what was seen).
 */
export async function eventually<T>(probe: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const value = await probe();
    if (done(value) || Date.now() > deadline) return value;
    await sleep(250);
  }
}

/** Runs `call`, which must fail; returns its CriError (a success or another error fails the test). */
export async function criFailure(call: Promise<unknown>): Promise<CriError> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof CriError, `not a CRI error: ${String(error)}`);
    return error;
  }
  assert.fail("the CRI call succeeded");
}

export interface PodOptions {
  name: string;
  hostname?: string;
  annotations?: Record<string, string>;
  /** The pod's limits, as kubelet sums them: containerd makes the sandbox-size annotations of them. */
  resources?: { cpuQuota?: bigint; cpuPeriod?: bigint; cpuShares?: bigint; memoryBytes?: bigint };
  portMappings?: Array<{ containerPort: number; hostPort: number }>;
}

export interface ContainerOptions {
  name: string;
  command: string[];
  image?: string;
  mounts?: Array<{ containerPath: string; hostPath: string; readonly?: boolean }>;
  resources?: { memoryBytes?: bigint; cpuQuota?: bigint; cpuPeriod?: bigint };
  tty?: boolean;
  stdin?: boolean;
  annotations?: Record<string, string>;
}

/** One test file's CRI node: containerd with CRI, its network, its images and a client. */
export class CriNode {
  readonly suffix = randomBytes(3).toString("hex");
  readonly bridge = `moatc${this.suffix}`;
  /** The network's /24 ("198.18.N"): 198.18.90-99, beside issue 11's 20-89 and network-netns's 100-249. */
  readonly subnet = `198.18.${90 + (parseInt(this.suffix.slice(0, 2), 16) % 10)}`;
  readonly network = `moatc-${this.suffix}`;
  readonly confDir: string;
  readonly ipamDir: string;
  readonly logRoot: string;
  /** Pods' cgroup parent (cgroupfs, under each v1 hierarchy): runc's containers go under it. */
  readonly cgroupParent = `moat-cri-${this.suffix}`;
  private streamPortNumber = 0;
  private containerdInstance: Containerd | undefined;
  private netnsBefore: string[] = [];
  private clientInstance: CriClient | undefined;

  constructor(readonly workspace: TestWorkspace) {
    this.confDir = join(workspace.dir, "net.d");
    this.ipamDir = join(workspace.dir, "ipam");
    this.logRoot = join(workspace.dir, "pod-logs");
  }

  get containerd(): Containerd {
    assert.ok(this.containerdInstance, "the CRI node is not started");
    return this.containerdInstance;
  }

  /** The port of CRI's stream server on 127.0.0.1. */
  get streamPort(): number {
    return this.streamPortNumber;
  }

  get cri(): CriClient {
    assert.ok(this.clientInstance, "the CRI node is not started");
    return this.clientInstance;
  }

  /** Makes the network and images, starts containerd with CRI, installs moat's kata name. */
  async start(): Promise<void> {
    this.streamPortNumber = await freeLoopbackPort();
    this.containerdInstance = new Containerd(this.workspace, { cri: { confDir: this.confDir, sandboxImage: PAUSE_IMAGE, streamPort: this.streamPortNumber } });
    this.netnsBefore = listDir("/run/netns");
    mkdirSync(this.confDir, { recursive: true });
    mkdirSync(this.logRoot, { recursive: true });
    writeFileSync(
      join(this.confDir, "10-moat-cri.conflist"),
      JSON.stringify(
        {
          cniVersion: "1.0.0",
          name: this.network,
          plugins: [
            {
              type: "bridge",
              bridge: this.bridge,
              isGateway: true,
              ipMasq: false,
              mtu: POD_MTU,
              ipam: { type: "host-local", dataDir: this.ipamDir, ranges: [[{ subnet: `${this.subnet}.0/24` }]], routes: [{ dst: "0.0.0.0/0" }] },
            },
            { type: "portmap", capabilities: { portMappings: true } },
          ],
        },
        null,
        2,
      ),
    );
    // Made up front with its MTU (the bridge plugin would make it, and CNI never removes it).
    ip("link", "add", this.bridge, "mtu", String(POD_MTU), "type", "bridge");
    ip("addr", "add", `${this.subnet}.1/24`, "dev", this.bridge);
    ip("link", "set", this.bridge, "up");
    const installed = await runMoat(["install", "--prefix", this.containerd.installBin, "--kata-compat"]);
    if (installed.code !== 0) throw new Error(`moat install --kata-compat: ${installed.stderr}`);
    // Small VMs (the machine is shared) and an explicit base for the sizing tests' arithmetic.
    this.containerd.useMoatConfig(`[hypervisor.qemu]\ndefault_vcpus = ${POD_VM_BASE.vcpus}\ndefault_memory = ${POD_VM_BASE.memoryMiB}\n`);
    await this.containerd.start();
    await this.importImage(buildBusyboxArchive(this.workspace.dir));
    await this.importImage(buildPauseArchive(this.workspace.dir));
    this.clientInstance = new CriClient(this.containerd.socket);
    const version = await this.cri.runtime.version({ version: "v1" });
    assert.equal(version.runtimeApiVersion, "v1", "containerd serves CRI runtime.v1");
  }

  /** Removes every pod CRI still has (a failed test's), stops containerd, removes the network and cgroup parents. */
  async stop(): Promise<void> {
    if (this.clientInstance) {
      try {
        for (const pod of (await this.cri.runtime.listPodSandbox({})).items) {
          await this.cri.runtime.stopPodSandbox({ podSandboxId: pod.id }).catch(() => undefined);
          await this.cri.runtime.removePodSandbox({ podSandboxId: pod.id }).catch(() => undefined);
        }
      } finally {
        this.clientInstance.close();
        this.clientInstance = undefined;
      }
    }
    await this.containerdInstance?.stop();
    try {
      ip("link", "del", this.bridge);
    } catch {
      // Never made: start() failed before.
    }
    for (const hierarchy of cgroupHierarchies()) {
      try {
        rmdirSync(join(hierarchy, this.cgroupParent));
      } catch {
        // Not made in this hierarchy, or (a failure) not empty: the census has said so.
      }
    }
  }

  private async importImage(archive: string): Promise<void> {
    const result = await this.containerd.ctrIn(CRI_NAMESPACE, ["images", "import", archive]);
    if (result.code !== 0) throw new Error(`ctr -n ${CRI_NAMESPACE} images import: ${result.stderr}`);
  }

  /** A pod's config as kubelet writes it: metadata, hostname, log directory, cgroup parent, limits. */
  podConfig(options: PodOptions): MessageInitShape<typeof PodSandboxConfigSchema> {
    const uid = `${options.name}-${this.suffix}`;
    const logDirectory = join(this.logRoot, uid);
    mkdirSync(logDirectory, { recursive: true });
    const resources = options.resources;
    return {
      metadata: { name: options.name, uid, namespace: "moat-test", attempt: 0 },
      hostname: options.hostname ?? options.name,
      logDirectory,
      annotations: options.annotations ?? {},
      labels: { "moat.test/suite": this.suffix },
      portMappings: (options.portMappings ?? []).map((mapping) => ({ containerPort: mapping.containerPort, hostPort: mapping.hostPort, hostIp: "127.0.0.1" })),
      linux: {
        cgroupParent: `/${this.cgroupParent}`, // containers go under it, each in <id>, which their runtime removes
        securityContext: { namespaceOptions: {} },
        resources: resources === undefined ? undefined : { cpuQuota: resources.cpuQuota ?? 0n, cpuPeriod: resources.cpuPeriod ?? 0n, cpuShares: resources.cpuShares ?? 0n, memoryLimitInBytes: resources.memoryBytes ?? 0n },
      },
    };
  }

  /** A container's config as kubelet writes it, its log at `<name>.log` in the pod's log directory. */
  containerConfig(options: ContainerOptions): MessageInitShape<typeof ContainerConfigSchema> {
    return {
      metadata: { name: options.name, attempt: 0 },
      image: { image: options.image ?? BUSYBOX_IMAGE },
      command: options.command,
      logPath: `${options.name}.log`,
      tty: options.tty ?? false,
      stdin: options.stdin ?? false,
      annotations: options.annotations ?? {},
      mounts: (options.mounts ?? []).map((mount) => ({ containerPath: mount.containerPath, hostPath: mount.hostPath, readonly: mount.readonly ?? false })),
      linux: {
        resources: { memoryLimitInBytes: options.resources?.memoryBytes ?? 0n, cpuQuota: options.resources?.cpuQuota ?? 0n, cpuPeriod: options.resources?.cpuPeriod ?? 0n },
        securityContext: { namespaceOptions: {} },
      },
    };
  }

  /** RunPodSandbox with `handler`; returns the pod's id and config (CreateContainer wants it again). */
  async runPod(handler: string, options: PodOptions): Promise<{ id: string; config: PodSandboxConfig }> {
    const config = create(PodSandboxConfigSchema, this.podConfig(options));
    const { podSandboxId } = await this.cri.runtime.runPodSandbox({ config, runtimeHandler: handler });
    return { id: podSandboxId, config };
  }

  /** CreateContainer then StartContainer in `pod`; returns the container's id. */
  async startContainer(pod: { id: string; config: PodSandboxConfig }, options: ContainerOptions): Promise<string> {
    const { containerId } = await this.cri.runtime.createContainer({ podSandboxId: pod.id, config: this.containerConfig(options), sandboxConfig: pod.config });
    await this.cri.runtime.startContainer({ containerId });
    return containerId;
  }

  /** StopPodSandbox then RemovePodSandbox, as kubelet does when a pod is deleted. */
  async removePod(id: string): Promise<void> {
    await this.cri.runtime.stopPodSandbox({ podSandboxId: id });
    await this.cri.runtime.removePodSandbox({ podSandboxId: id });
  }

  /** The pod's IP on the test network, from PodSandboxStatus. */
  async podIp(id: string): Promise<string> {
    const status = await this.cri.runtime.podSandboxStatus({ podSandboxId: id });
    return status.status?.network?.ip ?? "";
  }

  /** ExecSync `cmd` in a container; its stdout and stderr as text and its exit code. */
  async exec(containerId: string, cmd: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
    const result = await this.cri.runtime.execSync({ containerId, cmd, timeout: 120n });
    return { stdout: Buffer.from(result.stdout).toString(), stderr: Buffer.from(result.stderr).toString(), exitCode: result.exitCode };
  }

  /** Waits (polling ContainerStatus) until the container has exited; returns its status. */
  async waitExited(containerId: string, timeoutMs = CALL_DEADLINE_MS): Promise<MessageShape<typeof ContainerStatusSchema>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { status } = await this.cri.runtime.containerStatus({ containerId });
      assert.ok(status, `no status for ${containerId}`);
      if (status.state === ContainerState.CONTAINER_EXITED || Date.now() > deadline) return status;
      await sleep(200);
    }
  }

  /**
   * What pods of this node left on the host: pods and containers CRI still lists, network
   * namespaces made since start, veths on the bridge, addresses host-local still holds,
   * iptables rules naming the subnet or `hostPorts`, and the workspace's census (processes,
   * mounts, taps, cgroups under the pods' parent, moat's state and sockets).
   */
  async leftovers(hostPorts: number[] = []): Promise<string[]> {
    const pods = (await this.cri.runtime.listPodSandbox({})).items.map((pod) => `pod ${pod.id} (${pod.metadata?.name ?? "?"})`);
    const containers = (await this.cri.runtime.listContainers({})).containers.map((container) => `container ${container.id} (${container.metadata?.name ?? "?"})`);
    const netns = listDir("/run/netns")
      .filter((name) => !this.netnsBefore.includes(name))
      .map((name) => `netns ${name}`);
    const veths = (JSON.parse(ip("-j", "link", "show", "master", this.bridge)) as Array<{ ifname: string }>).map((link) => `veth ${link.ifname} on ${this.bridge}`); // ip -j prints an array of links
    const held = listDir(join(this.ipamDir, this.network))
      .filter((file) => file !== "lock" && !file.startsWith("last_reserved_ip"))
      .map((file) => `address ${file} held`);
    const rules = execFileSync("iptables-save", { encoding: "utf8" })
      .split("\n")
      .filter((line) => line.includes(`${this.subnet}.`) || hostPorts.some((port) => line.includes(`dport ${port}`)))
      .map((line) => `iptables ${line}`);
    const census = this.workspace.census({ cgroupParents: [this.cgroupParent] });
    return [
      ...pods,
      ...containers,
      ...netns,
      ...veths,
      ...held,
      ...rules,
      ...census.processes.map((line) => `process ${line}`),
      ...census.mounts.map((point) => `mount ${point}`),
      ...census.taps.map((tap) => `tap ${tap}`),
      ...census.cgroups.map((dir) => `cgroup ${dir}`),
      ...census.stateRoot.map((name) => `moat state ${name}`),
      ...census.socketDirs.map((dir) => `moat sockets ${dir}`),
    ];
  }

  /** Waits (a pod's teardown is asynchronous in places: shims exit after Remove) until nothing is left, then asserts so. */
  async assertNothingLeft(hostPorts: number[] = []): Promise<void> {
    const deadline = Date.now() + 30_000;
    let left = await this.leftovers(hostPorts);
    while (left.length > 0 && Date.now() < deadline) {
      await sleep(250);
      left = await this.leftovers(hostPorts);
    }
    assert.deepEqual(left, [], `left behind:\n${left.join("\n")}\nmoatd.log:\n${this.workspace.daemonLog().slice(-4000)}`);
  }
}

/**
 * A test file's CRI node: started before its first test; every pod removed, containerd and
 * moatd stopped, the network and workspace removed after its last.
 */
export function criNodeForTestFile(): CriNode {
  const workspace = new TestWorkspace();
  const node = new CriNode(workspace);
  before(() => node.start());
  after(async () => {
    try {
      await node.stop();
    } finally {
      await workspace.stopDaemon();
      workspace.remove();
    }
  });
  return node;
}

/** The pause image's archive: /pause (test/support/pause.c) and nothing else. */
export function buildPauseArchive(dir: string): string {
  const tree = join(dir, "pause-tree");
  mkdirSync(tree, { recursive: true });
  if (!existsSync(PAUSE_BINARY)) throw new Error(`${PAUSE_BINARY} is missing: run make build`);
  copyFileSync(PAUSE_BINARY, join(tree, "pause"));
  chmodSync(join(tree, "pause"), 0o755);
  return buildImageArchive(dir, {
    name: PAUSE_IMAGE,
    tree,
    config: (layerDigest) => ({ architecture: "amd64", os: "linux", config: { Entrypoint: ["/pause"] }, rootfs: { type: "layers", diff_ids: [layerDigest] } }),
  });
}

/**
 * A TCP port on 127.0.0.1 that nothing listens on now, for CRI's stream server: containerd
 * 1.6 builds its URLs from the configured address, so port 0 would give URLs to port 0.
 */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === "object");
  await new Promise((resolve) => server.close(resolve));
  return address.port;
}

const ip = (...args: string[]) => execFileSync("ip", args, { encoding: "utf8" });

function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

function cgroupHierarchies(): string[] {
  if (listDir("/sys/fs/cgroup").includes("cgroup.controllers")) return ["/sys/fs/cgroup"];
  return listDir("/sys/fs/cgroup").map((name) => join("/sys/fs/cgroup", name));
}
