// The unary ttrpc server. Services are registered with their generated descriptors and an
// implementation object; each request is decoded, dispatched, and answered with a Response
// whose status says what went wrong. Errors turn into wire status here and only here.

import type { Duplex } from "node:stream";
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescService,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import { RequestSchema, ResponseSchema, type Request } from "../protocol/index.js";
import { describeCause, MoatError } from "../errors.js";
import { Connection } from "./connection.js";
import { FrameType, MAX_DATA_BYTES, type Frame } from "./frame.js";
import { Code } from "./status.js";

export interface CallContext {
  /** Aborted when the caller's deadline passes or the connection closes. */
  signal: AbortSignal;
  /** Runs `action` once the response has been written (or could not be). */
  afterResponse(action: () => void): void;
  /** The connection the call came on (one host session): what it opens can go when it closes. */
  session?: { id: string; closed: Promise<Error> };
}

type MethodImpl<M extends DescMethod> = (
  request: MessageShape<M["input"]>,
  context: CallContext,
) => Promise<MessageInitShape<M["output"]>>;

/** An implementation of every method of a generated service, by local name. */
export type ServiceImplementation<S extends DescService> = {
  [K in keyof S["method"]]: MethodImpl<S["method"][K]>;
};

interface Route {
  input: DescMessage;
  output: DescMessage;
  handle: (request: never, context: CallContext) => Promise<unknown>;
}

/** Requests served at once on one connection; more are answered RESOURCE_EXHAUSTED. */
const MAX_CONCURRENT_REQUESTS = 128;

export class TtrpcServer {
  private readonly routes = new Map<string, Route>();

  register<S extends DescService>(service: S, implementation: ServiceImplementation<S>): void {
    for (const method of service.methods) {
      if (method.methodKind !== "unary") continue; // streaming methods are not served yet
      const handle = (implementation as Record<string, Route["handle"]>)[method.localName]; // keys are the service's local names
      if (!handle) throw new Error(`ttrpc server: ${service.typeName}/${method.name} has no implementation`);
      this.routes.set(`${service.typeName}/${method.name}`, {
        input: method.input,
        output: method.output,
        handle: handle.bind(implementation),
      });
    }
  }

  /** Serves one connection until it closes. */
  serve(stream: Duplex, id: string): Connection {
    const active = new Map<number, AbortController>();
    const connection: Connection = new Connection(stream, id, (frame) => this.receive(connection, active, frame));
    connection.closed.then(() => {
      for (const controller of active.values()) controller.abort();
    });
    return connection;
  }

  private receive(connection: Connection, active: Map<number, AbortController>, frame: Frame): void {
    if (frame.type !== FrameType.REQUEST) {
      connection.close(new Error(`protocol violation: unexpected frame type ${frame.type} on stream ${frame.streamId}`));
      return;
    }
    if (frame.streamId % 2 !== 1 || active.has(frame.streamId)) {
      connection.close(new Error(`protocol violation: request on stream ${frame.streamId}, which is even or already in use`));
      return;
    }
    if (active.size >= MAX_CONCURRENT_REQUESTS) {
      respond(connection, frame.streamId, Code.RESOURCE_EXHAUSTED, `more than ${MAX_CONCURRENT_REQUESTS} requests in flight`);
      return;
    }
    let request: Request;
    try {
      request = fromBinary(RequestSchema, frame.data);
    } catch {
      respond(connection, frame.streamId, Code.INVALID_ARGUMENT, "request envelope is not a ttrpc.Request");
      return;
    }
    const controller = new AbortController();
    const afterResponse: Array<() => void> = [];
    const context: CallContext = { signal: controller.signal, afterResponse: (action) => afterResponse.push(action), session: { id: connection.id, closed: connection.closed } };
    const written = () => afterResponse.forEach((action) => action());
    active.set(frame.streamId, controller);
    this.dispatch(request, controller, context)
      .then(
        (payload) => respond(connection, frame.streamId, Code.OK, "", written, payload),
        (error: unknown) => {
          const status = error instanceof MoatError ? error.status : Code.UNKNOWN;
          respond(connection, frame.streamId, status, describeCause(error), written);
        },
      )
      .finally(() => active.delete(frame.streamId));
  }

  private async dispatch(request: Request, controller: AbortController, context: CallContext): Promise<Uint8Array> {
    const name = `${request.service}/${request.method}`;
    const route = this.routes.get(name);
    if (!route) {
      throw new MoatError("MOAT_TTRPC_UNIMPLEMENTED", `${name}: no such method`, { status: Code.UNIMPLEMENTED });
    }
    let input: unknown;
    try {
      input = fromBinary(route.input, request.payload);
    } catch (error) {
      throw new MoatError("MOAT_TTRPC_BAD_REQUEST", `${name}: payload is not a ${route.input.typeName}`, {
        status: Code.INVALID_ARGUMENT,
        cause: error,
      });
    }
    let timer: NodeJS.Timeout | undefined;
    if (request.timeoutNano > 0n) {
      const timeoutMs = Number(request.timeoutNano / 1_000_000n);
      timer = setTimeout(() => controller.abort(new Error(`deadline of ${timeoutMs} ms passed`)), timeoutMs);
    }
    try {
      const output = await route.handle(input as never, context); // input was decoded with route.input, the schema the handler expects
      return toBinary(route.output, create(route.output, output as MessageInitShape<DescMessage>)); // handlers return their method's output shape
    } finally {
      clearTimeout(timer);
    }
  }
}

function respond(
  connection: Connection,
  streamId: number,
  code: Code,
  message: string,
  onWritten?: () => void,
  payload?: Uint8Array,
): void {
  let data = Buffer.from(toBinary(ResponseSchema, create(ResponseSchema, { status: { code, message }, payload })));
  if (data.length > MAX_DATA_BYTES) {
    const status = { code: Code.RESOURCE_EXHAUSTED, message: `response of ${data.length} bytes exceeds the ${MAX_DATA_BYTES}-byte frame limit` };
    data = Buffer.from(toBinary(ResponseSchema, create(ResponseSchema, { status })));
  }
  connection.send({ streamId, type: FrameType.RESPONSE, flags: 0, data }, onWritten);
}
