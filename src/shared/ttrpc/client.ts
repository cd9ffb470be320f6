// The unary ttrpc client. Calls are typed by the method descriptors generated from proto/.
//
// What the peer sends is checked before it is believed: only response frames, only for a
// stream this client opened, only well-formed envelopes. The first violation closes the
// connection and fails every pending call; a response that comes after its call timed out
// is dropped. Pending calls are the only per-call memory, and each has a deadline.

import type { Duplex } from "node:stream";
import { create, fromBinary, toBinary, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { RequestSchema, ResponseSchema, type Response } from "../protocol/index.js";
import { MoatError } from "../errors.js";
import { printable } from "../printable.js";
import { Connection } from "./connection.js";
import { FrameType, type Frame } from "./frame.js";
import { Code, codeName } from "./status.js";

export interface CallOptions {
  /**
   * Deadline for the whole call, also sent to the server as timeout_nano; undefined for a
   * call that legitimately waits without end (a process's exit). Such a call still fails when
   * the connection closes.
   */
  timeoutMs: number | undefined;
}

type UnaryMethod = DescMethod & { methodKind: "unary" };

/**
 * A peer's status message is shown to users (error messages, stderr, runc's --log): it is made
 * printable and cut to this many characters unless the client was given a tighter bound.
 */
const MAX_STATUS_MESSAGE_CHARS = 4096;

interface PendingCall {
  resolve: (response: Response) => void;
  reject: (error: MoatError) => void;
}

export class TtrpcClient {
  private readonly connection: Connection;
  private readonly pending = new Map<number, PendingCall>();
  private nextStreamId = 1;

  /** `maxStatusChars` bounds what is kept of the peer's status messages (a guest's are shorter). */
  constructor(
    stream: Duplex,
    id: string,
    private readonly maxStatusChars = MAX_STATUS_MESSAGE_CHARS,
  ) {
    this.connection = new Connection(stream, id, (frame) => this.receive(frame));
    this.connection.closed.then((reason) => this.failAll(reason));
  }

  get id(): string {
    return this.connection.id;
  }

  /** Resolves with the reason once the connection is closed, by either side. */
  get closed(): Promise<Error> {
    return this.connection.closed;
  }

  async call<M extends UnaryMethod>(
    method: M,
    input: MessageInitShape<M["input"]>,
    options: CallOptions,
  ): Promise<MessageShape<M["output"]>> {
    const where = `ttrpc ${this.id}: ${method.parent.typeName}/${method.name}`;
    const streamId = this.nextStreamId;
    this.nextStreamId += 2; // client streams are odd
    const request = create(RequestSchema, {
      service: method.parent.typeName,
      method: method.name,
      payload: toBinary(method.input, create(method.input, input)),
      timeoutNano: BigInt(options.timeoutMs ?? 0) * 1_000_000n,
    });
    const response = await new Promise<Response>((resolve, reject) => {
      const timer =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.pending.delete(streamId);
              reject(
                new MoatError("MOAT_TTRPC_TIMEOUT", `${where}: no response within ${options.timeoutMs} ms`, {
                  status: Code.DEADLINE_EXCEEDED,
                }),
              );
            }, options.timeoutMs);
      this.pending.set(streamId, {
        resolve: (value) => (clearTimeout(timer), resolve(value)),
        reject: (error) => (clearTimeout(timer), reject(error)),
      });
      const sent = this.connection.send({ streamId, type: FrameType.REQUEST, flags: 0, data: Buffer.from(toBinary(RequestSchema, request)) });
      if (!sent) {
        this.pending.delete(streamId);
        reject(this.closedError(where, new Error("connection is closed")));
        clearTimeout(timer);
      }
    });
    const code = response.status?.code ?? Code.OK;
    if (code !== Code.OK) {
      // The peer's words made safe to show; remoteMessage keeps them as sent, for a peer whose
      // text has a structure (moatd's hint line). A code outside gRPC's set is carried as UNKNOWN.
      const remote = response.status?.message ?? "";
      throw new TtrpcStatusError(`${where}: ${codeName(code)}`, remote, printable(remote, this.maxStatusChars), code in Code ? code : Code.UNKNOWN);
    }
    try {
      return fromBinary(method.output, response.payload) as MessageShape<M["output"]>; // decoded with the schema M["output"] names
    } catch (error) {
      this.connection.close(new Error(`protocol violation: undecodable ${method.output.typeName} on ${method.name}`));
      throw new MoatError("MOAT_TTRPC_PROTOCOL", `${where}: response payload is not a ${method.output.typeName}`, {
        status: Code.DATA_LOSS,
        cause: error,
      });
    }
  }

  /** Closes the connection; pending calls fail with UNAVAILABLE. */
  close(): void {
    this.connection.close(new Error("closed by client"));
  }

  private receive(frame: Frame): void {
    if (frame.type !== FrameType.RESPONSE) {
      this.connection.close(new Error(`protocol violation: unexpected frame type ${frame.type} on stream ${frame.streamId}`));
      return;
    }
    const call = this.pending.get(frame.streamId);
    if (!call) {
      // An odd id below nextStreamId was asked; its call timed out, so the answer is late, not hostile.
      const asked = frame.streamId % 2 === 1 && frame.streamId < this.nextStreamId;
      if (!asked) this.connection.close(new Error(`protocol violation: response on stream ${frame.streamId}, which was never opened`));
      return;
    }
    this.pending.delete(frame.streamId);
    let response: Response;
    try {
      response = fromBinary(ResponseSchema, frame.data);
    } catch (error) {
      // The call is out of `pending` already, so closing alone would never settle it (a long
      // poll would wait forever): it fails with the violation itself.
      const reason = new Error(`protocol violation: undecodable response envelope on stream ${frame.streamId}`);
      call.reject(new MoatError("MOAT_TTRPC_PROTOCOL", `ttrpc ${this.id}: stream ${frame.streamId}: response envelope is not a ttrpc Response`, { status: Code.DATA_LOSS, cause: error }));
      this.connection.close(reason);
      return;
    }
    call.resolve(response);
  }

  private failAll(reason: Error): void {
    for (const [streamId, call] of this.pending) {
      this.pending.delete(streamId);
      call.reject(this.closedError(`ttrpc ${this.id}`, reason));
    }
  }

  private closedError(where: string, reason: Error): MoatError {
    return new MoatError("MOAT_TTRPC_CLOSED", `${where}: connection closed`, { status: Code.UNAVAILABLE, cause: reason });
  }
}

/**
 * A call the server answered with a status other than OK. The message shows the server's text
 * made printable and bounded (`shown`); `remoteMessage` is that text as sent, for callers that
 * trust their server (moatd's clients), never to be shown from a guest.
 */
export class TtrpcStatusError extends MoatError {
  constructor(
    where: string,
    readonly remoteMessage: string,
    shown: string,
    status: Code,
  ) {
    super("MOAT_TTRPC_STATUS", `${where}: ${shown}`, { status });
  }
}
