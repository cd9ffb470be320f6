// A sandbox's VM with its agent ready: the state directory, QEMU, the agent connection, and
// the undo of each, so that a failure at any step leaves nothing behind.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { CleanupStack } from "../../shared/cleanup.js";
import { MoatError } from "../../shared/errors.js";
import { tracer } from "../../shared/trace.js";
import { SharedFs as GuestSharedFs } from "../../shared/protocol/index.js";
import { Code, connectUnix } from "../../shared/ttrpc/index.js";
import { placeInHostCgroup, releaseHostCgroup, type HostCgroupTarget } from "../cgroup/index.js";
import { vmmLaunch, type Config } from "../config/index.js";
import { ensureTemplate, memorySizeClassMiB, restoreFromTemplate, templateKey, type TakeResult, type TemplateBase } from "../factory/index.js";
import type { FileBind } from "../oci/index.js";
import {
  chooseAccelerator,
  exitedError,
  hostTscKhz,
  killRunningQemu,
  makeExportMount,
  makeSocketDir,
  QemuVm,
  SOCKET_NAME_MAX_BYTES,
  SOCKET_PATH_MAX_BYTES,
  STATE_DIR_LINK,
  tailOf,
  trimLogs,
  vcpuReport,
  vmPaths,
  type Accelerator,
  type AcceleratorChoice,
  type GuestRootfs,
  type Share,
  type VmExit,
  type VmPaths,
  type VmSpec,
} from "../hypervisor/index.js";
import {
  attachCni,
  connectNetwork,
  detachCni,
  disconnectNetwork,
  DnsRelay,
  nicCount,
  pinNetns,
  pinnedNetns,
  planCni,
  PortForwardRelay,
  readNetwork,
  recordedPortForwardNetns,
  recordNetwork,
  removePortForward,
  sandboxNics,
  takePoolTaps,
  templateNics,
  unpinNetns,
  vmNetwork,
  type CniRequest,
} from "../network/index.js";
import { bindFiles, bindShares, removeMountedDir, removeStateDir, ShareServers } from "../storage/index.js";
import { AgentClient } from "./agent-client.js";
import { vmCeiling } from "./vm-size.js";

const trace = tracer("sandbox");

const QEMU_START_TIMEOUT_MS = 10_000;
/** Random bytes a VM restored from a template gets for its RNG (the agent credits them all). */
const CLONE_ENTROPY_BYTES = 64;
const SHUTDOWN_CALL_MS = 2_000;
/** The most NICs a warm pool VM has ([factory] vm_cache_networked's VMs have one). */
const POOL_MAX_NICS = 1;
const SHUTDOWN_GRACE_MS = 5_000;
/** A virtiofsd exits by itself once QEMU has gone; this long is allowed before it is killed. */
const SHARE_SERVER_GRACE_MS = 1_000;
const VALID_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** How a sandbox's VM started: taken from the warm pool, restored from a template (by key), or booted cold (and why). */
export type StartPath = { kind: "pool"; template: string } | { kind: "template"; template: string } | { kind: "cold"; reason: string };

export interface BootTimings {
  start: StartPath;
  /** QEMU spawned → QMP answered (with a template: and the saved state loaded). */
  qemuReadyMs: number;
  /** QEMU spawned → the agent answered its first Check. */
  agentReadyMs: number;
  /** The guest's own uptime when the agent first answered. */
  guestUptimeMs: number;
  /** What the sandbox tracer says of this start ("agent ready after … ms (from a template, …)"), for a client to show. */
  summary: string;
  /** The start's parts on the host, performance.now() values (StartTimeline.hostStep); none for an adopted sandbox. */
  steps: { name: string; startMs: number; endMs: number }[];
}

export interface SandboxVm {
  readonly id: string;
  readonly vm: QemuVm;
  /** The host processes serving its shares (virtiofsd; none for 9p). */
  readonly shareServers: ShareServers;
  /** How its shares reach the guest, as the agent's ShareMount.fs names it. */
  readonly shareFs: GuestSharedFs;
  readonly agent: AgentClient;
  readonly accelerator: AcceleratorChoice;
  readonly timings: BootTimings;
  /** Its VM carries the interfaces of a network namespace (one or more NICs). */
  readonly networked: boolean;
  /** Asks the guest to power off, stops QEMU and the share servers, removes the state directory. */
  shutdown(): Promise<VmExit>;
  /** Kills QEMU and the share servers at once; the state directory stays. */
  kill(): Promise<void>;
}

