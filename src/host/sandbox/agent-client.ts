// The host's typed client of moat-agent: one method per agent call, each with a deadline.
// Everything it returns came from the guest and is checked here before it is believed: this is
// the one place where a guest's numbers, strings, ids and sizes enter the host. A value out of
// the agent API's bounds is refused with MOAT_AGENT_PROTOCOL (DATA_LOSS), an error of that call
// and so of that sandbox only; strings are made printable and bounded; a status message too.
import type { Duplex } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { MoatError } from "../../shared/errors.js";
import { printable } from "../../shared/printable.js";
import { tracer } from "../../shared/trace.js";
import {
  AGENT_PROTOCOL_VERSION,
  ContainerService,
  GuestService,
  HealthService,
  IoService,
  NetworkService,
  OomService,
  OutputStream,
  PortForwardService,
  StatsService,
  type ConfigureNetworkRequestSchema,
  type GuestTmpfsSchema,
  type ShareMountSchema,
  type WaitProcessResponse,
  type CheckResponse,
  type DetailsResponse,
  type GuestStep,
  type VersionResponse,
} from "../../shared/protocol/index.js";
import { Code, TtrpcClient } from "../../shared/ttrpc/index.js";

/** Deadline for calls that only read state. */
const CALL_TIMEOUT_MS = 10_000;
/** Creating a container mounts its root file system and runs crun: slower than a plain call under TCG. */
const CONTAINER_CALL_TIMEOUT_MS = 60_000;
/** The most output bytes asked for in one read. */
const MAX_READ_BYTES = 1 << 20;
/** A DNS query the guest relays (agent.proto ReadDnsQueriesResponse). */
const MAX_DNS_QUERY_BYTES = 512;
/** The most pids a container may list (the guest's default pid_max is 32768). */
const MAX_PIDS = 65_536;
/** A process's command line as ps shows it. */
const MAX_COMMAND = 4096;
/** The agent reads at most 64 KiB of a cgroup file (stats-service.ts). */
const MAX_CGROUP_FILE_CHARS = 64 * 1024;
/** Guest strings are shown to users: bound them. */
const MAX_GUEST_STRING = 256;
/** A guest's error message (crun's words, say) as it reaches users. */
const MAX_GUEST_STATUS_MESSAGE = 1024;
/** The largest pid Linux can hand out (PID_MAX_LIMIT on 64-bit). */
const MAX_GUEST_PID = 1 << 22;
/** An exit status as a shell reports it: the code (0–255), or 128 + a signal, which stays below 256. */
const MAX_EXIT_STATUS = 255;
/** Linux's signals end at SIGRTMAX, 64. */
const MAX_SIGNAL = 64;
/** Plausible ceilings for what the guest says about itself (NR_CPUS is at most 8192; 64 PiB of memory). */
const MAX_GUEST_CPUS = 8192;
const MAX_GUEST_MEMORY_BYTES = 1n << 56n;
/**
 * ReadOutput is a long poll: the agent answers when there are bytes or at end of stream. An
 * agent that answers at once with neither would keep the host's read loop spinning, so each
 * such answer in a row waits twice as long as the one before, from 1 ms up to this.
 */
const MAX_EMPTY_READ_BACKOFF_MS = 1_000;

