// moatd's core: every container it owns, each in its own sandbox VM, with the lifecycle the
// OCI runtime spec describes (created → running → stopped) and the relay to its stand-in.
// An illegal transition is an error that names the state.
import { readdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { settleWithin } from "../../shared/deadline.js";
import { MoatError } from "../../shared/errors.js";
import { parseJsonObject } from "../../shared/json-object.js";
import { tracer } from "../../shared/trace.js";
import { Code } from "../../shared/ttrpc/index.js";
import type { Config } from "../config/index.js";
import { removeAbandonedBuilds, removePoolLeftovers, type TakeResult, type VmPool } from "../factory/index.js";
import { guestSpec, loadBundle } from "../oci/index.js";
import { adoptSandboxVm, discardSandbox, isSandboxId, sandboxFilesDir, startSandboxVm, validateSandboxId, type GuestProcess, type SandboxVm } from "../sandbox/index.js";
import { OomWatch } from "./oom-watch.js";
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
  owner: ContainerOwner | undefined;
  /** The last write of container.json: writes go one after another, each replacing the file whole. */
  persisted: Promise<void>;
  sandbox: SandboxVm;
  relay: ProcessStdio;
  /** The stdio of exec'd processes still running, by exec id. */
  execs: Map<string, ProcessStdio>;
  /** Exec'd processes so far: numbers their sockets, whose names must stay short (SOCKET_NAME_MAX_BYTES). */
  execCount: number;
  /** Resolves once the process has exited and the stand-in was sent its status. */
  finished: Promise<void>;
  /** While a start call is being answered: the exit status waits for it (see start). */
  starting: Promise<void>;
  /** Its sandbox's OOM events (one sandbox per container today). */
  oom: OomWatch;
}

/** Told when the kernel's OOM killer killed a process of a container, before that process's exit. */
export type OomListener = (id: string) => void;

/** The container's state on disk, in its sandbox's state directory, for a restarted daemon. */
const STATE_FILE = "container.json";

/** container.json: the state, and the owning front end's record if a front end created it. */
type SavedContainer = ContainerState & { owner?: ContainerOwner };

/** How long delete waits for a killed container's exit to reach its stand-in. */
const KILL_WAIT_MS = 10_000;