/** Where a sandbox's single-file binds are mounted: in its state directory, removed with it. */
export function sandboxFilesDir(stateRoot: string, id: string): string {
  return join(stateRoot, id, "files");
}

/**
 * Where a container's read-only binds are staged (share-dir.ts, bindReadOnly): outside the
 * export, one directory per container, so that the containers of one pod VM never share a
 * staging name.
 */
function stagingDir(sharesDir: string, containerId: string): string {
  return join(`${sharesDir}.staging`, containerId);
}

/**
 * Gives a running sandbox's guest the shares and single-file binds of one more container (a
 * pod member, docs/design.md "Pods"): bound into the VM's 9p export at <containerId>/<tag>,
 * which the guest sees at once, as the warm pool's VMs get their first container's. virtio-fs
 * exports are devices fixed when QEMU starts: a pod on virtio-fs takes no members. On failure,
 * what was bound is undone.
 */
export async function addContainerShares(sandbox: SandboxVm, containerId: string, shares: Share[], files: FileBind[], filesDir: string, where: string): Promise<void> {
  if (sandbox.shareFs !== GuestSharedFs.VIRTIO_9P) {
    throw new MoatError("MOAT_POD_SHARED_FS", `${where}: the pod's VM (sandbox ${sandbox.id}) shares over virtio-fs, whose exports are fixed when QEMU starts: a second container cannot get its root and volumes into it`, {
      hint: 'pods need [hypervisor.qemu] shared_fs = "virtio-9p" (the default)',
      status: Code.FAILED_PRECONDITION,
    });
  }
  const { sharesDir } = sandbox.vm.paths;
  try {
    // The files directory is one of the shares: it must exist before they are bound.
    if (files.length > 0) await mkdir(filesDir, { recursive: true, mode: 0o755 });
    await bindShares(sharesDir, containerId, shares, where);
    if (files.length > 0) {
      const filesTag = shares.find((share) => share.hostPath === filesDir)?.tag;
      // In the export itself, as startSandboxVm does: a mount under a 9p share is not shared.
      if (filesTag) await bindFiles(join(sharesDir, containerId, filesTag), files, stagingDir(sharesDir, containerId), where);
    }
  } catch (error) {
    await removeContainerShares(sandbox, containerId).catch((undo: unknown) => trace(sandbox.id, `undo ${containerId}'s shares: ${String(undo)}`));
    throw error;
  }
}

/** Takes one container's binds out of a running sandbox's export (the VM runs on: a pod's). */
export async function removeContainerShares(sandbox: SandboxVm, containerId: string): Promise<void> {
  const { sharesDir } = sandbox.vm.paths;
  await removeMountedDir(join(sharesDir, containerId));
  await removeMountedDir(stagingDir(sharesDir, containerId));
}

export function isSandboxId(name: string): boolean {
  return VALID_ID.test(name);
}

export function validateSandboxId(id: string): void {
  if (!isSandboxId(id)) {
    throw new MoatError("MOAT_SANDBOX_ID", `sandbox id "${id}": must be 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit`, {
      status: Code.INVALID_ARGUMENT,
    });
  }
}

/**
 * Fails clearly where a socket in `socketDir` would not fit in a unix socket address. Its
 * length depends only on [runtime] socket_root, which the configuration bounds; this catches
 * a Config made in code.
 */
function checkSocketRoom(socketDir: string, where: string): void {
  const longest = Buffer.byteLength(socketDir) + 1 + SOCKET_NAME_MAX_BYTES;
  if (longest > SOCKET_PATH_MAX_BYTES) {
    throw new MoatError("MOAT_STATE_PATH_LONG", `${where}: socket directory ${socketDir} is too long for its sockets (${longest} bytes, unix sockets allow ${SOCKET_PATH_MAX_BYTES})`, {
      hint: "use a shorter [runtime] socket_root",
      status: Code.INVALID_ARGUMENT,
    });
  }
}

