// The host's agent client against fake agents that answer wrongly on purpose.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { socketPair, type SocketPair } from "../../../test/support/unix-socket.js";
import { MoatError } from "../../shared/errors.js";
import { rejectsWithCode } from "../../../test/support/assertions.js";
import { AGENT_PROTOCOL_VERSION, ContainerService, GuestService, HealthService, IoService, OomService } from "../../shared/protocol/index.js";
import { Code, TtrpcServer, type ServiceImplementation } from "../../shared/ttrpc/index.js";
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
  assert.ok(details.kernelRelease.startsWith("6.1?[2J x"), details.kernelRelease);
  assert.ok(details.kernelRelease.length <= 257);
});

// A hostile agent: every answer below is one the agent API does not allow.

type ContainerAnswers = Partial<ServiceImplementation<typeof ContainerService>>;

async function hostileClient(container: ContainerAnswers, io: Partial<ServiceImplementation<typeof IoService>> = {}, wait?: (ms: number) => Promise<unknown>): Promise<AgentClient> {
  const pair = await socketPair();
  pairs.push(pair);
  const server = new TtrpcServer();
  const unanswered = async () => {
    throw new MoatError("MOAT_TEST", "not scripted", { status: Code.UNIMPLEMENTED });
  };
  server.register(ContainerService, {
    createContainer: unanswered,
    startContainer: unanswered,
    execProcess: unanswered,
    signalProcess: unanswered,
    waitProcess: unanswered,
    pauseContainer: unanswered,
    resumeContainer: unanswered,
    stateContainer: unanswered,
    listProcesses: unanswered,
    updateContainer: unanswered,
    removeContainer: unanswered,
    ...container,
  });
  server.register(IoService, { writeStdin: unanswered, closeStdin: unanswered, readOutput: unanswered, resizePty: unanswered, ...io });
  server.register(OomService, {
    async nextOomEvent(request) {
      return { containerId: "c1", sequence: request.afterSequence };
    },
  });
  server.serve(pair.server, "hostile-agent");
  return new AgentClient(pair.client, "hostile", wait);
}

for (const exitStatus of [-1, -2147483648, 256, 2147483647]) {
  test(`an exit status of ${exitStatus} is refused as the guest's protocol error`, async () => {
    const agent = await hostileClient({
      async waitProcess() {
        return { exitStatus, signal: 0, oomSequence: 0n };
      },
      async stateContainer() {
        return { status: "stopped", pid: 1, exitStatus };
      },
    });
    const error = await rejectsWithCode(agent.waitProcess("c1", ""), "MOAT_AGENT_PROTOCOL", new RegExp(`sandbox hostile: container c1: agent reports exit status ${exitStatus}`));
    assert.equal(error.status, Code.DATA_LOSS);
    await rejectsWithCode(agent.stateContainer("c1"), "MOAT_AGENT_PROTOCOL", /exit status/);
  });
}

test("exit statuses a process can have pass: 0, 137, 255", async () => {
  for (const exitStatus of [0, 137, 255]) {
    const agent = await hostileClient({
      async waitProcess() {
        return { exitStatus, signal: 9, oomSequence: 0n };
      },
    });
    assert.equal((await agent.waitProcess("c1", "")).exitStatus, exitStatus);
  }
});

test("a signal above 64 and pids Linux cannot have are refused", async () => {
  const agent = await hostileClient({
    async waitProcess() {
      return { exitStatus: 0, signal: 4_000_000_000, oomSequence: 0n };
    },
    async createContainer() {
      return { pid: 0 };
    },
    async execProcess() {
      return { pid: 4_194_305 };
    },
    async listProcesses() {
      return { processes: [{ pid: 1, command: "init" }, { pid: 4_000_000_000, command: "x" }] };
    },
  });
  await rejectsWithCode(agent.waitProcess("c1", ""), "MOAT_AGENT_PROTOCOL", /signal 4000000000/);
  await rejectsWithCode(agent.createContainer("c1", {}, [], { stdin: false }), "MOAT_AGENT_PROTOCOL", /pid 0/);
  await rejectsWithCode(agent.execProcess("c1", "e1", {}, false), "MOAT_AGENT_PROTOCOL", /exec e1: agent reports pid 4194305/);
  await rejectsWithCode(agent.listProcesses("c1"), "MOAT_AGENT_PROTOCOL", /pid 4000000000/);
});

test("a guest's error message loses its escape sequences and line breaks and is bounded", async () => {
  const agent = await hostileClient({
    async startContainer() {
      throw new MoatError("MOAT_CRUN_FAILED", `crun: \u001b]0;owned\u0007\u001b[2J\nlevel=info msg=forged ${"y".repeat(3 << 20)}`, { status: Code.FAILED_PRECONDITION });
    },
  });
  const error = await rejectsWithCode(agent.startContainer("c1"), "MOAT_TTRPC_STATUS");
  assert.equal(error.status, Code.FAILED_PRECONDITION);
  assert.ok(!/[\u0000-\u001f\u007f-\u009f]/.test(error.message), JSON.stringify(error.message.slice(0, 200)));
  assert.match(error.message, /crun: \?\]0;owned\?\?\[2J level=info msg=forged y+…$/);
  assert.ok(error.message.length < 1200, `${error.message.length} characters`);
});

test("a status code outside gRPC's set is carried as UNKNOWN", async () => {
  const agent = await hostileClient({
    async startContainer() {
      throw new MoatError("MOAT_TEST", "odd", { status: 4242 as Code }); // a number no Code names, on purpose
    },
  });
  const error = await rejectsWithCode(agent.startContainer("c1"), "MOAT_TTRPC_STATUS", /CODE_4242: odd/);
  assert.equal(error.status, Code.UNKNOWN);
});

test("empty ReadOutput answers that are not eof back off, doubling up to a second; data resets it", async () => {
  let answers = 0;
  const waits: number[] = [];
  const agent = await hostileClient(
    {},
    {
      async readOutput() {
        answers++;
        return { data: new Uint8Array(answers === 14 ? 1 : 0), eof: false };
      },
    },
    async (ms) => waits.push(ms),
  );
  for (let read = 0; read < 15; read++) await agent.readOutput("c1", "", "stdout");
  assert.deepEqual(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000, 1000, 1]);
});

test("an OOM event that does not move forward is refused", async () => {
  const agent = await hostileClient({});
  await rejectsWithCode(agent.nextOomEvent(5n), "MOAT_AGENT_PROTOCOL", /OOM event 5 after 5/);
});
