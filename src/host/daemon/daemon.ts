// moatd's core: every container it owns, each in its own sandbox VM, with the lifecycle the
// OCI runtime spec describes (created → running → stopped) and the relay to its stand-in.
// An illegal transition is an error that names the state.
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { settleWithin } from "../../shared/deadline.js";
import { MoatError } from "../../shared/errors.js";
import { parseJsonObject } from "../../shared/json-object.js";
import { tracer } from "../../shared/trace.js";
import { Code } from "../../shared/ttrpc/index.js";
import { joinHostCgroup, limitHostCgroup } from "../cgroup/index.js";
import type { Config } from "../config/index.js";
import { removeAbandonedBuilds, removePoolLeftovers, type VmPool } from "../factory/index.js";
import { checkProcessDocument, guestResources, guestSpec, hostHooks, loadBundle, memberNamespaces, podRole, runHooks, sandboxResources, runHooksWarning, specAnnotations, withoutNetworkNamespace, type Bundle, type GuestShare, type HookState, type OciHook } from "../oci/index.js";
import { configForAnnotations, loadConfig } from "../config/index.js";
import { CleanupStack } from "../../shared/cleanup.js";
import { addContainerShares, makeSocketDir, removeMountedDir, removeSocketDir, adoptSandboxVm, describeStart, discardSandbox, isSandboxId, isSandboxStateDir, removeContainerShares, runSpec, sandboxFilesDir, startSandboxVm, validateSandboxId, vmSizeFor, vmSizeForResources, StartTimeline, type CniRequest, type ForegroundRun, type GuestProcess, type SandboxVm, type AgentClient } from "../sandbox/index.js";
import { linkMember, MEMBERS_DIR, memberDirs, PodVm, removeMemberEntries, removeStaleMemberLinks, type ContainerDirs } from "./pod.js";
import { inSandbox } from "./sandbox-scope.js";
import type { ProcessStdio, StdioFactory } from "./process-stdio.js";
import { StdioRelay } from "./stdio-relay.js";

const trace = tracer("daemon");

export type ContainerStatus = "created" | "running" | "paused" | "stopped";

export interface ContainerState {
  id: string;
  status: ContainerStatus;
  /** The stand-in's pid once it said hello; 0 before and once stopped. */
  pid: number;
  bundle: string;
  created: string;
  exitStatus: number;
}

/**
 * The front end that created a container and what it keeps about it (the containerd Task
 * service: the task's bundle, stdio, exec'd processes, exits), saved with the container's
 * state so that a restarted daemon hands it back to that front end's adopter.
 */
export interface ContainerOwner {
  frontEnd: string;
  record: object;
}

/** A front end's part in re-adopting one of its containers: how to reopen each process's stdio. */
export interface AdoptedStdio {
  /** The container's own process. */
  init: StdioFactory;
  /** The exec'd processes the front end still wants relayed (those not known to have exited). */
  execs: Array<{ execId: string; stdio: StdioFactory }>;
}

/** Turns an owner's saved record back into its own state; throws when the record is unusable. */
export type Adopter = (adopted: { state: ContainerState; record: unknown; sandboxPid: number }) => Promise<AdoptedStdio>;

interface ManagedContainer {
  state: ContainerState;
  /** Adopted stopped whose exit no moatd sent yet: the stand-in's pid (from the saved state), owed the exit. */
  exitUnsentTo?: number;
  owner: ContainerOwner | undefined;
  /** The last write of container.json: writes go one after another, each replacing the file whole. */
  persisted: Promise<void>;
  /** Its VM (pod.sandbox). */
  sandbox: SandboxVm;
  /** The VM as moatd holds it, with the other containers of its pod, if any. */
  pod: PodVm;
  /** Where its state file and stand-in sockets are: its VM's directories, or a pod member's own (pod.ts). */
  dirs: ContainerDirs;
  relay: ProcessStdio;
  /** The stdio of exec'd processes still running, by exec id. */
  execs: Map<string, ProcessStdio>;
  /** Exec'd processes so far: numbers their sockets, whose names must stay short (SOCKET_NAME_MAX_BYTES). */
  execCount: number;
  /** Resolves once the process has exited and the stand-in was sent its status. */
  finished: Promise<void>;
  /** While a start call is being answered: the exit status waits for it (see start). */
  starting: Promise<void>;
  /**
   * A foreground run's (`moat run`): removed once its process has exited and the exit went to
   * its client, or once that client is gone (watchClient).
   */
  foreground: boolean;
  /** Its poststart and poststop hooks, run on the host after start and at delete. */
  hooks: LaterHooks | undefined;
  /** Where its start's time went, traced when its process has exited (`MOAT_TRACE=daemon`); none for an adopted one. */
  timeline?: StartTimeline;
}

/** The host hooks that run after create (saved with the state, for a restarted daemon). */
interface LaterHooks {
  ociVersion: string;
  annotations: Record<string, string>;
  poststart?: OciHook[];
  poststop?: OciHook[];
}

/** Told when the kernel's OOM killer killed a process of a container, before that process's exit. */
export type OomListener = (id: string) => void;

/** The container's state on disk, in its sandbox's state directory, for a restarted daemon. */
const STATE_FILE = "container.json";

/** container.json: the state, the owning front end's record if a front end created it, and whether it is a foreground run's. */
type SavedContainer = ContainerState & { owner?: ContainerOwner; foreground?: true; hooks?: LaterHooks };