/** The guest artifacts the configuration names, checked to exist. */
export function guestArtifacts(config: Config): { kernel: string; rootfs: GuestRootfs } {
  const hint = "build them with `make guest`, or set [hypervisor.qemu] kernel and image in the configuration";
  const where = config.source ?? "built-in configuration";
  if (!existsSync(config.qemu.kernel)) {
    throw new MoatError("MOAT_KERNEL_MISSING", `${where}: guest kernel ${config.qemu.kernel} does not exist`, { hint, status: Code.FAILED_PRECONDITION });
  }
  const rootfs: GuestRootfs = config.qemu.initrd ? { kind: "initrd", path: config.qemu.initrd } : { kind: "image", path: config.qemu.image ?? "" };
  if (!existsSync(rootfs.path)) {
    throw new MoatError("MOAT_IMAGE_MISSING", `${where}: guest ${rootfs.kind} ${rootfs.path || "(none set)"} does not exist`, { hint, status: Code.FAILED_PRECONDITION });
  }
  return { kernel: config.qemu.kernel, rootfs };
}

/** VMs restored ahead of time from a template: moatd's warm pool (factory/pool.ts). */
export interface WarmPool {
  /**
   * Moves a ready VM restored from template `template` into `stateDir` (the empty directory
   * the caller made for sandbox `sandboxId`), running; or says why there is none.
   */
  take(sandboxId: string, template: string, stateDir: string): Promise<TakeResult>;
}

export interface SandboxOptions {
  /** Host directories exported to the guest (over [hypervisor.qemu] shared_fs). */
  shares?: Share[];
  /** Single files bind-mounted into the sandbox's files directory (sandboxFilesDir, one of `shares`) before the VM starts. */
  files?: FileBind[];
  /** vCPUs and memory for this sandbox instead of the configured defaults. */
  vcpus?: number;
  memoryMiB?: number;
  /** The host cgroup QEMU and its share servers go to (the spec's linux.cgroupsPath); `log` hears the one line a fallback is worth. */
  hostCgroup?: { target: HostCgroupTarget; log: (line: string) => void };
  /** Tried first, when the sandbox may start from a template. */
  pool?: WarmPool;
  /**
   * Stops the start when it fires (moat run's Ctrl-C): checked between the steps and while
   * waiting for the agent; everything made so far is undone, then its reason is thrown. A
   * template being built for the sandbox is finished first (it serves the next sandbox).
   */
  abort?: AbortSignal;
  /**
   * The network namespace the VM is connected to (the spec's linux.namespaces network path),
   * by the tcfilter model (docs/networking.md); none: the guest has loopback only.
   */
  network?: string;
  /**
   * CNI networks to put the sandbox on (`moat run --network`): moat makes its network
   * namespace, runs the plugins, and connects the VM to it as to a caller's; not with `network`.
   */
  cni?: CniRequest;
  /**
   * A new network namespace the sandbox owns instead: the one process `pid` (the container's
   * stand-in) is in, pinned beside the state directory and unpinned at delete (network/own-netns.ts).
   */
  ownNetns?: { pid: number };
  /**
   * With `cni`: the namespace CNI fills is this process's (the container's stand-in, started in
   * a new one) rather than a new one, and CNI runs before `prepare`, so that the hooks given its
   * pid see CNI's interfaces (and may add their own).
   */
  cniNetnsOf?: number;
  /**
   * Runs once the state directory (and the owned namespace) exist, before the namespace is
   * read and before QEMU starts: the prestart and createRuntime hooks, which may put
   * interfaces in the namespace (Docker's libnetwork-setkey). A failure undoes the start.
   */
  prepare?: () => Promise<void>;
}