export class Daemon {
  private readonly containers = new Map<string, ManagedContainer>();
  /** Ids being created, so that a second create of the same id fails at once. */
  private readonly creating = new Set<string>();
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
    return this.containers.size + this.creating.size;
  }

  /**
   * Boots the container's VM and creates the container; returns where its stdio is reached
   * (the stand-in's socket unless `stdio` says otherwise). `sandboxConfig` sizes and builds this
   * one sandbox (a containerd task's runtime ConfigPath); the state root stays the daemon's.
   * `owner` is saved with the state from the start, so that a daemon restarted at any point
   * hands the container back to its front end.
   */
  async create(id: string, bundleDir: string, stdio?: StdioFactory, sandboxConfig?: Config, owner?: ContainerOwner): Promise<string> {
    validateSandboxId(id);
    if (this.containers.has(id) || this.creating.has(id)) {
      throw new MoatError("MOAT_CONTAINER_EXISTS", `container ${id}: already exists`, { status: Code.ALREADY_EXISTS });
    }
    const bundle = loadBundle(bundleDir);
    const filesDir = sandboxFilesDir(this.config.runtime.stateRoot, id);
    const where = `${bundle.dir}/config.json`;
    const guest = guestSpec({ containerId: id, spec: bundle.spec, rootfs: bundle.rootfs, overlay: false, where, filesDir });
    const { spec, shares, files } = guest;
    const hostCgroup = guest.hostCgroup && { target: guest.hostCgroup, log: this.log };
    this.creating.add(id);
    try {
      const config = sandboxConfig ? { ...sandboxConfig, runtime: { ...sandboxConfig.runtime, stateRoot: this.config.runtime.stateRoot } } : this.config;
      const sandbox = await startSandboxVm(config, id, { shares: shares.map(({ tag, hostPath, readOnly }) => ({ tag, hostPath, readOnly })), files, hostCgroup, pool: this.pool, network: guest.networkNamespace });
      try {
        await sandbox.agent.createContainer(id, spec, shares.map(({ tag, readOnly, overlay }) => ({ tag, readOnly, overlay, fs: sandbox.shareFs })), { stdin: true });
        const state: ContainerState = { id, status: "created", pid: 0, bundle: bundle.dir, created: new Date().toISOString(), exitStatus: 0 };
        return (await this.attach(sandbox, state, owner, stdio)).relay.path;
      } catch (error) {
        await sandbox.shutdown();
        throw error;
      }
    } finally {
      this.creating.delete(id);
    }
  }

  /**
   * Takes over the containers a previous daemon left under the state root: their VMs kept
   * running (they are not the daemon's children), their state is on disk, and the agent
   * knows how each container is doing. A sandbox whose VM is gone, or whose create never
   * finished, is cleaned up.
   */
  async adoptAll(): Promise<void> {
    const log = this.log;
    const stateRoot = this.config.runtime.stateRoot;
    await removeAbandonedBuilds(this.config, log);
    await removePoolLeftovers(this.config, log);
    const entries = await readdir(stateRoot, { withFileTypes: true }).catch(() => []);
    // Only sandboxes are named like sandbox ids; the templates' ".templates" is not one.
    for (const entry of entries.filter((candidate) => candidate.isDirectory() && isSandboxId(candidate.name))) {
      const id = entry.name;
      const saved = await readFile(join(stateRoot, id, STATE_FILE), "utf8").then((text) => JSON.parse(text) as SavedContainer, () => undefined); // our own file, written by persist
      // A create that never finished may have left a VM that is still restoring or booting,
      // whose agent would not answer: it is not adopted, only removed.
      if (!saved) {
        log(`container ${id}: its create never finished; removing what is left`);
        await discardSandbox(this.config, id);
        continue;
      }
      let sandbox: SandboxVm | undefined;
      try {
        sandbox = await adoptSandboxVm(this.config, id);
        if (!sandbox) {
          log(`container ${id}: its VM is gone; removing what is left`);
          await discardSandbox(this.config, id);
          continue;
        }
        const guest = await sandbox.agent.stateContainer(id);
        const { owner, ...savedState } = saved;
        const state: ContainerState = { ...savedState, status: guest.status, exitStatus: guest.exitStatus, pid: guest.status === "stopped" ? 0 : saved.pid };
        const adopted = owner ? await this.adopterOf(owner.frontEnd, id)({ state: { ...state }, record: owner.record, sandboxPid: sandbox.vm.pid }) : undefined;
        const container = await this.attach(sandbox, state, owner, adopted?.init);
        // The container is adopted by now: an exec whose stdio cannot be reopened is named in the log, not a reason to discard it.
        for (const exec of adopted?.execs ?? []) {
          await this.openExec(container, exec.execId, exec.stdio).then(
            (relay) => this.relayExec(container, exec.execId, relay),
            (error: unknown) => log(`container ${id}: exec ${exec.execId}: cannot reopen its stdio: ${String(error)}`),
          );
        }
        log(`container ${id}: adopted (${guest.status}${owner ? `, ${owner.frontEnd}` : ""})`);
      } catch (error) {
        log(`container ${id}: cannot adopt: ${String(error)}; removing it`);
        sandbox?.agent.close();
        await discardSandbox(this.config, id); // kills its QEMU and share servers, removes its directory
      }
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
   * Hands a warm pool VM to a sandbox that another process starts (`moat run`): it moves into
   * <state root>/<sandboxId>, which that process created empty, and is that process's.
   */
  async takePooledVm(sandboxId: string, templateKey: string): Promise<TakeResult> {
    validateSandboxId(sandboxId);
    if (!this.pool) return { taken: false, reason: "moatd keeps none ([factory] vm_cache_number = 0)" };
    const stateDir = join(this.config.runtime.stateRoot, sandboxId);
    // The caller's claim on the id is that empty directory, which the pool VM's replaces.
    const empty = await readdir(stateDir).then((entries) => entries.length === 0, () => false);
    if (!empty) return { taken: false, reason: `${stateDir} is not an empty directory` };
    return this.pool.take(sandboxId, templateKey, stateDir);
  }

  /** Makes a container this daemon's: its stand-in's socket, its output and exit relayed. */
  private async attach(sandbox: SandboxVm, state: ContainerState, owner: ContainerOwner | undefined, stdio = standIn(sandbox, "stdio.sock")): Promise<ManagedContainer> {
    const relay = await this.openStdio(sandbox, state.id, "", stdio, (pid) => {
      state.pid = state.status === "stopped" ? 0 : pid;
    });
    const oom = new OomWatch(sandbox.agent, `sandbox ${sandbox.id}`, (id) => this.reportOom(sandbox, id));
    const container: ManagedContainer = { state, owner, persisted: Promise.resolve(), sandbox, relay, execs: new Map(), execCount: 0, finished: Promise.resolve(), starting: Promise.resolve(), oom };
    container.finished = this.relayProcess(container, "", relay, async (exitStatus) => {
      container.state.status = "stopped";
      container.state.exitStatus = exitStatus;
      container.state.pid = 0;
      await this.persist(container);
    });
    this.containers.set(state.id, container);
    await this.persist(container);
    return container;
  }

  /** An OOM event from a sandbox's guest: only a container of that sandbox is believed. */
  private reportOom(sandbox: SandboxVm, id: string): void {
    if (this.containers.get(id)?.sandbox !== sandbox) return trace(sandbox.id, `OOM event for ${id}, which is not a container of this sandbox: ignored`);
    for (const listener of this.oomListeners) listener(id);
  }

  /** Runs another process in a running container; returns where its stdio is reached. */
  async exec(id: string, execId: string, processJson: string, stdio?: StdioFactory): Promise<string> {
    const container = this.get(id);
    if (container.state.status !== "running") throw this.illegal(container, "exec in");
    validateSandboxId(execId); // the same rule for exec ids
    if (container.execs.has(execId)) {
      throw new MoatError("MOAT_CONTAINER_EXISTS", `container ${id}: exec ${execId}: already exists`, { status: Code.ALREADY_EXISTS });
    }
    const process = parseJsonObject(processJson, `container ${id}: exec ${execId}: process`, "MOAT_CONTAINER_SPEC");
    const relay = await this.openExec(container, execId, stdio ?? standIn(container.sandbox, `exec-${++container.execCount}.sock`));
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
    void this.relayProcess(container, execId, relay, () => undefined).finally(async () => {
      container.execs.delete(execId);
      await relay.close();
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
  cgroupFiles(id: string, names: string[]): Promise<Record<string, string>> {
    return this.get(id).sandbox.agent.cgroupFiles(id, names);
  }

  /** The host process that stands for the container's sandbox: its QEMU. */
  sandboxPid(id: string): number {
    return this.get(id).sandbox.vm.pid;
  }

  async start(id: string): Promise<void> {
    const container = this.get(id);
    if (container.state.status !== "created") throw this.illegal(container, "start");
    // A process that exits at once must not have its status reach the stand-in (whose exit
    // its caller takes as the container's) before `start` has answered: podman's exit
    // handling races with its own start when it does (libpod "no such exit code"). runc's
    // start returns within a few ms of the exec, so its callers never see that order.
    let answered!: () => void; // assigned by the executor below, which runs at once
    container.starting = new Promise((resolve) => (answered = resolve));
    try {
      await container.sandbox.agent.startContainer(id);
      if (container.state.status === "created") container.state.status = "running";
      await this.persist(container);
    } finally {
      setImmediate(answered); // after the ttrpc response is written
    }
  }

  /** Freezes a running container (`pause`) or thaws a paused one (`resume`). */
  async freeze(id: string, action: "pause" | "resume"): Promise<void> {
    const container = this.get(id);
    const [from, to]: [ContainerStatus, ContainerStatus] = action === "pause" ? ["running", "paused"] : ["paused", "running"];
    if (container.state.status !== from) throw this.illegal(container, action);
    await (action === "pause" ? container.sandbox.agent.pauseContainer(id) : container.sandbox.agent.resumeContainer(id));
    if (container.state.status === from) container.state.status = to;
    await this.persist(container);
  }

  state(id: string): ContainerState {
    return { ...this.get(id).state };
  }

  list(): ContainerState[] {
    return [...this.containers.values()].map((container) => ({ ...container.state }));
  }

  /** The guest pids of a running or paused container's processes. */
  async ps(id: string): Promise<GuestProcess[]> {
    const container = this.get(id);
    if (container.state.status !== "running" && container.state.status !== "paused") throw this.illegal(container, "list the processes of");
    return container.sandbox.agent.listProcesses(id);
  }

  /** Changes a created, running or paused container's Linux resources in the guest. */
  async update(id: string, resourcesJson: string): Promise<void> {
    const container = this.get(id);
    if (container.state.status === "stopped") throw this.illegal(container, "update");
    await container.sandbox.agent.updateContainer(id, parseJsonObject(resourcesJson, `container ${id}: update: resources`, "MOAT_CONTAINER_SPEC"));
  }

  /** Signals the container's process, or with `execId` one exec'd process. */
  async kill(id: string, signal: number, all: boolean, execId = ""): Promise<void> {
    const container = this.get(id);
    if (container.state.status === "stopped") throw this.illegal(container, "kill");
    await container.sandbox.agent.signalProcess(id, execId, signal, all);
  }

  async delete(id: string, force: boolean): Promise<void> {
    const container = this.containers.get(id);
    if (!container) throw notFound(id);
    const { status } = container.state;
    if ((status === "running" || status === "paused") && !force) throw this.illegal(container, "delete");
    if (status === "paused") await container.sandbox.agent.resumeContainer(id).catch(() => undefined); // a frozen process cannot die of SIGKILL until thawed
    if (status !== "stopped") {
      // A created container is deleted as runc deletes one: killed first. Its stand-in still
      // gets the exit status (137) before the relay closes.
      await container.sandbox.agent.signalProcess(id, "", 9, true).catch(() => undefined);
      await settleWithin(container.finished, KILL_WAIT_MS);
    }
    this.containers.delete(id);
    await container.relay.close();
    for (const relay of container.execs.values()) await relay.close();
    // Not RemoveContainer first: the VM goes with its container, and its shutdown syncs the shares.
    await container.sandbox.shutdown();
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
        // An OOM kill that ended the process is reported before its exit.
        await container.oom.caughtUp(exit.oomSequence);
        await exited(exit.exitStatus);
        await outputs;
        await container.starting;
        await relay.sendExit(exit.exitStatus);
      })
      .catch(async (error: unknown) => {
        // The guest went away (QEMU killed, VM crashed): the process is gone, killed.
        trace(id, `lost ${execId ? `exec ${execId}` : "the container's process"}: ${String(error)}`);
        await exited(137);
        await relay.sendExit(137).catch(() => undefined);
      });
  }

  /**
   * Writes container.json: one write after another, each to a temporary file renamed over the
   * last, so that a daemon killed at any point leaves a whole file, never a torn or older one.
   */
  private persist(container: ManagedContainer): Promise<void> {
    const path = join(container.sandbox.vm.paths.stateDir, STATE_FILE);
    const write = async () => {
      const saved: SavedContainer = { ...container.state, ...(container.owner ? { owner: container.owner } : {}) };
      await writeFile(`${path}.next`, JSON.stringify(saved) + "\n");
      await rename(`${path}.next`, path);
    };
    container.persisted = container.persisted.then(write).catch((error: unknown) => trace(container.state.id, `persist: ${String(error)}`));
    return container.persisted;
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

/** The runc-style stand-in: a socket in the sandbox's state directory (stdio-relay.ts). */
function standIn(sandbox: SandboxVm, socketName: string): StdioFactory {
  return (input, where) => StdioRelay.listen(join(sandbox.vm.paths.stateDir, socketName), where, input);
}

function notFound(id: string): MoatError {
  return new MoatError("MOAT_CONTAINER_NOT_FOUND", `container ${id}: does not exist`, { status: Code.NOT_FOUND });
}
