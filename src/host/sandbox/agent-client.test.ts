// The host's agent client against fake agents that answer wrongly on purpose.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { socketPair, type SocketPair } from "../../../test/support/unix-socket.js";
import { MoatError } from "../../shared/errors.js";
import { AGENT_PROTOCOL_VERSION, GuestService, HealthService } from "../../shared/protocol/index.js";
import { TtrpcServer } from "../../shared/ttrpc/index.js";
import { AgentClient } from "./agent-client.js";

const pairs: SocketPair[] = [];
after(() => pairs.forEach((pair) => pair.close()));

async function clientOf(agentVersion: string, protocolVersion: number, kernelRelease: string): Promise<AgentClient> {
  const pair = await socketPair();
  pairs.push(pair);
  const server = new TtrpcServer();
  server.register(HealthService, {
    async check() {
      return { uptimeSeconds: 1 };
    },
    async version() {
      return { agentVersion, protocolVersion, runtimeVersion: "v20.0.0" };
    },
  });
  server.register(GuestService, {
    async details() {
      return { kernelRelease, kernelVersion: "#1", onlineCpus: 1, memoryTotalBytes: 1n, memoryAvailableBytes: 1n, uptimeSeconds: 1 };
    },
    async shutdown() {
      return {};
    },
    async takeIdentity() {
      return {};
    },
  });
  server.serve(pair.server, "fake-agent");
  return new AgentClient(pair.client, "fake");
}

test("an agent speaking another protocol version is refused with the fix", async () => {
  const agent = await clientOf("9.9.9", AGENT_PROTOCOL_VERSION + 1, "6.1");
  await assert.rejects(agent.version(), (error: unknown) => {
    assert.ok(error instanceof MoatError);
    assert.equal(error.code, "MOAT_AGENT_PROTOCOL");
    assert.match(error.message, /sandbox fake: agent 9.9.9 speaks protocol 2, the host speaks 1/);
    assert.match(error.hint ?? "", /make guest/);
    return true;
  });
});

test("guest strings lose control characters and are cut to a bounded length", async () => {
  const agent = await clientOf("1", AGENT_PROTOCOL_VERSION, `6.1\u001b[2J\n${"x".repeat(10_000)}`);
  const details = await agent.details();
  assert.ok(!/[\u0000-\u001f]/.test(details.kernelRelease));
  assert.ok(details.kernelRelease.startsWith("6.1?[2J?x"));
  assert.ok(details.kernelRelease.length <= 257);
});