export async function startSandboxVm(config: Config, id: string, options: SandboxOptions = {}): Promise<SandboxVm> {
  validateSandboxId(id);
  const where = `sandbox ${id}`;
  guestArtifacts(config); // fails clearly, before anything is created, if the kernel or image is missing
  ShareServers.check(config.qemu.sharedFs, config.qemu.virtioFsDaemon, config.source ?? "built-in configuration");
  const accelerator = await chooseAccelerator();
  if (options.cni && options.network !== undefined) {
    throw new MoatError("MOAT_CNI_CONFIG", `${where}: CNI networks (--network) and a network namespace path in the spec (${options.network}) exclude each other`, { status: Code.INVALID_ARGUMENT });
  }
  // The CNI networks are found and checked before anything is made: a bad one leaves nothing.
  const cniPlan = options.cni ? await planCni(options.cni) : undefined;
  // A path the caller gave is read and checked before anything is made: a bad namespace
  // leaves nothing behind. Without hooks to run first, that is the whole of it.
  let network = options.network === undefined || options.prepare ? undefined : await readNetwork(options.network);
  const cleanup = new CleanupStack();
  try {
    const stateDir = join(config.runtime.stateRoot, id);
    const paths = vmPaths(stateDir, config.runtime.socketRoot);
    checkSocketRoom(paths.socketDir, where);
    const { abort } = options;
    await mkdir(config.runtime.stateRoot, { recursive: true, mode: 0o711 });
    try {
      await mkdir(stateDir, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") {
        throw new MoatError("MOAT_SANDBOX_EXISTS", `${where}: already exists (${stateDir})`, { status: Code.ALREADY_EXISTS });
      }
      throw new MoatError("MOAT_STATE_DIR", `${where}: cannot create ${stateDir}`, { cause: error, status: Code.INTERNAL });
    }
    cleanup.push(`remove ${stateDir}`, () => removeStateDir(paths));
    await makeSocketDir(paths, where); // removed by removeStateDir
    // Unwound after QEMU and the share servers are killed: a cgroup with processes in it stays busy.
    cleanup.push("release host cgroup", () => releaseHostCgroup(stateDir));
    let netns = options.ownNetns ? await pinNetns(stateDir, options.ownNetns.pid, where) : options.network;
    if (options.ownNetns) cleanup.push(`unpin ${netns}`, () => unpinNetns(stateDir));
    if (cniPlan) {
      // Recorded in the state directory step by step; undone after QEMU and the taps are gone.
      cleanup.push("detach from CNI networks", () => detachCni(stateDir));
      netns = await attachCni(stateDir, id, cniPlan, options.cniNetnsOf);
      abort?.throwIfAborted();
    }
    if (options.prepare) {
      await options.prepare();
      abort?.throwIfAborted();
    }
    // Read after the hooks, which may have put interfaces in it; an owned namespace left with
    // loopback only is a sandbox without network, as one without a namespace is.
    if (network === undefined && netns !== undefined) network = await readNetwork(netns);
    const coldReason = coldBootReason(config);
    // Pool VMs are clones of the template without NICs, or ([factory] vm_cache_networked) of
    // the template with one, whose throwaway tap moves into the sandbox's namespace; a sandbox
    // with more interfaces restores from the template with its NICs (docs/networking.md).
    const pool = coldReason === undefined && nicCount(network) <= POOL_MAX_NICS ? options.pool : undefined;
    if (coldReason === undefined && options.pool && !pool) {
      const count = nicCount(network);
      trace(id, `warm pool: not for a sandbox with ${count} interfaces (its VMs have ${POOL_MAX_NICS} NIC at most): it restores from the template with ${count} NICs`);
    }
    const base = await vmBase(config, { ...options, nics: nicCount(network) }, accelerator.accelerator);
    abort?.throwIfAborted();
    const shares = options.shares ?? [];
    // The template's NICs, or the interfaces' own MACs when booting cold; a template that cannot
    // be built makes startVm boot cold with these NICs, which is as good.
    const nics = sandboxNics(network, coldReason === undefined);
    const spec: VmSpec = { ...base, id, shares: config.qemu.sharedFs === "virtio-fs" ? shares : [], paths, nics, ...(network ? { network: vmNetwork(network) } : {}) };
    // A pool VM moves into the state directory, so it comes before anything is put there.
    const pooled = pool ? await fromPool(config, spec, base, pool) : undefined;
    if (pooled) cleanup.push(`kill QEMU ${pooled.vm.pid}`, () => pooled.vm.kill().then(() => undefined));
    if (network && network.plan.interfaces.length > 0) {
      // Recorded before QEMU makes the taps (or a pool VM's are moved in); undone after QEMU
      // is killed, or before a pool VM's. A namespace with no interface gets nothing.
      await recordNetwork(stateDir, network, nics);
      cleanup.push(`disconnect from ${network.netns}`, () => disconnectNetwork(stateDir));
      if (pooled) await takePoolTaps(pooled.vm.pid, network, nics, where);
    }
    abort?.throwIfAborted();
    const filesDir = sandboxFilesDir(config.runtime.stateRoot, id);
    const files = options.files ?? [];
    if (files.length > 0) await mkdir(filesDir);
    if (spec.sharedFs === "virtio-9p") {
      await mkdir(spec.paths.sharesDir, { recursive: true, mode: 0o755 });
      // A pool VM's is one already (its jail made it); every other is made one before its shares go in.
      if (!pooled) await makeExportMount(spec.paths.sharesDir, where);
      await bindShares(spec.paths.sharesDir, id, shares, where); // undone by removeStateDir
    }
    if (files.length > 0) {
      // Onto the files share where the guest reads it: 9p's bind of the files directory is
      // not recursive (a mount under a share is not shared), so the files are mounted in the
      // export itself; virtiofsd, started below, takes the files directory's mounts with it.
      const filesTag = shares.find((share) => share.hostPath === filesDir)?.tag;
      const target = spec.sharedFs === "virtio-9p" && filesTag ? join(spec.paths.sharesDir, id, filesTag) : filesDir;
      await bindFiles(target, files, stagingDir(spec.paths.sharesDir, id), where); // undone by removeStateDir
    }
    // virtiofsd listens before QEMU starts: QEMU connects to its socket while it starts.
    const shareServers = await ShareServers.start({
      sharedFs: spec.sharedFs,
      shares: spec.shares,
      virtiofsd: { binary: config.qemu.virtioFsDaemon, cache: config.qemu.virtioFsCache },
      stateDir,
      socketDir: paths.socketDir,
      where,
    });
    cleanup.push(`kill share servers ${shareServers.pids.join(" ")}`, () => shareServers.kill());
    const started = pooled ?? (await startVm(config, spec, base, coldReason));
    const { vm, start, spawnedAt } = started;
    if (!pooled) cleanup.push(`kill QEMU ${vm.pid}`, () => vm.kill().then(() => undefined));
    abort?.throwIfAborted();
    const networkRequest = network && network.plan.interfaces.length > 0 ? await connectNetwork(network, nics, where) : undefined;
    const qemuReadyAt = performance.now();
    const qemuReadyMs = qemuReadyAt - spawnedAt;
    if (options.hostCgroup) {
      const { target, log } = options.hostCgroup;
      await placeInHostCgroup(target, [vm.pid, ...shareServers.pids], { stateDir, stateRoot: config.runtime.stateRoot }, where, log);
    }

    // QEMU holds bytes for a virtio-serial port until the guest opens it, so the first Check
    // can be sent at once: it is answered as soon as the agent serves.
    const agent = new AgentClient(await connectUnix(spec.paths.agentSocket), id);
    cleanup.push("close agent connection", () => agent.close());
    // CRI PortForward dials localhost in a namespace given by path (a pod's, podman's, CNI's):
    // carried to the guest's loopback (docs/networking.md, "Port forwarding"). Started while
    // the guest boots: it needs the agent only once a connection comes.
    const ports = !options.ownNetns && network ? startPortForward(network.netns, paths, agent, where, cleanup) : undefined;
    const check = await Promise.race([
      agent.check(config.agent.dialTimeoutMs).catch(async (error: unknown) => {
        if (error instanceof MoatError && error.code === "MOAT_TTRPC_TIMEOUT") {
          const vcpus = await vcpuReport(vm.qmp, vm.pid);
          const consoleTail = await tailOf(spec.paths.consoleLog, 5);
          throw new MoatError(
            "MOAT_AGENT_TIMEOUT",
            `${where}: agent did not answer on virtio-serial port agent.0 within ${config.agent.dialTimeoutMs} ms (QEMU up after ${Math.round(qemuReadyMs)} ms, ${accelerator.accelerator}, ${describeStart(start)}); ${vcpus}; console: ${consoleTail || "(empty)"}`,
            { hint: "MOAT_TRACE=qemu,ttrpc; enable_debug = true in [hypervisor.qemu] shows the kernel's boot messages", status: Code.DEADLINE_EXCEEDED },
          );
        }
        throw error;
      }),
      vm.exited.then(async (exit) => {
        throw await exitedError(exit, spec.paths, where, `during boot, ${Math.round(performance.now() - spawnedAt)} ms after start`);
      }),
      ...(abort ? [aborted(abort)] : []),
    ]);
    await agent.version();
    const answeredAt = performance.now();
    const steps = [
      { name: `vm: ${start.kind === "cold" ? "QEMU booting" : start.kind === "pool" ? "pool VM taken, QEMU running" : "QEMU restoring"} to QMP ready`, startMs: spawnedAt, endMs: qemuReadyAt },
      { name: "vm: to the agent's Check and Version answered", startMs: qemuReadyAt, endMs: answeredAt },
    ];
    abort?.throwIfAborted();
    // A clone shares the template's RNG state, clock and hostname until it takes its own; a
    // pool VM takes them now, when a sandbox has it, not when it was restored.
    if (start.kind !== "cold") {
      await agent.takeIdentity(randomBytes(CLONE_ENTROPY_BYTES), id.slice(0, 64));
      steps.push({ name: "vm: TakeIdentity", startMs: answeredAt, endMs: performance.now() });
    }
    if (networkRequest) {
      const configuringAt = performance.now();
      await agent.configureNetwork(networkRequest);
      steps.push({ name: "vm: ConfigureNetwork", startMs: configuringAt, endMs: performance.now() });
      trace(id, `guest network configured in ${Math.round(performance.now() - configuringAt)} ms`);
    }
    // A namespace made for the sandbox is Docker's kind: its resolver is 127.0.0.11 in that
    // namespace, which the guest reaches through the relay (docs/networking.md).
    const dns = networkRequest && options.ownNetns && netns ? DnsRelay.start(netns, agent, where) : undefined;
    if (dns) cleanup.push("stop the DNS relay", () => dns.stop());
    const portForward = await ports;
    const agentReadyMs = performance.now() - spawnedAt;
    const summary = `agent ready after ${Math.round(agentReadyMs)} ms (${describeStart(start)}: ${spec.vcpus} vCPU${spec.vcpus === 1 ? "" : "s"}, ${spec.memoryMiB} MiB; guest uptime ${Math.round(check.uptimeSeconds * 1000)} ms)`;
    trace(id, summary);

    cleanup.release();
    return sandboxHandle(id, vm, shareServers, agent, accelerator, (network?.plan.interfaces.length ?? 0) > 0, { dns, ports: portForward }, { start, qemuReadyMs, agentReadyMs, guestUptimeMs: check.uptimeSeconds * 1000, summary, steps });
  } catch (error) {
    const failures = await cleanup.unwind();
    if (failures.length > 0) trace(id, `cleanup after failure: ${failures.join("; ")}`);
    throw error;
  }
}

