// The host's typed client of moat-agent: one method per agent call, each with a deadline.
// Everything it returns came from the guest and is checked here before it is believed.
import type { Duplex } from "node:stream";
import { MoatError } from "../../shared/errors.js";
import {
  AGENT_PROTOCOL_VERSION,
  GuestService,
  HealthService,
  type CheckResponse,
  type DetailsResponse,
  type VersionResponse,
} from "../../shared/protocol/index.js";
import { Code, TtrpcClient } from "../../shared/ttrpc/index.js";

/** Deadline for calls that only read state. */
const CALL_TIMEOUT_MS = 10_000;
/** Guest strings are shown to users: bound them. */
const MAX_GUEST_STRING = 256;

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

  /** Asks the guest to power off; it answers first, then QEMU exits. */
  async shutdown(timeoutMs: number): Promise<void> {
    await this.ttrpc.call(GuestService.method.shutdown, {}, { timeoutMs });
  }

  close(): void {
    this.ttrpc.close();
  }
}

/** A guest string cut to a printable, bounded form. */
function bounded(text: string): string {
  const printable = text.replace(/[\u0000-\u001f\u007f]/g, "?");
  return printable.length > MAX_GUEST_STRING ? `${printable.slice(0, MAX_GUEST_STRING)}…` : printable;
}