/** Whether a process of that pid exists (signal 0 checks without sending). */
function processExists(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The annotations a pod's size comes from, by the linux.resources field vmSizeForResources names. */
const POD_SIZE_FIELDS: Record<string, string> = {
  "cpu.quota": "annotations io.kubernetes.cri.sandbox-cpu-quota/-cpu-period",
  "memory.limit": "annotation io.kubernetes.cri.sandbox-memory",
};

/** How long delete waits for a killed container's exit to reach its stand-in. */
const KILL_WAIT_MS = 10_000;
/**
 * How long a foreground run's client has to connect to its stdio socket after the container
 * started or was adopted: the C stand-in's reconnect window (moat-standin.c), which the CLI's
 * own reattach (cli/run.ts) matches. A client that has not come by then is gone.
 */
const FOREGROUND_ATTACH_MS = 30_000;

/** A sandbox being made by a request (create, run, boot): its undo is asked for by aborting it. */
interface Creating {
  abort: AbortController;
  /** Resolves once the request has finished, made or undone. */
  done: Promise<void>;
}

/** What moatd's Boot reports of a sandbox VM it started with no container and shut down. */
export interface BootReport {
  accelerator: string;
  acceleratorReason: string;
  guestKernel: string;
  guestCpus: number;
  guestMemoryMib: bigint;
  agentVersion: string;
  startKind: string;
  start: string;
  qemuReadyMs: number;
  agentReadyMs: number;
  guestUptimeMs: number;
}

export class Daemon {
  private readonly containers = new Map<string, ManagedContainer>();
  /** The sandbox VMs, by VM id (its first container's, a pod's sandbox container's). */
  private readonly vms = new Map<string, PodVm>();
  /** Ids being created, so that a second create of the same id fails at once, and a delete can stop one. */
  private readonly creating = new Map<string, Creating>();
  /**
   * Sandboxes found under the state root that are being adopted (or removed): requests for
   * them wait until that is done; the saved state answers `list` meanwhile.
   */
  private readonly adopting = new Map<string, { saved: SavedContainer | undefined; done: Promise<void> }>();
  /** Containers being removed: a delete of one waits for that removal. */
  private readonly removing = new Map<string, Promise<void>>();
  private readonly oomListeners = new Set<OomListener>();
  /** Front ends' adopters, by front end name (registered before adoptAll runs). */
  private readonly adopters = new Map<string, Adopter>();

  /**
   * `log` is moatd's log: lines an operator should see (adoption, fallbacks). `pool`: the warm
   * pool ([factory] vm_cache_number), if there is one; new sandboxes try it first.
   */
  constructor(
    private readonly config: Config,
    private readonly log: (line: string) => void,
    private readonly pool?: VmPool,
  ) {}

  get size(): number {
    return this.containers.size + this.creating.size + this.adopting.size + this.removing.size;
  }

  /** Resolves once the sandbox `id`, if one is being adopted, has been adopted or removed. */
  async adopted(id: string): Promise<void> {
    await this.adopting.get(id)?.done;
  }

  /**
   * Boots the container's VM and creates the container; returns where its stdio is reached
   * (the stand-in's socket unless `stdio` says otherwise). `sandboxConfig` sizes and builds this
   * one sandbox (a containerd task's runtime ConfigPath); the state root stays the daemon's.
   * `owner` is saved with the state from the start, so that a daemon restarted at any point
   * hands the container back to its front end.
   */
  async create(id: string, bundleDir: string, stdio?: StdioFactory, sandboxConfig?: Config, owner?: ContainerOwner, signal?: AbortSignal, standInPid = 0, cni?: CniRequest): Promise<string> {
    await this.checkNew(id);
    const bundle = loadBundle(bundleDir);
    for (const warning of bundle.warnings) this.log(`container ${id}: warning: ${warning}`);
    const filesDir = sandboxFilesDir(this.config.runtime.stateRoot, id);
    const where = `${bundle.dir}/config.json`;
    // A pod's sandbox container makes the pod's VM as any container makes its own; its other containers join that VM.
    const role = podRole(id, bundle.spec, where);
    if (role.kind === "member") return this.createMember(id, bundle, role.podId, stdio, owner, signal, standInPid);
    const guest = guestSpec({ containerId: id, spec: bundle.spec, rootfs: bundle.rootfs, overlay: false, where, filesDir });
    const { shares, files } = guest;
    const hostCgroup = guest.hostCgroup && { target: guest.hostCgroup, log: this.log };
    // Per-pod overrides by annotation, where the configuration allows them; any other is refused.
    const config = configForAnnotations(sandboxConfig ? this.withOwnRoots(sandboxConfig) : this.config, specAnnotations(bundle.spec), where);
    // The VM is sized for the container's linux.resources (or the container refused) before anything starts.
    // A pod's VM instead for the pod's workload, which containerd puts on its sandbox container (Kata's static sizing).
    const podResources = role.kind === "sandbox" ? sandboxResources(bundle.spec, where) : undefined;
    const { vcpus, memoryMiB } = podResources ? vmSizeForResources(config, podResources, where, undefined, (field) => `the pod's ${POD_SIZE_FIELDS[field] ?? field}`) : vmSizeFor(config, bundle.spec, where);
    const hooks = this.createHooks(id, bundle, where, standInPid);
    // A new network namespace without a path: the stand-in's, made for it, which hooks may fill.
    // On CNI networks (`moat run --network --detach`) the sandbox's namespace is CNI's instead.
    const { ownNetns, cniNetnsOf } = standInNetns(guest.newNetworkNamespace, standInPid, cni);
    const prepare = hooks.atCreate;
    return this.making(id, signal, async (abort) => {
      const timeline = new StartTimeline();
      const sandbox = await startSandboxVm(config, id, { shares: shares.map(({ tag, hostPath, readOnly }) => ({ tag, hostPath, readOnly })), files, hostCgroup, vcpus, memoryMiB, pool: this.pool, network: guest.networkNamespace, ownNetns, cni, cniNetnsOf, prepare, abort });
      timeline.bootSteps(sandbox.timings.steps);
      let pod: PodVm | undefined;
      try {
        // With interfaces in its own namespace, the container shares the guest's, which the agent set up as that one is.
        const spec = (ownNetns || cni) && sandbox.networked ? withoutNetworkNamespace(guest.spec) : guest.spec;
        await this.createInGuest(timeline, sandbox, id, spec, shares, { stdin: true, tmpfs: guest.tmpfs });
        abort.throwIfAborted();
        const state: ContainerState = { id, status: "created", pid: standInPid, bundle: bundle.dir, created: new Date().toISOString(), exitStatus: 0 };
        pod = this.newPod(sandbox);
        return (await this.attachNew(pod, vmDirs(sandbox), state, owner, stdio, false, hooks.later, timeline)).relay.path;
      } catch (error) {
        pod?.forget(); // its timer and its place in this.vms
        await sandbox.shutdown();
        throw error;
      }
    }).catch((error: unknown) => {
      // What failed without saying where (a write to a full state root: ENOSPC from a record
      // file) is named here as this container's create, with its cause.
      if (error instanceof MoatError) throw error;
      const full = (error as NodeJS.ErrnoException).code === "ENOSPC"; // a Node system error carries its errno name, if any
      throw new MoatError("MOAT_CREATE_FAILED", `container ${id}: create failed`, { cause: error, status: Code.INTERNAL, hint: full ? `the file system of the state root ${this.config.runtime.stateRoot} (or the socket root) is full` : undefined });
    });
  }

  /**
   * Creates a pod member (docs/design.md, "Pods") in the VM its pod's sandbox container made:
   * its root, volumes and single files bound into that VM's export at <id>/<tag>, its state
   * in a directory of its own under the pod's, and the namespaces its spec names by host path
   * (the pause container's) joined in the guest from the pod's sandbox container. A pod that
   * does not exist here, or whose VM is going, is MOAT_POD_NOT_FOUND; a failure undoes what
   * was made, and a VM that no container holds then goes.
   */
  private async createMember(id: string, bundle: Bundle, podId: string, stdio: StdioFactory | undefined, owner: ContainerOwner | undefined, signal: AbortSignal | undefined, standInPid: number): Promise<string> {
    const where = `${bundle.dir}/config.json`;
    // CRI runs a pod's containers after its sandbox; a sandbox still being made or adopted is waited for.
    await this.creating.get(podId)?.done;
    await this.adopted(podId);
    const pod = this.vms.get(podId);
    if (!pod || !pod.open) {
      throw new MoatError("MOAT_POD_NOT_FOUND", `container ${id}: ${where}: its pod's sandbox ${podId} does not exist here: never created, deleted, or its VM gone`, {
        status: Code.NOT_FOUND,
        hint: "create the pod's sandbox container first (the one whose annotations say type sandbox)",
      });
    }
    // A member's annotations override nothing (the VM is the pod's), but one outside the rule is refused all the same.
    configForAnnotations(this.config, specAnnotations(bundle.spec), where);
    const { spec, join: joined } = memberNamespaces(bundle.spec, where);
    const dirs = memberDirs(this.config.runtime.stateRoot, this.config.runtime.socketRoot, podId, id);
    const guest = guestSpec({ containerId: id, spec, rootfs: bundle.rootfs, overlay: false, where, filesDir: dirs.filesDir });
    // The VM is the pod's, sized by its sandbox; the member's limits are its cgroup's in the guest, checked against the ceiling all the same.
    vmSizeFor(this.config, bundle.spec, where);
    const hooks = this.createHooks(id, bundle, where, standInPid);
    const { sandbox } = pod;
    return this.making(id, signal, async (abort) => {
      const timeline = new StartTimeline();
      pod.hold(id, `container ${id}`);
      const cleanup = new CleanupStack();
      try {
        await mkdir(dirs.stateDir, { recursive: true, mode: 0o700 });
        cleanup.push(`remove ${dirs.stateDir}`, () => removeMountedDir(dirs.stateDir));
        await makeSocketDir(dirs, `container ${id}`);
        cleanup.push(`remove ${dirs.socketDir}`, () => removeSocketDir(dirs.socketDir));
        await linkMember(dirs, podId, id);
        cleanup.push(`remove ${dirs.link}`, () => removeMemberEntries(dirs));
        const shares = guest.shares.map(({ tag, hostPath, readOnly }) => ({ tag, hostPath, readOnly }));
        await addContainerShares(sandbox, id, shares, guest.files, dirs.filesDir, `container ${id}`);
        cleanup.push(`unbind ${id}'s shares`, () => removeContainerShares(sandbox, id));
        abort.throwIfAborted();
        await hooks.atCreate?.();
        const join = joined.length > 0 ? { containerId: podId, namespaces: joined } : undefined;
        timeline.hostStepSinceLast("member: state, sockets, shares bound into the pod's VM");
        await this.createInGuest(timeline, sandbox, id, guest.spec, guest.shares, { stdin: true, join, tmpfs: guest.tmpfs });
        cleanup.push(`remove ${id} in the guest`, () => sandbox.agent.removeContainer(id));
        abort.throwIfAborted();
        const state: ContainerState = { id, status: "created", pid: standInPid, bundle: bundle.dir, created: new Date().toISOString(), exitStatus: 0 };
        const container = await this.attachNew(pod, dirs, state, owner, stdio, false, hooks.later, timeline);
        cleanup.release();
        return container.relay.path;
      } catch (error) {
        const failures = await cleanup.unwind();
        if (failures.length > 0) this.log(`container ${id}: undoing its create: ${failures.join("; ")}`);
        // The VM stays for the pod's other containers; if none is left, it goes.
        await pod.release(id, async () => undefined);
        throw error;
      }
    });
  }

  /**
   * A foreground run (`moat run`): boots the container's VM, creates and starts the container
   * in one step, and answers with its stdio socket, where the client connects as its stand-in.
   * The container is removed once it has exited and its exit went to the client, or once the
   * client is gone (watchClient). `signal` (the client's connection) stops the start and
   * undoes it, as a delete of the id does.
   */
  async run(run: ForegroundRun, signal?: AbortSignal): Promise<{ stdioSocket: string; start: string }> {
    const { id } = run;
    await this.checkNew(id);
    const config = run.configPath ? this.withOwnRoots(loadConfig(run.configPath)) : this.config;
    const guest = runSpec(run, sandboxFilesDir(this.config.runtime.stateRoot, id));
    const { spec, shares, files } = guest;
    const hostCgroup = guest.hostCgroup && { target: guest.hostCgroup, log: this.log };
    // A bundle's VM is sized for its linux.resources, as a create's is (or the run refused);
    // --cpus and --memory set the size themselves.
    const size = guest.bundleDir ? vmSizeFor(config, spec, `${guest.bundleDir}/config.json`) : undefined;
    // A bundle's host hooks, given the pid of the process the client says stands for the
    // container (itself, or a holder in a new namespace), as a create's are.
    const standInPid = guest.bundleDir ? (run.standInPid ?? 0) : 0;
    const hooks = guest.bundleDir ? this.createHooks(id, loadBundle(guest.bundleDir), `${guest.bundleDir}/config.json`, standInPid) : {};
    const { ownNetns, cniNetnsOf } = standInNetns(guest.newNetworkNamespace, standInPid, run.cni);
    return this.making(id, signal, async (abort) => {
      const timeline = new StartTimeline();
      const sandbox = await startSandboxVm(config, id, {
        shares: shares.map(({ tag, hostPath, readOnly }) => ({ tag, hostPath, readOnly })),
        files,
        hostCgroup,
        vcpus: run.vcpus ?? size?.vcpus,
        memoryMiB: run.memoryMiB ?? size?.memoryMiB,
        pool: this.pool,
        network: guest.networkNamespace,
        cni: run.cni,
        ownNetns,
        cniNetnsOf,
        prepare: hooks.atCreate,
        abort,
      });
      let pod: PodVm | undefined;
      try {
        // Created and started in one crun call: a run starts what it creates. Output waits in
        // the agent until the relay reads it. With interfaces in its own namespace, the
        // container shares the guest's (on CNI networks runSpec dropped the entry already).
        const guestSpec = ownNetns && sandbox.networked ? withoutNetworkNamespace(spec) : spec;
        timeline.bootSteps(sandbox.timings.steps);
        await this.createInGuest(timeline, sandbox, id, guestSpec, shares, { stdin: run.stdin, start: true, tmpfs: guest.tmpfs });
        abort.throwIfAborted();
        const state: ContainerState = { id, status: "running", pid: standInPid, bundle: guest.bundleDir, created: new Date().toISOString(), exitStatus: 0 };
        pod = this.newPod(sandbox);
        const container = await this.attachNew(pod, vmDirs(sandbox), state, undefined, undefined, true, hooks.later, timeline);
        // After the process started, as start runs them; a failure is logged.
        await this.poststart(id, hooks.later, standInPid, guest.bundleDir);
        return { stdioSocket: container.relay.path, start: sandbox.timings.summary };
      } catch (error) {
        pod?.forget(); // its timer and its place in this.vms
        await sandbox.shutdown();
        throw error;
      }
    });
  }

  /**
   * Starts a sandbox VM with no container (`moat boot`, `moat factory init`), reports what its
   * guest says, and shuts it down. It is this daemon's while it runs, as any sandbox is.
   */
  async boot(id: string, configPath: string | undefined, signal?: AbortSignal): Promise<BootReport> {
    await this.checkNew(id);
    const config = configPath ? this.withOwnRoots(loadConfig(configPath)) : this.config;
    return this.making(id, signal, async (abort) => {
      const sandbox = await startSandboxVm(config, id, { abort });
      try {
        const details = await sandbox.agent.details();
        const version = await sandbox.agent.version();
        const { start, qemuReadyMs, agentReadyMs, guestUptimeMs } = sandbox.timings;
        return {
          accelerator: sandbox.accelerator.accelerator,
          acceleratorReason: sandbox.accelerator.reason,
          guestKernel: details.kernelRelease,
          guestCpus: details.onlineCpus,
          guestMemoryMib: details.memoryTotalBytes / 1024n / 1024n,
          agentVersion: version.agentVersion,
          startKind: start.kind,
          start: describeStart(start),
          qemuReadyMs,
          agentReadyMs,
          guestUptimeMs,
        };
      } finally {
        await sandbox.shutdown();
      }
    });
  }

  /**
   * A created container's host hooks: `atCreate` runs prestart then createRuntime (runc's
   * order; prestart is deprecated, still Docker 20.10's), `later` is what is saved for
   * poststart and poststop. They need a host process that stands for the container (its pid
   * in the hook state, its namespaces theirs): the runc-style stand-in, or a containerd task's
   * pid holder. A caller that gives none gets them logged as not run.
   */
  private createHooks(id: string, bundle: Bundle, where: string, standInPid: number): { atCreate?: () => Promise<void>; later?: LaterHooks } {
    const hooks = hostHooks(bundle.spec);
    const kinds = Object.keys(hooks);
    if (kinds.length === 0) return {};
    if (standInPid === 0) {
      this.log(`container ${id}: warning: ${where}: hooks ${kinds.join(", ")} are not run: no host process stands for the container on this path (docs/networking.md)`);
      return {};
    }
    const annotations = specAnnotations(bundle.spec);
    const state: HookState = { ociVersion: bundle.spec.ociVersion, id, status: "creating", pid: standInPid, bundle: bundle.dir, annotations };
    return {
      atCreate: async () => {
        await runHooks("prestart", hooks.prestart, state, `container ${id}`);
        await runHooks("createRuntime", hooks.createRuntime, state, `container ${id}`);
      },
      later: hooks.poststart || hooks.poststop ? { poststart: hooks.poststart, poststop: hooks.poststop, annotations, ociVersion: bundle.spec.ociVersion } : undefined,
    };
  }

  /** Runs a started container's poststart hooks, if any; a failure is logged, as runc logs it. */
  private async poststart(id: string, hooks: LaterHooks | undefined, pid: number, bundle: string): Promise<void> {
    if (hooks?.poststart) await runHooksWarning("poststart", hooks.poststart, { ociVersion: hooks.ociVersion, id, status: "running", pid, bundle, annotations: hooks.annotations }, `container ${id}`, (line) => this.log(line));
  }

  /** Fails unless `id` is a valid id that no container or sandbox here has (one being adopted is waited for). */
  private async checkNew(id: string): Promise<void> {
    validateSandboxId(id);
    await this.adopted(id);
    if (this.containers.has(id) || this.creating.has(id) || this.removing.has(id)) {
      throw new MoatError("MOAT_CONTAINER_EXISTS", `container ${id}: already exists`, { status: Code.ALREADY_EXISTS });
    }
  }

  /** A request's own configuration, with this daemon's state root and socket root: sandboxes live where their owner (and the next one) looks. */
  private withOwnRoots(config: Config): Config {
    return { ...config, runtime: { ...this.config.runtime } };
  }

  /**
   * Runs `make` as the request that makes sandbox `id`: a delete of the id, or `signal` (the
   * client's connection closing), aborts it, and `make` undoes what it made (startSandboxVm's
   * abort: QEMU killed, state directory removed).
   */
  private making<T>(id: string, signal: AbortSignal | undefined, make: (abort: AbortSignal) => Promise<T>): Promise<T> {
    // What it starts runs as the sandbox's (sandbox-scope.ts): a failure nobody handles is logged as its.
    return inSandbox(id, () => this.makingInSandbox(id, signal, make));
  }

  private async makingInSandbox<T>(id: string, signal: AbortSignal | undefined, make: (abort: AbortSignal) => Promise<T>): Promise<T> {
    const abort = new AbortController();
    const clientGone = () => abort.abort(new MoatError("MOAT_CONTAINER_CANCELLED", `container ${id}: its client went away before it was made; undone`, { status: Code.CANCELLED }));
    if (signal?.aborted) clientGone();
    signal?.addEventListener("abort", clientGone, { once: true });
    let finished!: () => void; // assigned by the executor below, which runs at once
    this.creating.set(id, { abort, done: new Promise((resolve) => (finished = resolve)) });
    try {
      return await make(abort.signal);
    } finally {
      signal?.removeEventListener("abort", clientGone);
      this.creating.delete(id);
      finished();
    }
  }

  /**
   * Takes over the containers a previous daemon left under the state root: their VMs kept
   * running (they are not the daemon's children), their state is on disk, and the agent
   * knows how each container is doing. A sandbox whose VM is gone, or whose create never
   * finished, is cleaned up: this daemon holds the state root's lock (daemon-lock.ts), so the
   * daemon that made it is gone, and only a daemon makes sandboxes.
   *
   * Resolves once every sandbox found is registered as being adopted, so that requests for it
   * wait for its adoption (adopted()); `done` resolves once every adoption has ended. The
   * sandboxes are adopted at once, not one after another: one unresponsive guest holds up
   * only requests for itself.
   */
  async adoptAll(): Promise<{ done: Promise<void> }> {
    const log = this.log;
    const stateRoot = this.config.runtime.stateRoot;
    await removeAbandonedBuilds(this.config, log);
    await removePoolLeftovers(this.config, log);
    await removeStaleMemberLinks(stateRoot, log);
    const entries = await readdir(stateRoot, { withFileTypes: true }).catch(() => []);
    // Only sandboxes are named like sandbox ids; the templates' ".templates" is not one.
    const ids = entries.filter((candidate) => candidate.isDirectory() && isSandboxId(candidate.name)).map((entry) => entry.name);
    const found = await Promise.all(ids.map(async (id) => ({ id, saved: await readSaved(join(stateRoot, id)), members: await readMembers(join(stateRoot, id)) })));
    // Docker gives every runtime it drives through containerd's runc shim the same --root
    // (<exec root>/runtime-runc/moby): a directory that is not moat's is runc's, left alone.
    const ours = (await Promise.all(found.map(async (entry) => (entry.saved || entry.members.length > 0 || (await isSandboxStateDir(this.config, entry.id)) ? [entry] : [])))).flat();
    const adoptions = ours.map(({ id, saved, members }) => {
      const done = this.adoptVm(id, saved, members).catch((error: unknown) => log(`container ${id}: adoption failed: ${String(error)}`));
      // Requests for any container of the VM (and for the VM's id: a member's create) wait for it.
      for (const [key, keySaved] of [[id, saved] as const, ...members.map((member) => [member.id, member.saved] as const)]) {
        this.adopting.set(key, { saved: keySaved, done });
        void done.finally(() => this.adopting.delete(key));
      }
      return done;
    });
    return { done: Promise.all(adoptions).then(() => undefined) };
  }

  /**
   * Adopts one VM and its containers: its own (`saved`, unless a pod's sandbox container was
   * deleted before its members) and its pod members'. A VM none of whose creates finished is
   * removed; a member whose create never finished is taken out of the VM.
   */
  private async adoptVm(id: string, saved: SavedContainer | undefined, members: Array<{ id: string; saved: SavedContainer | undefined }>): Promise<void> {
    const log = this.log;
    // A create that never finished may have left a VM that is still restoring or booting,
    // whose agent would not answer: it is not adopted, only removed.
    if (!saved && !members.some((member) => member.saved)) {
      log(`container ${id}: its create never finished; removing what is left`);
      await this.discardVm(id);
      return;
    }
    let sandbox: SandboxVm | undefined;
    try {
      sandbox = await adoptSandboxVm(this.config, id);
    } catch (error) {
      log(`container ${id}: cannot adopt: ${String(error)}; removing it`);
      await this.discardVm(id, saved);
      return;
    }
    if (!sandbox) {
      log(`container ${id}: its VM is gone; removing what is left`);
      await this.discardVm(id, saved);
      return;
    }
    const pod = this.newPod(sandbox);
    // Every container is counted first, so that one that fails to be adopted does not take the VM from the others.
    const all = [...(saved ? [{ id, saved, dirs: vmDirs(sandbox) }] : []), ...members.flatMap((member) => (member.saved ? [{ id: member.id, saved: member.saved, dirs: memberDirs(this.config.runtime.stateRoot, this.config.runtime.socketRoot, id, member.id) }] : []))];
    for (const entry of all) pod.hold(entry.id, `container ${entry.id}`);
    for (const member of members.filter((candidate) => !candidate.saved)) {
      log(`container ${member.id}: its create in pod ${id} never finished; removing what is left`);
      const dirs = memberDirs(this.config.runtime.stateRoot, this.config.runtime.socketRoot, id, member.id);
      await sandbox.agent.removeContainer(member.id).catch(() => undefined); // it may never have reached the guest
      await removeContainerShares(sandbox, member.id).catch((error: unknown) => log(`container ${member.id}: ${String(error)}`));
      await removeMountedDir(dirs.stateDir).catch((error: unknown) => log(`container ${member.id}: ${String(error)}`));
      await removeMemberEntries(dirs);
    }
    for (const entry of all) await this.adoptOne(pod, entry.dirs, entry.id, entry.saved);
  }

  private async adoptOne(pod: PodVm, dirs: ContainerDirs, id: string, saved: SavedContainer): Promise<void> {
    const log = this.log;
    const { sandbox } = pod;
    try {
      const guest = await sandbox.agent.stateContainer(id);
      const { owner, foreground, hooks, ...savedState } = saved;
      const state: ContainerState = { ...savedState, status: guest.status, exitStatus: guest.exitStatus, pid: guest.status === "stopped" ? 0 : saved.pid };
      const adopted = owner ? await this.adopterOf(owner.frontEnd, id)({ state: { ...state }, record: owner.record, sandboxPid: sandbox.vm.pid }) : undefined;
      const container = await this.attach(pod, dirs, state, owner, adopted?.init, foreground === true);
      container.hooks = hooks;
      if (guest.status === "stopped" && saved.status !== "stopped") container.exitUnsentTo = saved.pid;
      // Its state is on disk already; a write that fails now is the operator's to see, not a reason to discard a running container.
      await this.persist(container).catch((error: unknown) => log(String(error)));
      // The container is adopted by now: an exec whose stdio cannot be reopened is named in the log, not a reason to discard it.
      for (const exec of adopted?.execs ?? []) {
        await this.openExec(container, exec.execId, exec.stdio).then(
          (relay) => this.relayExec(container, exec.execId, relay),
          (error: unknown) => log(`container ${id}: exec ${exec.execId}: cannot reopen its stdio: ${String(error)}`),
        );
      }
      log(`container ${id}: adopted (${guest.status}${owner ? `, ${owner.frontEnd}` : ""}${foreground ? ", foreground run" : ""}${pod.id === id ? "" : `, in pod ${pod.id}`})`);
    } catch (error) {
      log(`container ${id}: cannot adopt: ${String(error)}; removing it`);
      const container = this.containers.get(id);
      if (container && container.sandbox === sandbox) {
        this.containers.delete(id);
        await container.relay.close().catch(() => undefined);
      }
      if (pod.size <= 1) {
        // The VM's only container: the VM is discarded without asking anything of its guest, as before pods.
        pod.forget();
        sandbox.agent.close();
        await this.discardVm(pod.id, saved); // kills its QEMU and share servers, removes its directory
        return;
      }
      await pod.release(id, () => this.leaveVm(id, sandbox, dirs));
      if (dirs.socketDir !== sandbox.vm.paths.socketDir) await removeMemberEntries(dirs);
    }
  }

  /** A front end's adopter is called for each container it owns when adoptAll finds one. */
  registerAdopter(frontEnd: string, adopter: Adopter): void {
    this.adopters.set(frontEnd, adopter);
  }

  private adopterOf(frontEnd: string, id: string): Adopter {
    const adopter = this.adopters.get(frontEnd);
    if (!adopter) throw new MoatError("MOAT_CONTAINER_STATE", `container ${id}: owned by front end "${frontEnd}", which this moatd does not serve`, { status: Code.FAILED_PRECONDITION });
    return adopter;
  }

  /** Replaces what the owning front end keeps about a container, on disk too; resolves once written. */
  async setOwnerRecord(id: string, record: object): Promise<void> {
    const container = this.get(id);
    if (!container.owner) throw new MoatError("MOAT_CONTAINER_STATE", `container ${id}: has no owning front end to keep a record for`, { status: Code.FAILED_PRECONDITION });
    container.owner = { ...container.owner, record };
    await this.persist(container);
  }

  /** Calls `listener` with a container's id each time its cgroup in the guest sees an OOM kill. */
  onOom(listener: OomListener): void {
    this.oomListeners.add(listener);
  }

  /**
   * Makes a new container this daemon's (attach) and saves its state, which is what makes a
   * restarted daemon adopt it: a write that fails undoes the attach and fails the request.
   */
  private async attachNew(pod: PodVm, dirs: ContainerDirs, state: ContainerState, owner: ContainerOwner | undefined, stdio: StdioFactory | undefined, foreground: boolean, hooks?: LaterHooks, timeline?: StartTimeline): Promise<ManagedContainer> {
    const container = await this.attach(pod, dirs, state, owner, stdio, foreground, timeline);
    container.hooks = hooks;
    try {
      await this.persist(container);
    } catch (error) {
      this.containers.delete(state.id);
      await container.relay.close();
      throw error;
    }
    return container;
  }

  /**
   * Makes a container this daemon's: its stand-in's socket, its output and exit relayed. What it
   * starts runs as the sandbox's (sandbox-scope.ts): a failure nobody handles is logged as its.
   */
  private attach(pod: PodVm, dirs: ContainerDirs, state: ContainerState, owner: ContainerOwner | undefined, stdio: StdioFactory | undefined, foreground: boolean, timeline?: StartTimeline): Promise<ManagedContainer> {
    return inSandbox(pod.id, () => this.attachInSandbox(pod, dirs, state, owner, stdio, foreground, timeline));
  }

  private async attachInSandbox(pod: PodVm, dirs: ContainerDirs, state: ContainerState, owner: ContainerOwner | undefined, stdio: StdioFactory | undefined, foreground: boolean, timeline: StartTimeline | undefined): Promise<ManagedContainer> {
    const { sandbox } = pod;
    let standInRelay: StdioRelay | undefined;
    const standInStdio: StdioFactory = (input, where) => standIn(dirs, "stdio.sock")(input, where).then((relay) => (standInRelay = relay));
    const relay = await this.openStdio(sandbox, state.id, "", stdio ?? standInStdio, (pid) => {
      state.pid = state.status === "stopped" ? 0 : pid;
    });
    const container: ManagedContainer = { state, owner, persisted: Promise.resolve(), sandbox, pod, dirs, relay, execs: new Map(), execCount: 0, finished: Promise.resolve(), starting: Promise.resolve(), foreground, hooks: undefined, timeline };
    container.finished = this.relayProcess(container, "", relay, async (exitStatus) => {
      container.state.status = "stopped";
      container.state.exitStatus = exitStatus;
      container.state.pid = 0;
      // No request waits for an exit: a write that fails is the operator's to see.
      await this.persist(container).catch((error: unknown) => this.log(String(error)));
    });
    this.containers.set(state.id, container);
    // Counted in its VM (a member was counted before it was made); the VM is known once it has one.
    pod.hold(state.id, `container ${state.id}`);
    this.vms.set(pod.id, pod);
    if (foreground && standInRelay) this.watchClient(container, standInRelay);
    else if (standInRelay) this.watchStandIn(container, standInRelay);
    return container;
  }

  /**
   * A foreground run's client is the stand-in on its stdio socket (`moat run` is one). When it
   * goes (its connection closes, or it has not connected within FOREGROUND_ATTACH_MS), its
   * input ends and its output is dropped; the container runs on, as docker's and podman's do
   * when their client is killed, is listed, can be killed or deleted, and is removed when it
   * exits. Either way the container is removed once its exit went out.
   */
  private watchClient(container: ManagedContainer, relay: StdioRelay): void {
    const { id } = container.state;
    const timer = setTimeout(() => relay.everConnected || relay.abandon(), FOREGROUND_ATTACH_MS);
    timer.unref();
    void relay.gone.then(() => {
      clearTimeout(timer);
      if (this.containers.get(id) !== container || container.state.status === "stopped") return;
      this.log(`container ${id}: its foreground client is gone; the container runs on and is removed when it exits`);
      relay.abandon();
      void container.sandbox.agent.closeStdin(id, "").catch(() => undefined);
    });
    void container.finished.then(() => this.remove(container)).catch((error: unknown) => this.log(`container ${id}: cannot remove it after its exit: ${String(error)}`));
  }

  /**
   * The stand-in of `moat create` is the container to its caller (conmon waits for its pid,
   * runc's callers signal it): when it goes before the container's exit reached it (SIGKILLed,
   * say), its caller has seen the container end, so the container is killed too, as runc's
   * would be with its init, rather than running on unseen in its VM until someone deletes it.
   * It then shows as stopped (137) and is deleted as any other.
   */
  private watchStandIn(container: ManagedContainer, relay: StdioRelay): void {
    const { id } = container.state;
    void relay.gone.then(async () => {
      if (this.containers.get(id) !== container || container.state.status === "stopped") return;
      this.log(`container ${id}: its stand-in is gone before the container's exit: the container is killed`);
      await container.sandbox.agent.signalProcess(id, "", 9, true).catch((error: unknown) => trace(id, `kill after the stand-in went: ${String(error)}`));
    });
  }

  /** Removes a container and its sandbox VM; a second call waits for the first. */
  private remove(container: ManagedContainer): Promise<void> {
    const { id } = container.state;
    const running = this.removing.get(id);
    if (running) return running;
    if (this.containers.get(id) !== container) return Promise.resolve();
    this.containers.delete(id);
    const removal = (async () => {
      await container.relay.close();
      for (const relay of container.execs.values()) await relay.close();
      // The last container of its VM takes the VM along (not RemoveContainer first: the
      // shutdown syncs the shares); one that leaves others in it goes alone.
      await container.pod.release(id, () => this.leaveVm(id, container.sandbox, container.dirs));
      // A member's own socket directory and entry are not under its VM's state directory: they go here when its VM went with it.
      if (container.dirs.socketDir !== container.sandbox.vm.paths.socketDir) await removeMemberEntries(container.dirs);
      // After the container is deleted, before the delete returns; a failure is logged.
      const hooks = container.hooks;
      if (hooks?.poststop) await runHooksWarning("poststop", hooks.poststop, { ociVersion: hooks.ociVersion, id, status: "stopped", pid: 0, bundle: container.state.bundle, annotations: hooks.annotations }, `container ${id}`, (line) => this.log(line));
    })().finally(() => this.removing.delete(id));
    this.removing.set(id, removal);
    return removal;
  }

  /**
   * Takes a container out of a VM that runs on (a pod's other containers are in it): the
   * guest's container, its binds in the VM's export, its state; a failure is logged, the VM
   * stays for the others.
   */
  private async leaveVm(id: string, sandbox: SandboxVm, dirs: ContainerDirs): Promise<void> {
    const steps: Array<[string, () => Promise<void>]> = [
      ["remove it in the guest", () => sandbox.agent.removeContainer(id)],
      ["unbind its shares", () => removeContainerShares(sandbox, id)],
      // A member's directories are its own; the pod's sandbox container's are the VM's, where only its state file and files are its.
      ...(dirs.stateDir === sandbox.vm.paths.stateDir
        ? ([
            ["remove its state file", () => rm(join(dirs.stateDir, STATE_FILE), { force: true })],
            ["remove its files directory", () => removeMountedDir(sandboxFilesDir(this.config.runtime.stateRoot, id))],
          ] as Array<[string, () => Promise<void>]>) // a tuple list, as declared
        : ([
            ["remove its socket directory", () => removeSocketDir(dirs.socketDir)],
            ["remove its state directory", () => removeMountedDir(dirs.stateDir)],
          ] as Array<[string, () => Promise<void>]>)), // a tuple list, as declared
    ];
    for (const [what, step] of steps) await step().catch((error: unknown) => this.log(`container ${id}: leaving sandbox ${sandbox.id}: cannot ${what}: ${String(error)}`));
  }

  /** Removes a VM that cannot be adopted (discardSandbox), with its pod members' socket directories, which are not under its state directory. */
  private async discardVm(id: string, saved?: SavedContainer): Promise<void> {
    const members = await readMembers(join(this.config.runtime.stateRoot, id));
    await discardSandbox(this.config, id);
    for (const member of members) await removeMemberEntries(memberDirs(this.config.runtime.stateRoot, this.config.runtime.socketRoot, id, member.id));
    // Its own container's poststop hooks run, as at a delete (nerdctl's undoes its CNI network there), so that nothing they made is left.
    const hooks = saved?.hooks;
    if (saved && hooks?.poststop) await runHooksWarning("poststop", hooks.poststop, { ociVersion: hooks.ociVersion, id, status: "stopped", pid: 0, bundle: saved.bundle, annotations: hooks.annotations }, `container ${id}`, (line) => this.log(line));
  }

  /** A VM as this daemon holds it; known (this.vms) once a container is attached to it. */
  private newPod(sandbox: SandboxVm): PodVm {
    const pod: PodVm = new PodVm(
      sandbox,
      (id) => this.reportOom(sandbox, id),
      () => {
        if (this.vms.get(sandbox.id) === pod) this.vms.delete(sandbox.id);
      },
    );
    return pod;
  }

  /** An OOM event from a sandbox's guest: only a container of that sandbox is believed. */
  private reportOom(sandbox: SandboxVm, id: string): void {
    if (this.containers.get(id)?.sandbox !== sandbox) return trace(sandbox.id, `OOM event for ${id}, which is not a container of this sandbox: ignored`);
    for (const listener of this.oomListeners) listener(id);
  }

  /** Runs another process in a running container; returns where its stdio is reached. */
  async exec(id: string, execId: string, processJson: string, stdio?: StdioFactory): Promise<string> {
    const container = await this.ready(id);
    if (container.state.status !== "running") throw this.illegal(container, "exec in");
    validateSandboxId(execId); // the same rule for exec ids
    if (container.execs.has(execId)) {
      throw new MoatError("MOAT_CONTAINER_EXISTS", `container ${id}: exec ${execId}: already exists`, { status: Code.ALREADY_EXISTS });
    }
    const process = parseJsonObject(processJson, `container ${id}: exec ${execId}: process`, "MOAT_CONTAINER_SPEC");
    // config.json's process rules, before the guest is asked.
    for (const warning of checkProcessDocument(process, `container ${id}: exec ${execId}: process`)) this.log(`container ${id}: warning: ${warning}`);
    const relay = await this.openExec(container, execId, stdio ?? standIn(container.dirs, `exec-${++container.execCount}.sock`));
    try {
      await container.sandbox.agent.execProcess(id, execId, process, true);
    } catch (error) {
      container.execs.delete(execId);
      await relay.close();
      throw error;
    }
    this.relayExec(container, execId, relay);
    return relay.path;
  }

  /** An exec'd process's stdio, counted among the container's execs until relayExec is done with it. */
  private async openExec(container: ManagedContainer, execId: string, stdio: StdioFactory): Promise<ProcessStdio> {
    const relay = await this.openStdio(container.sandbox, container.state.id, execId, stdio, () => undefined);
    container.execs.set(execId, relay);
    return relay;
  }

  /** Relays an exec'd process (just started, or adopted) until it has exited. */
  private relayExec(container: ManagedContainer, execId: string, relay: ProcessStdio): void {
    inSandbox(container.sandbox.id, () => {
      void this.relayProcess(container, execId, relay, () => undefined).finally(async () => {
        container.execs.delete(execId);
        await relay.close();
      });
    });
  }

  /** The stdio of one process, its input wired to the agent: the container's own when execId is "". */
  private openStdio(sandbox: SandboxVm, id: string, execId: string, stdio: StdioFactory, hello: (pid: number) => void): Promise<ProcessStdio> {
    return stdio(
      {
        hello,
        stdin: (data) => sandbox.agent.writeStdin(id, execId, data),
        stdinEnd: () => sandbox.agent.closeStdin(id, execId),
        signal: (number) => void sandbox.agent.signalProcess(id, execId, number).catch(() => undefined),
        // Awaited, so that input sent after a resize reaches the process after it. A resize of a
        // process without a terminal, or of one that has exited, changes nothing.
        resize: (rows, columns) => sandbox.agent.resizePty(id, execId, rows, columns).catch((error: unknown) => trace(id, `resize: ${String(error)}`)),
      },
      `container ${id}${execId ? ` exec ${execId}` : ""}`,
    );
  }

  /** The named cgroup v2 files of the container in its guest (cpu.stat, cgroup.procs, …). */
  async cgroupFiles(id: string, names: string[]): Promise<Record<string, string>> {
    return (await this.ready(id)).sandbox.agent.cgroupFiles(id, names);
  }

  /** The host process that stands for the container's sandbox: its QEMU. */
  sandboxPid(id: string): number {
    return this.get(id).sandbox.vm.pid;
  }

  async start(id: string): Promise<void> {
    const container = await this.ready(id);
    if (container.state.status !== "created") throw this.illegal(container, "start");
    // A process that exits at once must not have its status reach the stand-in (whose exit
    // its caller takes as the container's) before `start` has answered: podman's exit
    // handling races with its own start when it does (libpod "no such exit code"). runc's
    // start returns within a few ms of the exec, so its callers never see that order.
    let answered!: () => void; // assigned by the executor below, which runs at once
    container.starting = new Promise((resolve) => (answered = resolve));
    try {
      const { timeline } = container;
      if (timeline) timeline.guestSteps("StartContainer", await timeline.timed("StartContainer answered", () => container.sandbox.agent.startContainer(id)));
      else await container.sandbox.agent.startContainer(id);
      if (container.state.status === "created") container.state.status = "running";
      await this.persist(container);
      // After the process started, before start returns, as runc runs them; a failure is logged.
      await this.poststart(id, container.hooks, container.state.pid, container.state.bundle);
    } finally {
      setImmediate(answered); // after the ttrpc response is written
    }
  }

  /** Freezes a running container (`pause`) or thaws a paused one (`resume`). */
  async freeze(id: string, action: "pause" | "resume"): Promise<void> {
    const container = await this.ready(id);
    const [from, to]: [ContainerStatus, ContainerStatus] = action === "pause" ? ["running", "paused"] : ["paused", "running"];
    if (container.state.status !== from) throw this.illegal(container, action);
    await (action === "pause" ? container.sandbox.agent.pauseContainer(id) : container.sandbox.agent.resumeContainer(id));
    if (container.state.status === from) container.state.status = to;
    await this.persist(container);
  }

  state(id: string): ContainerState {
    return { ...this.get(id).state };
  }

  /** Every container; one still being adopted as its saved state says (its guest has not been asked yet). */
  list(): ContainerState[] {
    const adopting = [...this.adopting.values()].flatMap(({ saved }) => (saved ? [stateOf(saved)] : []));
    return [...[...this.containers.values()].map((container) => ({ ...container.state })), ...adopting];
  }

  /** The guest pids of a running or paused container's processes. */
  async ps(id: string): Promise<GuestProcess[]> {
    const container = await this.ready(id);
    if (container.state.status !== "running" && container.state.status !== "paused") throw this.illegal(container, "list the processes of");
    return container.sandbox.agent.listProcesses(id);
  }

  /**
   * Changes a created, running or paused container's Linux resources in the guest, and the
   * CPU limits among them on its sandbox's host cgroup too (src/host/cgroup/sandbox-cgroup.ts
   * says why only those).
   */
  async update(id: string, resourcesJson: string): Promise<void> {
    const container = await this.ready(id);
    if (container.state.status === "stopped") throw this.illegal(container, "update");
    const resources = guestResources(parseJsonObject(resourcesJson, `container ${id}: update: resources`, "MOAT_CONTAINER_SPEC"));
    // A pod's VM is sized once, for the pod (static sizing): a container's new limits must fit in it.
    const inPod = container.pod.size > 1 || container.dirs.stateDir !== container.sandbox.vm.paths.stateDir;
    if (inPod) await checkFitsVm(container, resources);
    await container.sandbox.agent.updateContainer(id, resources);
    // The VM's host cgroup is the whole pod's: one container's limits are its own cgroup's in the guest only.
    if (!inPod) await limitHostCgroup(container.sandbox.vm.paths.stateDir, container.sandbox.vm.pid, resources, `container ${id}`, this.log);
  }

  /** Puts a front end's host process for the container (a containerd task's pid) into its sandbox's host cgroup, if it has one. */
  async joinHostCgroup(id: string, pid: number): Promise<void> {
    const container = await this.ready(id);
    await joinHostCgroup(container.sandbox.vm.paths.stateDir, container.sandbox.vm.pid, pid, `container ${id}`);
  }

  /** Signals the container's process, or with `execId` one exec'd process. */
  async kill(id: string, signal: number, all: boolean, execId = ""): Promise<void> {
    const container = await this.ready(id);
    if (container.state.status === "stopped") throw this.illegal(container, "kill");
    await container.sandbox.agent.signalProcess(id, execId, signal, all);
  }

  /**
   * Deletes a container and its sandbox VM. A container still being made is stopped and undone
   * (moat run's Ctrl-C); one being removed is waited for.
   */
  async delete(id: string, force: boolean): Promise<void> {
    const creating = this.creating.get(id);
    if (creating) {
      creating.abort.abort(new MoatError("MOAT_CONTAINER_CANCELLED", `container ${id}: deleted before it was made; undone`, { status: Code.CANCELLED }));
      await creating.done;
      if (!this.containers.has(id)) return; // undone; else it was made before the abort was seen, and is deleted below
    }
    const removal = this.removing.get(id);
    if (removal) return removal;
    const container = await this.ready(id);
    const { status } = container.state;
    if ((status === "running" || status === "paused") && !force) throw this.illegal(container, "delete");
    if (status === "paused") await container.sandbox.agent.resumeContainer(id).catch(() => undefined); // a frozen process cannot die of SIGKILL until thawed
    if (status === "stopped" && container.exitUnsentTo !== undefined && processExists(container.exitUnsentTo)) {
      // It stopped while no moatd ran (killed within a delete, say): its stand-in, still
      // connecting again, is owed the exit; removing the relay now would leave it saying 255.
      await settleWithin(container.finished, KILL_WAIT_MS);
    }
    if (status !== "stopped") {
      // A created container is deleted as runc deletes one: killed first. Its stand-in still
      // gets the exit status (137) before the relay closes.
      await container.sandbox.agent.signalProcess(id, "", 9, true).catch(() => undefined);
      if ((await settleWithin(container.finished.then(() => true), KILL_WAIT_MS)) === undefined) {
        // A guest that no longer answers (QEMU stopped, say) never reports the kill; its VM is
        // destroyed next, which ends the process: its caller is told 137, as for a kill, not
        // left to find its stand-in's connection gone (255).
        this.log(`container ${id}: the guest did not report the kill within ${KILL_WAIT_MS} ms; its VM is destroyed, its exit reported as 137`);
        container.state.status = "stopped";
        container.state.exitStatus = 137;
        container.state.pid = 0;
        await settleWithin(container.relay.sendExit(137).catch(() => undefined), KILL_WAIT_MS);
      }
    }
    await this.remove(container);
  }

  /**
   * Relays a process's output to its stand-in and, once it has exited and its output is out,
   * its exit status; `exited` records the status first. Resolves when the status went out.
   */
  private relayProcess(container: ManagedContainer, execId: string, relay: ProcessStdio, exited: (exitStatus: number) => Promise<void> | void): Promise<void> {
    const { id } = container.state;
    const { agent } = container.sandbox;
    relay.processReady?.();
    const relayOutput = async (stream: "stdout" | "stderr") => {
      for (;;) {
        const { data, eof } = await agent.readOutput(id, execId, stream);
        if (data.length > 0) await relay.writeOutput(stream, Buffer.from(data));
        if (eof) return;
      }
    };
    // A read that fails (the guest went away) ends the relay; the exit path below reports it.
    const outputs = Promise.all([relayOutput("stdout"), relayOutput("stderr")]).catch((error: unknown) => trace(id, `output relay: ${String(error)}`));
    return agent
      .waitProcess(id, execId)
      .then(async (exit) => {
        const exitAt = performance.now();
        // An OOM kill that ended the process is reported before its exit.
        await container.pod.oom.caughtUp(exit.oomSequence);
        await exited(exit.exitStatus);
        await outputs;
        await container.starting;
        // After the start's answer, which a process that exits at once can come before.
        if (!execId) this.traceTimeline(container, exit.steps, exitAt);
        await relay.sendExit(exit.exitStatus);
      })
      .catch(async (error: unknown) => {
        // The guest went away (QEMU killed, VM crashed): the process is gone, killed. Or the
        // guest answered outside the agent API's bounds (a negative exit status, say): it is not
        // believed, and the process counts as killed too; that goes to moatd's log.
        const what = `${execId ? `exec ${execId}` : "the container's process"}: ${String(error)}`;
        if (error instanceof MoatError && error.code === "MOAT_AGENT_PROTOCOL") this.log(`container ${id}: ${what}; reported as killed (137)`);
        else trace(id, `lost ${what}`);
        await exited(137);
        await relay.sendExit(137).catch(() => undefined);
      });
  }

  /**
   * Creates the container in its VM's guest (agent CreateContainer), its time and the agent's
   * steps on the container's start timeline.
   */
  private async createInGuest(timeline: StartTimeline, sandbox: SandboxVm, id: string, spec: object, shares: GuestShare[], options: Parameters<AgentClient["createContainer"]>[3]): Promise<void> {
    const mounts = shares.map(({ tag, readOnly, overlay, live }) => ({ tag, readOnly, overlay, live, fs: sandbox.shareFs }));
    const { steps } = await timeline.timed("CreateContainer answered", () => sandbox.agent.createContainer(id, spec, mounts, options));
    timeline.guestSteps("CreateContainer", steps);
  }

  /** Traces where the container's start went, once its process has exited (the wait and the agent's last step added). */
  private traceTimeline(container: ManagedContainer, waitSteps: Parameters<StartTimeline["guestSteps"]>[1], exitAt: number): void {
    const { timeline } = container;
    if (!timeline || !trace.enabled) return;
    timeline.hostStepSinceLast("WaitProcess answered", exitAt);
    timeline.guestSteps("WaitProcess", waitSteps);
    trace(container.state.id, `timing ${timeline.toJson()}`);
  }

  /**
   * Writes container.json: one write after another, each to a temporary file renamed over the
   * last, so that a daemon killed at any point leaves a whole file, never a torn or older one.
   */
  private persist(container: ManagedContainer): Promise<void> {
    const path = join(container.dirs.stateDir, STATE_FILE);
    const write = async () => {
      const saved: SavedContainer = { ...container.state, ...(container.owner ? { owner: container.owner } : {}), ...(container.foreground ? { foreground: true as const } : {}), ...(container.hooks ? { hooks: container.hooks } : {}) };
      try {
        await writeFile(`${path}.next`, JSON.stringify(saved) + "\n");
        await rename(`${path}.next`, path);
      } catch (error) {
        // The next daemon would find this state instead (or none, and remove the container as an unfinished create).
        throw new MoatError("MOAT_STATE_WRITE", `container ${container.state.id}: cannot save its state to ${path}`, { cause: error, status: Code.INTERNAL });
      }
    };
    // One write after another; a failed one fails its own caller, not the writes after it.
    const written = container.persisted.then(write);
    container.persisted = written.catch(() => undefined);
    return written;
  }

  /** The container, once it is adopted if it is being adopted. */
  private async ready(id: string): Promise<ManagedContainer> {
    await this.adopted(id);
    return this.get(id);
  }

  private get(id: string): ManagedContainer {
    const container = this.containers.get(id);
    if (!container) throw notFound(id);
    return container;
  }

  private illegal(container: ManagedContainer, action: string): MoatError {
    return new MoatError("MOAT_CONTAINER_STATE", `container ${container.state.id}: cannot ${action} a ${container.state.status} container`, { status: Code.FAILED_PRECONDITION });
  }
}

/** A saved state as a state: what `list` says of a container still being adopted. */
function stateOf(saved: SavedContainer): ContainerState {
  const { id, status, pid, bundle, created, exitStatus } = saved;
  return { id, status, pid, bundle, created, exitStatus };
}

/** The runc-style stand-in: a socket in the container's socket directory (stdio-relay.ts): its VM's, or a pod member's own. */
function standIn(dirs: ContainerDirs, socketName: string): (...args: Parameters<StdioFactory>) => Promise<StdioRelay> {
  return (input, where) => StdioRelay.listen(join(dirs.socketDir, socketName), where, input);
}

function notFound(id: string): MoatError {
  return new MoatError("MOAT_CONTAINER_NOT_FOUND", `container ${id}: does not exist`, { status: Code.NOT_FOUND });
}

/** The container.json in `dir`, if there is one (our own file, written by persist). */
async function readSaved(dir: string): Promise<SavedContainer | undefined> {
  return readFile(join(dir, STATE_FILE), "utf8").then((text) => JSON.parse(text) as SavedContainer, () => undefined); // our own file, written by persist
}

/** The pod members a VM's state directory holds (pod.ts, memberDirs), each with its saved state if its create finished. */
async function readMembers(vmDir: string): Promise<Array<{ id: string; saved: SavedContainer | undefined }>> {
  const entries = await readdir(join(vmDir, MEMBERS_DIR), { withFileTypes: true }).catch(() => []);
  const ids = entries.filter((entry) => entry.isDirectory() && isSandboxId(entry.name)).map((entry) => entry.name);
  return Promise.all(ids.map(async (id) => ({ id, saved: await readSaved(join(vmDir, MEMBERS_DIR, id)) })));
}

/** A VM's own container's directories: the VM's. */
function vmDirs(sandbox: SandboxVm): ContainerDirs {
  return { stateDir: sandbox.vm.paths.stateDir, socketDir: sandbox.vm.paths.socketDir };
}

/**
 * Refuses new limits for a container of a pod that its pod's VM cannot give: more CPUs than
 * the guest has online, or a memory limit above its memory. The VM is sized when the pod starts.
 */
async function checkFitsVm(container: ManagedContainer, resources: Record<string, unknown>): Promise<void> {
  const { id } = container.state;
  const details = await container.sandbox.agent.details();
  const cpu = isRecord(resources.cpu) ? resources.cpu : {};
  const memory = isRecord(resources.memory) ? resources.memory : {};
  const tooLarge = (field: string, what: string) =>
    new MoatError("MOAT_RESOURCES_TOO_LARGE", `container ${id}: update: linux.resources.${field}: ${what}; its pod's VM (sandbox ${container.pod.id}) is sized once, when the pod starts, and this change would need a bigger one`, {
      hint: "lower the limit, or create the pod again with larger limits (its sandbox annotations size the VM)",
      status: Code.FAILED_PRECONDITION,
    });
  const quota = typeof cpu.quota === "number" ? cpu.quota : 0;
  const period = typeof cpu.period === "number" && cpu.period > 0 ? cpu.period : 100_000; // the kernel's default CFS period
  if (quota > 0 && Math.ceil(quota / period) > details.onlineCpus) throw tooLarge("cpu.quota", `${quota} µs per ${period} µs asks for ${Math.ceil(quota / period)} CPUs; the VM has ${details.onlineCpus}`);
  const limit = typeof memory.limit === "number" ? memory.limit : 0;
  if (limit > 0 && BigInt(Math.floor(limit)) > details.memoryTotalBytes) throw tooLarge("memory.limit", `${limit} bytes is more than the VM's ${details.memoryTotalBytes / 1024n / 1024n} MiB`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Where the sandbox's network namespace comes from when a host process stands for the
 * container (`standInPid`, 0: none): a spec asking for a new namespace without a path gets the
 * stand-in's own (`ownNetns`, pinned beside the state directory); on CNI networks the
 * stand-in's new namespace is the one CNI fills (`cniNetnsOf`), so that the hooks given its pid
 * see CNI's interfaces.
 */
function standInNetns(newNetworkNamespace: boolean, standInPid: number, cni: CniRequest | undefined): { ownNetns?: { pid: number }; cniNetnsOf?: number } {
  if (standInPid <= 0) return {};
  if (cni) return { cniNetnsOf: standInPid };
  return newNetworkNamespace ? { ownNetns: { pid: standInPid } } : {};
}