/**
 * The VM a sandbox gets, short of its id, paths and shares: what a template is keyed by.
 * `accelerator` is probed unless the caller has done so already. Where templates serve the
 * sandbox, its memory is rounded up to its size class (memorySizeClassMiB).
 */
export async function vmBase(config: Config, options: Pick<SandboxOptions, "vcpus" | "memoryMiB"> & { nics?: number } = {}, accelerator?: Accelerator): Promise<TemplateBase> {
  const { kernel, rootfs } = guestArtifacts(config);
  const memoryMiB = options.memoryMiB ?? config.qemu.defaultMemoryMiB;
  return {
    machine: config.qemu.machineType,
    accelerator: accelerator ?? (await chooseAccelerator()).accelerator,
    vcpus: options.vcpus ?? config.qemu.defaultVcpus,
    // The class never takes a VM past its ceiling (default_maxmemory or the host's memory).
    memoryMiB: coldBootReason(config) === undefined ? Math.max(memoryMiB, Math.min(memorySizeClassMiB(memoryMiB), vmCeiling(config).memoryMiB)) : memoryMiB,
    kernelPath: kernel,
    rootfs,
    extraKernelParams: config.qemu.kernelParams,
    debug: config.qemu.enableDebug,
    sharedFs: config.qemu.sharedFs,
    // Only when set, so that the default's template keys stay what they were.
    ...(config.qemu.sharedFs === "virtio-9p" && config.qemu.virtfsServer === "proxy" ? { virtfsServer: "proxy" as const } : {}),
    hostTscKhz: await hostTscKhz(),
    // A template has one NIC per interface of the sandboxes it serves: a sandbox with no
    // network restores from one without any (docs/networking.md).
    ...(coldBootReason(config) === undefined && options.nics ? { nics: templateNics(options.nics) } : {}),
  };
}

