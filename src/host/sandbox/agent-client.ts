// The host's typed client of moat-agent: one method per agent call, each with a deadline.
// Everything it returns came from the guest and is checked here before it is believed.
import type { Duplex } from "node:stream";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { MoatError } from "../../shared/errors.js";
import {
  AGENT_PROTOCOL_VERSION,
  ContainerService,
  GuestService,
  HealthService,
  IoService,
  NetworkService,
  OomService,
  OutputStream,
  StatsService,
  type ConfigureNetworkRequestSchema,
  type ShareMountSchema,
  type WaitProcessResponse,
  type CheckResponse,
  type DetailsResponse,
  type VersionResponse,
} from "../../shared/protocol/index.js";
import { Code, TtrpcClient } from "../../shared/ttrpc/index.js";

/** Deadline for calls that only read state. */
const CALL_TIMEOUT_MS = 10_000;
/** Creating a container mounts its root file system and runs crun: slower than a plain call under TCG. */
const CONTAINER_CALL_TIMEOUT_MS = 60_000;
/** The most output bytes asked for in one read. */
const MAX_READ_BYTES = 1 << 20;
/** The most pids a container may list (the guest's default pid_max is 32768). */
const MAX_PIDS = 65_536;
/** A process's command line as ps shows it. */
const MAX_COMMAND = 4096;
/** The agent reads at most 64 KiB of a cgroup file (stats-service.ts). */
const MAX_CGROUP_FILE_CHARS = 64 * 1024;
/** Guest strings are shown to users: bound them. */
const MAX_GUEST_STRING = 256;

/** One process of a container, as the guest names it. */
export interface GuestProcess {
  pid: number;
  command: string;
}

export interface GuestDetails {
  kernelRelease: string;
  kernelVersion: string;
  onlineCpus: number;
  memoryTotalBytes: bigint;
  memoryAvailableBytes: bigint;
  uptimeSeconds: number;
}

export class AgentClient {
  private readonly ttrpc: TtrpcClient;

  constructor(
    stream: Duplex,
    readonly sandboxId: string,
  ) {
    this.ttrpc = new TtrpcClient(stream, `sandbox ${sandboxId}`);
  }

  get closed(): Promise<Error> {
    return this.ttrpc.closed;
  }

  check(timeoutMs = CALL_TIMEOUT_MS): Promise<CheckResponse> {
    return this.ttrpc.call(HealthService.method.check, {}, { timeoutMs });
  }

  /** The agent's version; refuses an agent that speaks another protocol version. */
  async version(): Promise<VersionResponse> {
    const version = await this.ttrpc.call(HealthService.method.version, {}, { timeoutMs: CALL_TIMEOUT_MS });
    if (version.protocolVersion !== AGENT_PROTOCOL_VERSION) {
      throw new MoatError(
        "MOAT_AGENT_PROTOCOL",
        `sandbox ${this.sandboxId}: agent ${bounded(version.agentVersion)} speaks protocol ${version.protocolVersion}, the host speaks ${AGENT_PROTOCOL_VERSION}`,
        { hint: "rebuild the guest image with `make guest`", status: Code.FAILED_PRECONDITION },
      );
    }
    return { ...version, agentVersion: bounded(version.agentVersion), runtimeVersion: bounded(version.runtimeVersion) };
  }

  async details(): Promise<GuestDetails> {
    const details: DetailsResponse = await this.ttrpc.call(GuestService.method.details, {}, { timeoutMs: CALL_TIMEOUT_MS });
    return {
      kernelRelease: bounded(details.kernelRelease),
      kernelVersion: bounded(details.kernelVersion),
      onlineCpus: details.onlineCpus,
      memoryTotalBytes: details.memoryTotalBytes,
      memoryAvailableBytes: details.memoryAvailableBytes,
      uptimeSeconds: details.uptimeSeconds,
    };
  }

  /**
   * Makes a guest restored from a template its own: `entropy` reseeds its RNG at once, and its
   * clock and hostname are set, before any container runs.
   */
  /** Sets the guest's interfaces, routes and neighbours (docs/networking.md). */
  async configureNetwork(request: MessageInitShape<typeof ConfigureNetworkRequestSchema>): Promise<void> {
    await this.ttrpc.call(NetworkService.method.configureNetwork, request, { timeoutMs: CALL_TIMEOUT_MS });
  }

