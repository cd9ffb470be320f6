// HealthService: answers that the agent serves, and what it is.
import { uptime } from "node:os";
import { AGENT_PROTOCOL_VERSION, type HealthService } from "../../shared/protocol/index.js";
import type { ServiceImplementation } from "../../shared/ttrpc/index.js";
import { MOAT_VERSION } from "../../shared/version.js";

export const healthService: ServiceImplementation<typeof HealthService> = {
  async check() {
    return { uptimeSeconds: uptime() };
  },
  async version() {
    return { agentVersion: MOAT_VERSION, protocolVersion: AGENT_PROTOCOL_VERSION, runtimeVersion: process.version };
  },
};