/**
 * Starts the sandbox's QEMU: restored from the VM template of its size when it may be (building
 * it the first time), else booted. A template that cannot be built is not fatal: the sandbox
 * boots cold, and the reason is traced and reported in its timings.
 */
async function startVm(config: Config, spec: VmSpec, base: TemplateBase, coldReason: string | undefined): Promise<StartedVm> {
  const boot = async (reason: string): Promise<StartedVm> => {
    const spawnedAt = performance.now();
    const vm = await QemuVm.start({ ...vmmLaunch(config), qemuPath: config.qemu.path, spec, startTimeoutMs: QEMU_START_TIMEOUT_MS });
    return { vm, start: { kind: "cold", reason }, spawnedAt };
  };
  if (coldReason !== undefined) return boot(coldReason);
  // Building the template (the first time) is not part of this sandbox's start time.
  const template = await ensureTemplate(config, base).catch((error: unknown) => {
    const why = error instanceof Error ? error.message : String(error);
    trace(spec.id, `template: ${why}`);
    return `the template for ${base.vcpus} vCPUs, ${base.memoryMiB} MiB could not be built: ${why}`;
  });
  if (typeof template === "string") return boot(template);
  // A restore that fails is this sandbox's failure, as a boot's would be: no second try.
  const spawnedAt = performance.now();
  const vm = await restoreFromTemplate(config, template, spec);
  return { vm, start: { kind: "template", template: template.key }, spawnedAt };
}

