// Fuzz target "agent-response" (test/support/fuzz.ts): a hostile agent answers each of the
// host's agent calls with bytes of its choosing, in a whole frame on the right stream: a
// response envelope of any bytes, a well-formed envelope around any payload, a payload that
// is a well-formed message of the right type holding any values (negative, huge, NaN, control
// characters, megabytes), an error status, or a frame on a stream never opened. Every call
// must end in an answer inside the agent API's bounds or in one of moat's errors, and never
// hang.
//
// An input's bytes: [call index][kind][rest]; kind 0: rest is the envelope, 1: rest is the
// payload, 2: rest is the payload with an error status, 3: the envelope on a wrong stream.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create, fromBinary, toBinary, ScalarType, type DescField, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import fc from "fast-check";
import { bytesNear, expectMoatError, fuzzTarget } from "../../../test/support/fuzz.js";
import { socketPair } from "../../../test/support/unix-socket.js";
import { ContainerService, GuestService, HealthService, IoService, NetworkService, OomService, RequestSchema, ResponseSchema, StatsService } from "../../shared/protocol/index.js";
import { encodeFrame, FrameDecoder, FrameType } from "../../shared/ttrpc/index.js";
import { AgentClient } from "./agent-client.js";

/** How long one answered call may take before it counts as a hang. */
const HANG_MS = 5_000;

interface AgentCall {
  method: DescMethod;
  call: (agent: AgentClient) => Promise<unknown>;
  /** What an answer that was accepted must satisfy. */
  bounds?: (answer: unknown) => void;
}

const isPid = (pid: unknown) => assert.ok(typeof pid === "number" && Number.isInteger(pid) && pid >= 1 && pid <= 4_194_304, `pid ${String(pid)}`);
const printableText = (text: unknown) => assert.ok(typeof text === "string" && !/[\u0000-\u001f\u007f]/.test(text) && text.length <= 4097, `unbounded text ${JSON.stringify(String(text).slice(0, 40))}`);

const CALLS: AgentCall[] = [
  { method: HealthService.method.check, call: (agent) => agent.check(HANG_MS) },
  { method: HealthService.method.version, call: (agent) => agent.version(), bounds: (answer) => printableText((answer as { agentVersion: string }).agentVersion) },
  {
    method: GuestService.method.details,
    call: (agent) => agent.details(),
    bounds: (answer) => {
      const details = answer as { kernelRelease: string; onlineCpus: number };
      printableText(details.kernelRelease);
      assert.ok(details.onlineCpus >= 1);
    },
  },
  { method: GuestService.method.shutdown, call: (agent) => agent.shutdown(HANG_MS) },
  { method: GuestService.method.takeIdentity, call: (agent) => agent.takeIdentity(new Uint8Array(8), "h") },
  { method: ContainerService.method.createContainer, call: (agent) => agent.createContainer("c", {}, [], { stdin: false }), bounds: (answer) => isPid((answer as { pid: number }).pid) }, // its steps are StartTimeline's to check
  { method: ContainerService.method.startContainer, call: (agent) => agent.startContainer("c") },
  { method: ContainerService.method.execProcess, call: (agent) => agent.execProcess("c", "e", {}, false), bounds: isPid },
  { method: ContainerService.method.signalProcess, call: (agent) => agent.signalProcess("c", "", 9) },
  {
    method: ContainerService.method.waitProcess,
    call: (agent) => agent.waitProcess("c", ""),
    bounds: (answer) => {
      const exit = answer as { exitStatus: number; signal: number };
      assert.ok(exit.exitStatus >= 0 && exit.exitStatus <= 255 && exit.signal >= 0 && exit.signal <= 64);
    },
  },
  { method: ContainerService.method.pauseContainer, call: (agent) => agent.pauseContainer("c") },
  {
    method: ContainerService.method.stateContainer,
    call: (agent) => agent.stateContainer("c"),
    bounds: (answer) => assert.ok(["created", "running", "paused", "stopped"].includes((answer as { status: string }).status)),
  },
  {
    method: ContainerService.method.listProcesses,
    call: (agent) => agent.listProcesses("c"),
    bounds: (answer) => {
      for (const { pid, command } of answer as Array<{ pid: number; command: string }>) {
        isPid(pid);
        printableText(command);
      }
    },
  },
  { method: ContainerService.method.updateContainer, call: (agent) => agent.updateContainer("c", {}) },
  { method: IoService.method.writeStdin, call: (agent) => agent.writeStdin("c", "", new Uint8Array(1)) },
  {
    method: IoService.method.readOutput,
    call: (agent) => agent.readOutput("c", "", "stdout"),
    bounds: (answer) => assert.ok((answer as { data: Uint8Array }).data.length <= 1 << 20),
  },
  { method: IoService.method.resizePty, call: (agent) => agent.resizePty("c", "", 24, 80) },
  {
    method: OomService.method.nextOomEvent,
    call: (agent) => agent.nextOomEvent(5n),
    bounds: (answer) => {
      const event = answer as { containerId: string; sequence: bigint };
      assert.ok(event.sequence > 5n);
      printableText(event.containerId);
    },
  },
  {
    method: StatsService.method.cgroupFiles,
    call: (agent) => agent.cgroupFiles("c", ["cpu.stat"]),
    bounds: (answer) => assert.ok(Object.keys(answer as object).every((name) => name === "cpu.stat")),
  },
  { method: NetworkService.method.configureNetwork, call: (agent) => agent.configureNetwork({}) },
];

