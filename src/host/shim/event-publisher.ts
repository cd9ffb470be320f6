// Task events to containerd: Events/Forward over ttrpc at the TTRPC_ADDRESS the shim's
// `start` was given. One publisher per address, one queue per publisher: events go out in the
// order they were published (start before exit, exit before delete, for every task), and an
// event containerd could not take (restarting, briefly away) is retried until it is taken or
// RETRY_FOR_MS has passed.
import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { AnySchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MoatError } from "../../shared/errors.js";
import { containerdEventService } from "../../shared/protocol/index.js";
import { tracer } from "../../shared/trace.js";
import { Code, connectUnix, TtrpcClient } from "../../shared/ttrpc/index.js";

const trace = tracer("shim");

const FORWARD_TIMEOUT_MS = 5_000;
/** How long an event is retried while containerd is away (a containerd restart takes seconds). */
const RETRY_FOR_MS = 120_000;
const FIRST_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 1_000;

/** Codes that mean "containerd is not there right now", worth a retry. */
const TRANSIENT = new Set([Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED]);

export class EventPublisher {
  private client: TtrpcClient | undefined;
  private tail: Promise<void> = Promise.resolve();

  constructor(private readonly address: string) {}

  /**
   * Queues one event. `schema` is the event's message (containerd.events.TaskExit …); the Any
   * carries its full name as type_url, which is how containerd's typeurl registry names it.
   */
  publish<D extends DescMessage>(namespace: string, topic: string, schema: D, event: MessageInitShape<D>, at = new Date()): Promise<void> {
    const envelope = {
      timestamp: timestampFromDate(at),
      namespace,
      topic,
      event: create(AnySchema, { typeUrl: schema.typeName, value: toBinary(schema, create(schema, event)) }),
    };
    this.tail = this.tail.then(() => this.deliver(topic, envelope));
    return this.tail;
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }

  private async connect(): Promise<TtrpcClient> {
    const socket = await connectUnix(this.address.replace(/^unix:\/\//, ""));
    socket.unref(); // a connection to containerd must not keep an idle moatd alive
    return new TtrpcClient(socket, `containerd ${this.address}`);
  }

  private async deliver(topic: string, envelope: MessageInitShape<typeof containerdEventService.EnvelopeSchema>): Promise<void> {
    const giveUpAt = Date.now() + RETRY_FOR_MS;
    for (let backoffMs = FIRST_BACKOFF_MS; ; backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS)) {
      try {
        this.client ??= await this.connect();
        await this.client.call(containerdEventService.Events.method.forward, { envelope }, { timeoutMs: FORWARD_TIMEOUT_MS });
        trace(this.address, `forwarded ${topic}`);
        return;
      } catch (error) {
        const transient = !(error instanceof MoatError) || TRANSIENT.has(error.status); // socket errors (ECONNREFUSED, ENOENT) are not MoatErrors
        this.close();
        if (!transient || Date.now() >= giveUpAt) {
          trace(this.address, `dropped ${topic}: ${String(error)}`);
          return;
        }
        await sleep(backoffMs);
      }
    }
  }
}