interface StartedVm {
  vm: QemuVm;
  start: StartPath;
  spawnedAt: number;
}

/** A VM from the warm pool, moved into the sandbox's state directory; undefined (and why, traced) if there is none. */
async function fromPool(config: Config, spec: VmSpec, base: TemplateBase, pool: WarmPool): Promise<StartedVm | undefined> {
  const template = await templateKey(base, config.qemu.path);
  const spawnedAt = performance.now();
  const taken = await pool.take(spec.id, template, spec.paths.stateDir).catch((error: unknown) => ({ taken: false as const, reason: `cannot reach it: ${String(error)}` }));
  if (!taken.taken) {
    trace(spec.id, `warm pool: ${taken.reason}`);
    return undefined;
  }
  const vm = await QemuVm.adopt(spec.id, spec.paths, QEMU_START_TIMEOUT_MS).catch(async (error: unknown) => {
    // It is this sandbox's now, in its state directory: it must not outlive the failure.
    await killRunningQemu(spec.id, spec.paths);
    throw error;
  });
  if (!vm) throw new MoatError("MOAT_POOL_VM_GONE", `sandbox ${spec.id}: the VM taken from the warm pool is not running`, { status: Code.UNAVAILABLE });
  return { vm, start: { kind: "pool", template }, spawnedAt };
}

/** Rejects with the signal's reason when it fires. */
function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

/** The start path as the sandbox tracer says it. */
export function describeStart(start: StartPath): string {
  if (start.kind === "pool") return `from the warm pool, template ${start.template}`;
  if (start.kind === "template") return `from a template, ${start.template}`;
  return `cold boot: ${start.reason}`;
}

/** Why no sandbox can start from a template under `config`, or undefined if it can. */
function coldBootReason(config: Config): string | undefined {
  if (!config.factory.enableTemplate) return "templates are off ([factory] enable_template)";
  // A vhost-user device blocks QEMU's migration, and virtiofsd needs RAM shared, not private.
  if (config.qemu.sharedFs === "virtio-fs") return 'shared_fs = "virtio-fs" cannot be restored from a template (vhost-user blocks migration)';
  return undefined;
}

/**
 * Takes over a sandbox VM that a previous daemon started and left running: its QEMU (by pid
 * file), its share servers (by pid files) and its agent (a new session on the same socket).
 * Undefined if its QEMU is gone; then its share servers are killed too.
 */
export async function adoptSandboxVm(config: Config, id: string): Promise<SandboxVm | undefined> {
  validateSandboxId(id);
  const paths = vmPaths(join(config.runtime.stateRoot, id), config.runtime.socketRoot);
  const shareServers = await ShareServers.adopt(paths);
  const vm = await QemuVm.adopt(id, paths, QEMU_START_TIMEOUT_MS).catch(async (error: unknown) => {
    await shareServers.kill();
    throw error;
  });
  if (!vm) {
    await shareServers.kill();
    return undefined;
  }
  try {
    // A guest may have filled its logs while no moatd trimmed them; its agent's log port is
    // then held back by QEMU, and the agent with it, until there is room again.
    await trimLogs(paths);
    const agent = new AgentClient(await connectUnix(paths.agentSocket), id);
    await agent.check();
    await agent.version();
    const networked = existsSync(join(paths.stateDir, "network.json"));
    // The relay of a sandbox on a namespace of its own (Docker's kind) went with the old moatd;
    // the guest's side still answers on 127.0.0.11, so relaying starts again.
    const ownNetns = networked ? await pinnedNetns(paths.stateDir) : undefined;
    const dns = ownNetns ? DnsRelay.start(ownNetns, agent, `sandbox ${id}`) : undefined;
    // The port-forward relay went with the old moatd too: started again, its rules replaced.
    // A failure costs the sandbox its port-forward, not its adoption.
    const forwarded = await recordedPortForwardNetns(paths.stateDir);
    const ports = forwarded
      ? await PortForwardRelay.start(forwarded, paths.stateDir, paths.socketDir, agent, `sandbox ${id}`).catch((error: unknown) => void trace(id, `port-forward not restarted: ${String(error)}`))
      : undefined;
    return sandboxHandle(id, vm, shareServers, agent, await chooseAccelerator(), networked, { dns, ports }, { start: { kind: "cold", reason: "adopted" }, qemuReadyMs: 0, agentReadyMs: 0, guestUptimeMs: 0, summary: "adopted", steps: [] });
  } catch (error) {
    await vm.kill();
    await shareServers.kill();
    throw error;
  }
}