  async takeIdentity(entropy: Uint8Array, hostname: string): Promise<void> {
    const timeUnixNanos = BigInt(Date.now()) * 1_000_000n;
    await this.ttrpc.call(GuestService.method.takeIdentity, { entropy, timeUnixNanos, hostname }, { timeoutMs: CALL_TIMEOUT_MS });
  }

  /** Asks the guest to power off; it answers first, then QEMU exits. */
  async shutdown(timeoutMs: number): Promise<void> {
    await this.ttrpc.call(GuestService.method.shutdown, {}, { timeoutMs });
  }

  /**
   * Creates a container from an OCI spec rewritten for the guest, after mounting its shares;
   * with `start`, also starts its process (one crun call), and the container is running.
   */
  async createContainer(containerId: string, ociSpec: object, shares: MessageInitShape<typeof ShareMountSchema>[], options: { stdin: boolean; start?: boolean }): Promise<number> {
    const request = { containerId, ociSpecJson: JSON.stringify(ociSpec), shares, stdin: options.stdin, start: options.start ?? false };
    return (await this.ttrpc.call(ContainerService.method.createContainer, request, { timeoutMs: CONTAINER_CALL_TIMEOUT_MS })).pid;
  }

  async startContainer(containerId: string): Promise<void> {
    await this.ttrpc.call(ContainerService.method.startContainer, { containerId }, { timeoutMs: CONTAINER_CALL_TIMEOUT_MS });
  }

  /** Runs another process in the running container; `execId` then names it in the calls below. */
  async execProcess(containerId: string, execId: string, process: object, stdin: boolean): Promise<number> {
    const request = { containerId, execId, processJson: JSON.stringify(process), stdin };
    return (await this.ttrpc.call(ContainerService.method.execProcess, request, { timeoutMs: CONTAINER_CALL_TIMEOUT_MS })).pid;
  }

  // In the calls below, an empty execId means the container's own process.

  async signalProcess(containerId: string, execId: string, signal: number, all = false): Promise<void> {
    await this.ttrpc.call(ContainerService.method.signalProcess, { containerId, execId, signal, all }, { timeoutMs: CALL_TIMEOUT_MS });
  }

  /** Answers when the process has exited: as long as that takes. */
  waitProcess(containerId: string, execId: string): Promise<WaitProcessResponse> {
    return this.ttrpc.call(ContainerService.method.waitProcess, { containerId, execId }, { timeoutMs: undefined });
  }

  async pauseContainer(containerId: string): Promise<void> {
    await this.ttrpc.call(ContainerService.method.pauseContainer, { containerId }, { timeoutMs: CALL_TIMEOUT_MS });
  }

  async resumeContainer(containerId: string): Promise<void> {
    await this.ttrpc.call(ContainerService.method.resumeContainer, { containerId }, { timeoutMs: CALL_TIMEOUT_MS });
  }

  /** The container's status in the guest; the status string is checked, as everything from the guest is. */
  async stateContainer(containerId: string): Promise<{ status: "created" | "running" | "paused" | "stopped"; exitStatus: number }> {
    const state = await this.ttrpc.call(ContainerService.method.stateContainer, { containerId }, { timeoutMs: CALL_TIMEOUT_MS });
    if (state.status !== "created" && state.status !== "running" && state.status !== "paused" && state.status !== "stopped") {
      throw new MoatError("MOAT_AGENT_PROTOCOL", `sandbox ${this.sandboxId}: container ${containerId}: agent reports unknown status ${JSON.stringify(bounded(state.status))}`, { status: Code.DATA_LOSS });
    }
    return { status: state.status, exitStatus: state.exitStatus };
  }

  /** The container's processes (guest pids); count and commands bounded, as everything from the guest is. */
  async listProcesses(containerId: string): Promise<GuestProcess[]> {
    const { processes } = await this.ttrpc.call(ContainerService.method.listProcesses, { containerId }, { timeoutMs: CALL_TIMEOUT_MS });
    if (processes.length > MAX_PIDS) {
      throw new MoatError("MOAT_AGENT_PROTOCOL", `sandbox ${this.sandboxId}: container ${containerId}: agent listed ${processes.length} processes, more than ${MAX_PIDS}`, { status: Code.DATA_LOSS });
    }
    return processes.map(({ pid, command }) => ({ pid, command: bounded(command, MAX_COMMAND) }));
  }