// MOAT_TRACE=sandbox also marks each step of a container's life as its call goes to the guest
// ("step: startContainer ID"): fault-injection tests wait for these lines to strike within a step.
const trace = tracer("sandbox");

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
  /** Empty, not-ended ReadOutput answers in a row, by process and stream (see MAX_EMPTY_READ_BACKOFF_MS). */
  private readonly emptyReads = new Map<string, number>();

  /** `wait` is the timer of the empty-read backoff (tests give their own). */
  constructor(
    stream: Duplex,
    readonly sandboxId: string,
    private readonly wait: (ms: number) => Promise<unknown> = (ms) => sleep(ms),
  ) {
    this.ttrpc = new TtrpcClient(stream, `sandbox ${sandboxId}`, MAX_GUEST_STATUS_MESSAGE);
  }

  get closed(): Promise<Error> {
    return this.ttrpc.closed;
  }

  async check(timeoutMs = CALL_TIMEOUT_MS): Promise<CheckResponse> {
    const answer = await this.ttrpc.call(HealthService.method.check, {}, { timeoutMs });
    this.require(isUptime(answer.uptimeSeconds), `agent reports an uptime of ${answer.uptimeSeconds} seconds`);
    return answer;
  }

  /** The agent's version; refuses an agent that speaks another protocol version. */
  async version(): Promise<VersionResponse> {
    const version = await this.ttrpc.call(HealthService.method.version, {}, { timeoutMs: CALL_TIMEOUT_MS });
    if (version.protocolVersion !== AGENT_PROTOCOL_VERSION) {
      throw new MoatError(
        "MOAT_AGENT_PROTOCOL",
        `sandbox ${this.sandboxId}: agent ${printable(version.agentVersion, MAX_GUEST_STRING)} speaks protocol ${version.protocolVersion}, the host speaks ${AGENT_PROTOCOL_VERSION}`,
        { hint: "rebuild the guest image with `make guest`", status: Code.FAILED_PRECONDITION },
      );
    }
    return { ...version, agentVersion: printable(version.agentVersion, MAX_GUEST_STRING), runtimeVersion: printable(version.runtimeVersion, MAX_GUEST_STRING) };
  }

  async details(): Promise<GuestDetails> {
    const details: DetailsResponse = await this.ttrpc.call(GuestService.method.details, {}, { timeoutMs: CALL_TIMEOUT_MS });
    this.require(details.onlineCpus >= 1 && details.onlineCpus <= MAX_GUEST_CPUS, `agent reports ${details.onlineCpus} online CPUs`);
    this.require(details.memoryTotalBytes <= MAX_GUEST_MEMORY_BYTES && details.memoryAvailableBytes <= details.memoryTotalBytes, `agent reports ${details.memoryAvailableBytes} of ${details.memoryTotalBytes} bytes of memory available`);
    this.require(isUptime(details.uptimeSeconds), `agent reports an uptime of ${details.uptimeSeconds} seconds`);
    return {
      kernelRelease: printable(details.kernelRelease, MAX_GUEST_STRING),
      kernelVersion: printable(details.kernelVersion, MAX_GUEST_STRING),
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
  /**
   * The guest's next DNS queries to 127.0.0.11 (the resolver relay, docs/networking.md); waits
   * until there are some. Bounded as the agent API says: the guest chooses their bytes.
   */
  async readDnsQueries(maxQueries: number): Promise<Uint8Array[]> {
    const { queries } = await this.ttrpc.call(NetworkService.method.readDnsQueries, { maxQueries }, { timeoutMs: undefined });
    this.require(queries.length <= maxQueries, `agent sent ${queries.length} DNS queries, more than the ${maxQueries} asked for`);
    this.require(queries.every((query) => query.length >= 12 && query.length <= MAX_DNS_QUERY_BYTES), `agent sent a DNS query outside 12 to ${MAX_DNS_QUERY_BYTES} bytes`);
    return queries;
  }

  /** Hands answers from the sandbox's resolver back to the guest. */
  async writeDnsAnswers(answers: Uint8Array[]): Promise<void> {
    await this.ttrpc.call(NetworkService.method.writeDnsAnswers, { answers }, { timeoutMs: CALL_TIMEOUT_MS });
  }

  /**
   * Dials `port` on the guest's loopback for a port-forward (network/port-forward.ts); the
   * connection's id. Fails (UNAVAILABLE from the guest) when nothing listens there.
   */
  async dialPort(port: number): Promise<number> {
    const { connectionId } = await this.ttrpc.call(PortForwardService.method.dial, { port }, { timeoutMs: CALL_TIMEOUT_MS });
    this.require(connectionId !== 0, "agent answered a port-forward dial with connection 0");
    return connectionId;
  }

  /**
   * The next bytes the guest's end of forwarded connection `connectionId` sent, at most
   * `maxBytes`; waits until there are some (the client's end going closes it, which ends the
   * wait). eof once it half-closed.
   */
  async readPort(connectionId: number, maxBytes: number): Promise<{ data: Uint8Array; eof: boolean }> {
    const { data, eof } = await this.ttrpc.call(PortForwardService.method.read, { connectionId, maxBytes }, { timeoutMs: undefined });
    this.require(data.length <= maxBytes, `agent sent ${data.length} bytes of connection ${connectionId}, more than the ${maxBytes} asked for`);
    this.require(!(eof && data.length > 0), `agent sent bytes of connection ${connectionId} with its end-of-file`);
    return { data, eof };
  }

  /** Sends the client's bytes to the guest's end; waits as long as the guest's program does not read (no deadline: the connection's own pace). */
  async writePort(connectionId: number, data: Uint8Array): Promise<void> {
    await this.ttrpc.call(PortForwardService.method.write, { connectionId, data }, { timeoutMs: undefined });
  }

  async closePortWrite(connectionId: number): Promise<void> {
    await this.ttrpc.call(PortForwardService.method.closeWrite, { connectionId }, { timeoutMs: CALL_TIMEOUT_MS });
  }

  async closePort(connectionId: number): Promise<void> {
    await this.ttrpc.call(PortForwardService.method.close, { connectionId }, { timeoutMs: CALL_TIMEOUT_MS });
  }

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
    trace(this.sandboxId, "step: shutdown");
    await this.ttrpc.call(GuestService.method.shutdown, {}, { timeoutMs });
  }

  /**
   * Creates a container from an OCI spec rewritten for the guest, after mounting its shares;
   * with `start`, also starts its process (one crun call), and the container is running.
   */
  async createContainer(containerId: string, ociSpec: object, shares: MessageInitShape<typeof ShareMountSchema>[], options: { stdin: boolean; start?: boolean; join?: { containerId: string; namespaces: string[] }; tmpfs?: MessageInitShape<typeof GuestTmpfsSchema>[] }): Promise<{ pid: number; steps: GuestStep[] }> {
    const request = { containerId, ociSpecJson: JSON.stringify(ociSpec), shares, stdin: options.stdin, start: options.start ?? false, joinContainerId: options.join?.containerId ?? "", joinNamespaces: options.join?.namespaces ?? [], tmpfs: options.tmpfs ?? [] };
    trace(this.sandboxId, `step: createContainer ${containerId}`);
    const { pid, steps } = await this.ttrpc.call(ContainerService.method.createContainer, request, { timeoutMs: CONTAINER_CALL_TIMEOUT_MS });
    return { pid: this.pid(pid, `container ${containerId}`), steps }; // steps: checked by StartTimeline, which uses them
  }

  /** Starts a created container's process; the agent's steps (StartTimeline checks them). */
  async startContainer(containerId: string): Promise<GuestStep[]> {
    trace(this.sandboxId, `step: startContainer ${containerId}`);
    return (await this.ttrpc.call(ContainerService.method.startContainer, { containerId }, { timeoutMs: CONTAINER_CALL_TIMEOUT_MS })).steps;
  }

  /** Runs another process in the running container; `execId` then names it in the calls below. */
  async execProcess(containerId: string, execId: string, process: object, stdin: boolean): Promise<number> {
    const request = { containerId, execId, processJson: JSON.stringify(process), stdin };
    trace(this.sandboxId, `step: execProcess ${containerId} ${execId}`);
    const { pid } = await this.ttrpc.call(ContainerService.method.execProcess, request, { timeoutMs: CONTAINER_CALL_TIMEOUT_MS });
    return this.pid(pid, `container ${containerId}: exec ${execId}`);
  }

  // In the calls below, an empty execId means the container's own process.

  async signalProcess(containerId: string, execId: string, signal: number, all = false): Promise<void> {
    trace(this.sandboxId, `step: signalProcess ${containerId} ${execId} ${signal}`);
    await this.ttrpc.call(ContainerService.method.signalProcess, { containerId, execId, signal, all }, { timeoutMs: CALL_TIMEOUT_MS });
  }

  /** Answers when the process has exited: as long as that takes. The status is 0–255, the signal 0–64. */
  async waitProcess(containerId: string, execId: string): Promise<WaitProcessResponse> {
    const exit = await this.ttrpc.call(ContainerService.method.waitProcess, { containerId, execId }, { timeoutMs: undefined });
    const where = `container ${containerId}${execId ? `: exec ${execId}` : ""}`;
    this.exitStatus(exit.exitStatus, where);
    this.require(exit.signal <= MAX_SIGNAL, `${where}: agent reports signal ${exit.signal}`);
    return exit;
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
      throw this.violation(`container ${containerId}: agent reports unknown status "${printable(state.status, MAX_GUEST_STRING)}"`);
    }
    return { status: state.status, exitStatus: this.exitStatus(state.exitStatus, `container ${containerId}`) };
  }

  /** The container's processes (guest pids); count and commands bounded, as everything from the guest is. */
  async listProcesses(containerId: string): Promise<GuestProcess[]> {
    const { processes } = await this.ttrpc.call(ContainerService.method.listProcesses, { containerId }, { timeoutMs: CALL_TIMEOUT_MS });
    this.require(processes.length <= MAX_PIDS, `container ${containerId}: agent listed ${processes.length} processes, more than ${MAX_PIDS}`);
    return processes.map(({ pid, command }) => ({ pid: this.pid(pid, `container ${containerId}`), command: printable(command, MAX_COMMAND) }));
  }

  /** Applies an OCI LinuxResources object to the container's cgroup in the guest. */
  async updateContainer(containerId: string, resources: object): Promise<void> {
    await this.ttrpc.call(ContainerService.method.updateContainer, { containerId, resourcesJson: JSON.stringify(resources) }, { timeoutMs: CONTAINER_CALL_TIMEOUT_MS });
  }

  /** Deletes a container in the guest (its VM runs on: a pod's other containers are in it). */
  async removeContainer(containerId: string): Promise<void> {
    trace(this.sandboxId, `step: removeContainer ${containerId}`);
    await this.ttrpc.call(ContainerService.method.removeContainer, { containerId }, { timeoutMs: CONTAINER_CALL_TIMEOUT_MS });
  }

  async writeStdin(containerId: string, execId: string, data: Uint8Array): Promise<void> {
    await this.ttrpc.call(IoService.method.writeStdin, { containerId, execId, data }, { timeoutMs: undefined });
  }

  async closeStdin(containerId: string, execId: string): Promise<void> {
    await this.ttrpc.call(IoService.method.closeStdin, { containerId, execId }, { timeoutMs: CALL_TIMEOUT_MS });
  }

  /**
   * The next bytes of stdout or stderr (a long poll), or eof. An answer with neither, which the
   * agent API does not allow, is handed on only after a wait that doubles with each one in a
   * row (MAX_EMPTY_READ_BACKOFF_MS), so that no guest keeps a read loop spinning.
   */
  async readOutput(containerId: string, execId: string, stream: "stdout" | "stderr"): Promise<{ data: Uint8Array; eof: boolean }> {
    const which = stream === "stdout" ? OutputStream.STDOUT : OutputStream.STDERR;
    const answer = await this.ttrpc.call(IoService.method.readOutput, { containerId, execId, stream: which, maxBytes: MAX_READ_BYTES }, { timeoutMs: undefined });
    this.require(answer.data.length <= MAX_READ_BYTES, `container ${containerId}: agent sent ${answer.data.length} bytes of ${stream}, more than the ${MAX_READ_BYTES} asked for`);
    const key = `${containerId}/${execId}/${stream}`;
    if (answer.data.length > 0 || answer.eof) {
      this.emptyReads.delete(key);
    } else {
      const inARow = (this.emptyReads.get(key) ?? 0) + 1;
      this.emptyReads.set(key, inARow);
      const waitMs = Math.min(2 ** Math.min(inARow - 1, 30), MAX_EMPTY_READ_BACKOFF_MS);
      if (inARow === 1 || waitMs === MAX_EMPTY_READ_BACKOFF_MS) trace(this.sandboxId, `container ${containerId}: empty ${stream} answer ${inARow} in a row: next read in ${waitMs} ms`);
      await this.wait(waitMs);
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
    this.require(event.sequence > afterSequence, `agent sent OOM event ${event.sequence} after ${afterSequence}`);
    return { containerId: printable(event.containerId, MAX_GUEST_STRING), sequence: event.sequence };
  }

  /** The named cgroup v2 files of the container (those that exist), each checked to be bounded. */
  async cgroupFiles(containerId: string, names: string[]): Promise<Record<string, string>> {
    const { files } = await this.ttrpc.call(StatsService.method.cgroupFiles, { containerId, names }, { timeoutMs: CALL_TIMEOUT_MS });
    const unasked = Object.keys(files).filter((name) => !names.includes(name));
    const oversize = Object.values(files).some((text) => text.length > MAX_CGROUP_FILE_CHARS);
    this.require(unasked.length === 0 && !oversize, `container ${containerId}: agent sent cgroup files not asked for or over ${MAX_CGROUP_FILE_CHARS} characters`);
    return files;
  }

  close(): void {
    this.ttrpc.close();
  }

  /** A guest pid, checked to be one Linux could have given. */
  private pid(pid: number, where: string): number {
    this.require(pid >= 1 && pid <= MAX_GUEST_PID, `${where}: agent reports pid ${pid}`);
    return pid;
  }

  /** An exit status, checked to be one a process can have (containerd's TaskExit carries it as uint32, the stand-in as a byte). */
  private exitStatus(status: number, where: string): number {
    this.require(Number.isInteger(status) && status >= 0 && status <= MAX_EXIT_STATUS, `${where}: agent reports exit status ${status}`);
    return status;
  }

  /** Refuses an answer that breaks the agent API's bounds: `what` says which value, in the guest's numbers. */
  private require(condition: boolean, what: string): void {
    if (!condition) throw this.violation(what);
  }

  private violation(what: string): MoatError {
    return new MoatError("MOAT_AGENT_PROTOCOL", `sandbox ${this.sandboxId}: ${what}: outside the agent API's bounds`, { status: Code.DATA_LOSS });
  }
}

/** Seconds since the guest booted: a finite number, not negative. */
function isUptime(seconds: number): boolean {
  return Number.isFinite(seconds) && seconds >= 0;
}