/**
 * True if <state root>/<id> is a sandbox's state directory: its socket directory links back to
 * it (made right after it). A directory that is not is another runtime's that shares the state
 * root (Docker's runc), or one whose sandbox never got further than its mkdir.
 */
export async function isSandboxStateDir(config: Config, id: string): Promise<boolean> {
  const paths = vmPaths(join(config.runtime.stateRoot, id), config.runtime.socketRoot);
  return (await readlink(join(paths.socketDir, STATE_DIR_LINK)).catch(() => undefined)) === paths.stateDir;
}

/**
 * Removes a sandbox that cannot be adopted: its QEMU, if one still runs (found by its pid file
 * and checked to be this sandbox's), and its share servers are killed without asking anything
 * of them, and its state directory is removed.
 */
export async function discardSandbox(config: Config, id: string): Promise<void> {
  validateSandboxId(id);
  const paths = vmPaths(join(config.runtime.stateRoot, id), config.runtime.socketRoot);
  await killRunningQemu(id, paths);
  await (await ShareServers.adopt(paths)).kill();
  await removePortForward(paths.stateDir);
  await disconnectNetwork(paths.stateDir);
  await detachCni(paths.stateDir);
  await unpinNetns(paths.stateDir);
  await releaseHostCgroup(paths.stateDir);
  await removeStateDir(paths);
}

/** The host-side relays a sandbox runs beside its VM, stopped with it. */
interface SandboxRelays {
  dns: DnsRelay | undefined;
  ports: PortForwardRelay | undefined;
}

/**
 * Starts the port-forward relay into `netns`, its undo on `cleanup` at once: a failure
 * elsewhere while it starts waits for it, then stops it and removes its rules.
 */
function startPortForward(netns: string, paths: VmPaths, agent: AgentClient, where: string, cleanup: CleanupStack): Promise<PortForwardRelay | undefined> {
  const starting = PortForwardRelay.start(netns, paths.stateDir, paths.socketDir, agent, where);
  starting.catch(() => undefined); // awaited by the caller; a failure elsewhere first must not leave it unhandled
  cleanup.push("remove the port-forward rules", () => removePortForward(paths.stateDir));
  cleanup.push("stop the port-forward relay", async () => (await starting.catch(() => undefined))?.stop());
  return starting;
}

function sandboxHandle(id: string, vm: QemuVm, shareServers: ShareServers, agent: AgentClient, accelerator: AcceleratorChoice, networked: boolean, { dns, ports }: SandboxRelays, timings: BootTimings): SandboxVm {
  return {
    id,
    networked,
    vm,
    shareServers,
    // What it was started with (an adopted sandbox's too), not what the configuration says now.
    shareFs: shareServers.sharedFs === "virtio-fs" ? GuestSharedFs.VIRTIO_FS : GuestSharedFs.VIRTIO_9P,
    agent,
    accelerator,
    timings,
    shutdown: async () => {
      dns?.stop();
      ports?.stop();
      await agent.shutdown(SHUTDOWN_CALL_MS).catch((error: unknown) => trace(id, `shutdown call: ${String(error)}`));
      const exit = await vm.stop(SHUTDOWN_GRACE_MS);
      agent.close();
      await shareServers.stop(SHARE_SERVER_GRACE_MS);
      await removePortForward(vm.paths.stateDir);
      await disconnectNetwork(vm.paths.stateDir);
      await detachCni(vm.paths.stateDir);
      await unpinNetns(vm.paths.stateDir);
      await releaseHostCgroup(vm.paths.stateDir);
      await removeStateDir(vm.paths);
      return exit;
    },
    kill: async () => {
      dns?.stop();
      ports?.stop();
      await vm.kill();
      await shareServers.kill();
    },
  };
}