// Values a hostile agent likes: the edges of each type, and anything in between.
const int32 = fc.oneof(fc.constantFrom(0, -1, 1, 255, 256, 2 ** 31 - 1, -(2 ** 31)), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }));
const uint32 = fc.oneof(fc.constantFrom(0, 1, 64, 65, 2 ** 32 - 1), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
const int64 = fc.oneof(fc.constantFrom(0n, -1n, 2n ** 63n - 1n, -(2n ** 63n)), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }));
const uint64 = fc.oneof(fc.constantFrom(0n, 6n, 2n ** 64n - 1n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
const text = fc.oneof(
  { weight: 5, arbitrary: fc.string({ maxLength: 40, unit: "binary" }) },
  { weight: 1, arbitrary: fc.constantFrom("created", "running", "stopped", "cpu.stat", "\u001b[2J\r\n") },
  { weight: 1, arbitrary: fc.nat({ max: 300_000 }).map((length) => "x".repeat(length)) },
);
const bytes = fc.oneof({ weight: 5, arbitrary: fc.uint8Array({ maxLength: 64 }) }, { weight: 1, arbitrary: fc.constantFrom(1 << 20, (1 << 20) + 1).map((length) => new Uint8Array(length)) });

function scalarValue(type: ScalarType): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.double();
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return int32;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return uint32;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64;
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return uint64;
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.STRING:
      return text;
    case ScalarType.BYTES:
      return bytes;
  }
}

function zeroOf(type: ScalarType): unknown {
  if (type === ScalarType.STRING) return "";
  if (type === ScalarType.BYTES) return new Uint8Array();
  if (type === ScalarType.BOOL) return false;
  return [ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64].includes(type) ? 0n : 0;
}

function fieldValue(field: DescField, depth: number): fc.Arbitrary<unknown> | undefined {
  switch (field.fieldKind) {
    case "scalar":
      return scalarValue(field.scalar);
    case "enum":
      return int32;
    case "message":
      return depth > 2 ? undefined : messageValue(field.message, depth + 1);
    case "list": {
      const item = field.listKind === "scalar" ? scalarValue(field.scalar) : field.listKind === "enum" ? int32 : depth > 2 ? undefined : messageValue(field.message, depth + 1);
      // Now and then far more items than any bound allows (listProcesses' 65,536).
      const many = field.listKind === "message" ? {} : field.listKind === "enum" ? 0 : zeroOf(field.scalar);
      return item && fc.oneof({ weight: 9, arbitrary: fc.array(item, { maxLength: 4 }) }, { weight: 1, arbitrary: fc.constant(70_000).map((count) => Array<unknown>(count).fill(many)) });
    }
    case "map": {
      const value = field.mapKind === "scalar" ? scalarValue(field.scalar) : field.mapKind === "enum" ? int32 : undefined;
      return value && field.mapKey === ScalarType.STRING ? fc.dictionary(text.filter((key) => key.length < 100), value, { maxKeys: 4 }) : undefined;
    }
  }
}

/** Any well-formed message of `schema` (oneof members are left unset). */
function messageValue(schema: DescMessage, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of schema.fields) {
    if (field.oneof) continue;
    const value = fieldValue(field, depth);
    if (value) fields[field.localName] = value;
  }
  return fc.record(fields, { requiredKeys: [] });
}

const inputs: fc.Arbitrary<Buffer> = fc.nat({ max: CALLS.length - 1 }).chain((index) => {
  const output = CALLS[index]!.method.output; // index is below CALLS.length
  const wellFormed = messageValue(output).map((value) => Buffer.from(toBinary(output, create(output, value))));
  const envelope = wellFormed.map((payload) => Buffer.from(toBinary(ResponseSchema, create(ResponseSchema, { payload }))));
  return fc.oneof(
    bytesNear(envelope).map((rest) => Buffer.concat([Buffer.from([index, 0]), rest])),
    bytesNear(wellFormed).map((rest) => Buffer.concat([Buffer.from([index, 1]), rest])),
    wellFormed.map((rest) => Buffer.concat([Buffer.from([index, 2]), rest])),
    envelope.map((rest) => Buffer.concat([Buffer.from([index, 3]), rest])),
  );
});

/** Runs one call against an agent that answers its request with the input's frame. */
async function check(input: Buffer): Promise<void> {
  if (input.length < 2) return;
  const agentCall = CALLS[input[0]! % CALLS.length]!; // length checked above
  const kind = input[1]! % 4;
  const rest = input.subarray(2);
  const pair = await socketPair();
  try {
    const decoder = new FrameDecoder();
    pair.server.on("data", (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        const request = fromBinary(RequestSchema, frame.data);
        assert.equal(`/${request.service}/${request.method}`, `/${agentCall.method.parent.typeName}/${agentCall.method.name}`);
        const data =
          kind === 0 || kind === 3
            ? rest
            : Buffer.from(toBinary(ResponseSchema, create(ResponseSchema, kind === 1 ? { payload: rest } : { status: { code: rest[0] ?? 2, message: rest.toString("latin1") } })));
        pair.server.write(encodeFrame({ streamId: kind === 3 ? frame.streamId + 2 : frame.streamId, type: FrameType.RESPONSE, flags: 0, data: data.subarray(0, 4 << 20) }));
      }
    });
    const agent = new AgentClient(pair.client, "fuzz", async () => undefined);
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${agentCall.method.name}: no end within ${HANG_MS} ms`)), HANG_MS)));
    try {
      const answer = await Promise.race([agentCall.call(agent), hang]);
      agentCall.bounds?.(answer);
    } catch (error) {
      if (error instanceof Error && error.message.endsWith(`no end within ${HANG_MS} ms`)) throw error;
      expectMoatError(error);
    } finally {
      clearTimeout(timer);
      agent.close();
    }
  } finally {
    pair.close();
  }
}

test("fuzz agent-response: every agent call ends in an answer within the API's bounds or in a MoatError, whatever the agent sends", async () => {
  await fuzzTarget("agent-response", inputs, check, 400);
});