  /** Applies an OCI LinuxResources object to the container's cgroup in the guest. */
  async updateContainer(containerId: string, resources: object): Promise<void> {
    await this.ttrpc.call(ContainerService.method.updateContainer, { containerId, resourcesJson: JSON.stringify(resources) }, { timeoutMs: CONTAINER_CALL_TIMEOUT_MS });
  }

  async writeStdin(containerId: string, execId: string, data: Uint8Array): Promise<void> {
    await this.ttrpc.call(IoService.method.writeStdin, { containerId, execId, data }, { timeoutMs: undefined });
  }

  async closeStdin(containerId: string, execId: string): Promise<void> {
    await this.ttrpc.call(IoService.method.closeStdin, { containerId, execId }, { timeoutMs: CALL_TIMEOUT_MS });
  }

  /** The next bytes of stdout or stderr (a long poll), or eof. */
  async readOutput(containerId: string, execId: string, stream: "stdout" | "stderr"): Promise<{ data: Uint8Array; eof: boolean }> {
    const which = stream === "stdout" ? OutputStream.STDOUT : OutputStream.STDERR;
    const answer = await this.ttrpc.call(IoService.method.readOutput, { containerId, execId, stream: which, maxBytes: MAX_READ_BYTES }, { timeoutMs: undefined });
    if (answer.data.length > MAX_READ_BYTES) {
      throw new MoatError("MOAT_AGENT_PROTOCOL", `sandbox ${this.sandboxId}: container ${containerId}: agent sent ${answer.data.length} bytes of ${stream}, more than the ${MAX_READ_BYTES} asked for`, { status: Code.DATA_LOSS });
    }
    return { data: answer.data, eof: answer.eof };
  }

  /** Sets the window size of the process's terminal (the process sees SIGWINCH). */
  async resizePty(containerId: string, execId: string, rows: number, columns: number): Promise<void> {
    await this.ttrpc.call(IoService.method.resizePty, { containerId, execId, rows, columns }, { timeoutMs: CALL_TIMEOUT_MS });
  }

  /**
   * The next OOM event after `afterSequence` (which it acknowledges): a long poll, answered when
   * a container's cgroup sees an OOM kill. The container id is bounded here, not known to be
   * real: the caller looks it up. A sequence that does not move forward is refused.
   */
  async nextOomEvent(afterSequence: bigint): Promise<{ containerId: string; sequence: bigint }> {
    const event = await this.ttrpc.call(OomService.method.nextOomEvent, { afterSequence }, { timeoutMs: undefined });
    if (event.sequence <= afterSequence) {
      throw new MoatError("MOAT_AGENT_PROTOCOL", `sandbox ${this.sandboxId}: agent sent OOM event ${event.sequence} after ${afterSequence}`, { status: Code.DATA_LOSS });
    }
    return { containerId: bounded(event.containerId), sequence: event.sequence };
  }

  /** The named cgroup v2 files of the container (those that exist), each checked to be bounded. */
  async cgroupFiles(containerId: string, names: string[]): Promise<Record<string, string>> {
    const { files } = await this.ttrpc.call(StatsService.method.cgroupFiles, { containerId, names }, { timeoutMs: CALL_TIMEOUT_MS });
    const unasked = Object.keys(files).filter((name) => !names.includes(name));
    const oversize = Object.values(files).some((text) => text.length > MAX_CGROUP_FILE_CHARS);
    if (unasked.length > 0 || oversize) {
      throw new MoatError("MOAT_AGENT_PROTOCOL", `sandbox ${this.sandboxId}: container ${containerId}: agent sent cgroup files not asked for or over ${MAX_CGROUP_FILE_CHARS} characters`, { status: Code.DATA_LOSS });
    }
    return files;
  }

  close(): void {
    this.ttrpc.close();
  }
}

/** A guest string cut to a printable, bounded form. */
function bounded(text: string, max = MAX_GUEST_STRING): string {
  const printable = text.replace(/[\u0000-\u001f\u007f]/g, "?");
  return printable.length > max ? `${printable.slice(0, max)}…` : printable;
}
