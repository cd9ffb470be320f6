// A stand-in for moatd's Task socket that misbehaves on purpose, for the per-task relay's
// tests: for each request it is told what to do by the method's name: answer (an empty,
// successful Response), hang up without answering, or send a frame no ttrpc peer may send.
import { rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { RequestSchema, ResponseSchema } from "../../../src/shared/protocol/index.js";
import { encodeFrame, FrameDecoder, FrameType } from "../../../src/shared/ttrpc/index.js";

export type Behaviour = "answer" | "hang-up" | "garbage";

export class MisbehavingTaskServer {
  /** Methods of the requests received, in order, one list per connection. */
  readonly received: string[][] = [];
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(
    readonly path: string,
    private readonly behaviour: (method: string, connection: number) => Behaviour,
  ) {
    this.server = createServer((socket) => this.serve(socket));
  }

  listen(): Promise<void> {
    rmSync(this.path, { force: true });
    return new Promise((resolve, reject) => this.server.once("error", reject).listen(this.path, resolve));
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
    rmSync(this.path, { force: true });
  }

  private serve(socket: Socket): void {
    const connection = this.received.push([]) - 1;
    const decoder = new FrameDecoder();
    this.sockets.add(socket);
    socket.on("close", () => this.sockets.delete(socket)).on("error", () => undefined);
    socket.on("data", (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        const { method } = fromBinary(RequestSchema, frame.data);
        this.received[connection]!.push(method); // pushed above
        const behaviour = this.behaviour(method, connection);
        if (behaviour === "hang-up") socket.destroy();
        else if (behaviour === "garbage") socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 9, 0]));
        else socket.write(encodeFrame({ streamId: frame.streamId, type: FrameType.RESPONSE, flags: 0, data: Buffer.from(toBinary(ResponseSchema, create(ResponseSchema, {}))) }));
      }
    });
  }
}
