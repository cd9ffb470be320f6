// The guest's half of CRI PortForward (docs/networking.md, "Port forwarding"): the host's
// relay hands over each TCP connection made to localhost:PORT in the pod's host-side network
// namespace, and the agent dials 127.0.0.1:PORT here (then ::1:PORT, the order containerd
// tries) in the guest's namespace, which a pod's containers share (guest-spec.ts drops their
// network namespace path). Bytes move with Read and Write calls. Bounded: connections at once,
// bytes buffered per connection (the socket is paused past that, so a guest server that
// floods waits for the host to read), bytes per call. A connection belongs to the host
// session that dialled it: another session cannot touch it, and it goes when that one ends.
import { connect, type Socket } from "node:net";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

/** Connections open at once (all sessions); more Dials are refused. */
export const MAX_CONNECTIONS = 64;
/** Bytes read from a guest socket and not yet taken by the host; the socket is paused past this. */
export const MAX_BUFFERED_BYTES = 256 * 1024;
/** The most bytes one Read returns or one Write carries (the frame cap is 4 MiB). */
export const MAX_IO_BYTES = 1 << 20;

/** The host session a call came on; undefined only for a caller outside a ttrpc server (tests). */
export interface Session {
  id: string;
  closed: Promise<Error>;
}

interface Connection {
  readonly id: number;
  readonly session: string;
  readonly socket: Socket;
  chunks: Buffer[];
  buffered: number;
  /** The guest's end half-closed (or the connection was closed): no more bytes will come. */
  ended: boolean;
  /** What broke the socket, once something did. */
  failure: string | undefined;
  reading: boolean;
  wake: (() => void) | undefined;
}

export class PortForwards {
  private readonly connections = new Map<number, Connection>();
  private dialling = 0;
  private nextId = 1;
  private readonly watched = new Set<string>();

  /** `addresses`: where a port is dialled, in order (a test's own otherwise). */
  constructor(private readonly addresses: readonly string[] = ["127.0.0.1", "::1"]) {}

  get size(): number {
    return this.connections.size;
  }

  /** Dials `port` for `session`; the connection's id and the address that answered. */
  async dial(port: number, session: Session, signal: AbortSignal): Promise<{ connectionId: number; address: string }> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(`port ${port} is not 1 to 65535`);
    if (this.connections.size + this.dialling >= MAX_CONNECTIONS) {
      throw new MoatError("MOAT_GUEST_PORT_FORWARD", `guest: port ${port}: ${MAX_CONNECTIONS} forwarded connections are open already`, { status: Code.RESOURCE_EXHAUSTED });
    }
    this.dialling++;
    let socket: Socket | undefined;
    const failures: string[] = [];
    let address = "";
    try {
      for (const candidate of this.addresses) {
        signal.throwIfAborted();
        try {
          socket = await dialOnce(candidate, port, signal);
          address = candidate;
          break;
        } catch (error) {
          failures.push(`${candidate}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`); // a socket error carries its errno name
        }
      }
    } finally {
      this.dialling--;
    }
    if (!socket) throw new MoatError("MOAT_GUEST_PORT_REFUSED", `guest: port ${port}: nothing answers on localhost (${failures.join(", ")})`, { status: Code.UNAVAILABLE });
    if (!this.watched.has(session.id)) {
      this.watched.add(session.id);
      void session.closed.then(() => {
        this.watched.delete(session.id);
        for (const entry of [...this.connections.values()]) if (entry.session === session.id) this.close(entry.id, session);
      });
    }
    let id = this.nextId;
    this.nextId = id >= 0xffffffff ? 1 : id + 1;
    while (this.connections.has(id)) id = id >= 0xffffffff ? 1 : id + 1;
    const entry: Connection = { id, session: session.id, socket, chunks: [], buffered: 0, ended: false, failure: undefined, reading: false, wake: undefined };
    this.connections.set(id, entry);
    socket.on("data", (chunk: Buffer) => {
      entry.chunks.push(chunk);
      entry.buffered += chunk.length;
      if (entry.buffered >= MAX_BUFFERED_BYTES) socket.pause(); // resumed by read() once the host took some
      entry.wake?.();
    });
    socket.once("end", () => {
      entry.ended = true;
      entry.wake?.();
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      entry.failure ??= error.code ?? error.message;
      entry.wake?.();
    });
    socket.once("close", () => {
      entry.ended = true;
      entry.wake?.();
    });
    return { connectionId: id, address };
  }

  /** The next bytes of connection `id` (at most `maxBytes`), once there are some; eof once its end half-closed. */
  async read(id: number, maxBytes: number, session: Session, signal: AbortSignal): Promise<{ data: Buffer; eof: boolean }> {
    const entry = this.find(id, session);
    if (maxBytes < 1 || maxBytes > MAX_IO_BYTES) throw invalid(`connection ${id}: max_bytes ${maxBytes} is not 1 to ${MAX_IO_BYTES}`);
    if (entry.reading) throw new MoatError("MOAT_GUEST_PORT_FORWARD", `guest: connection ${id}: a Read is under way already`, { status: Code.FAILED_PRECONDITION });
    entry.reading = true;
    try {
      while (entry.buffered === 0 && !entry.ended && entry.failure === undefined && !signal.aborted) {
        await new Promise<void>((resolve) => {
          entry.wake = resolve;
          signal.addEventListener("abort", () => resolve(), { once: true });
        });
        entry.wake = undefined;
      }
    } finally {
      entry.reading = false;
    }
    if (entry.buffered === 0) {
      if (entry.failure !== undefined && !entry.ended) throw new MoatError("MOAT_GUEST_PORT_FORWARD", `guest: connection ${id}: ${entry.failure}`, { status: Code.UNAVAILABLE });
      return { data: Buffer.alloc(0), eof: entry.ended || entry.failure !== undefined };
    }
    const taken: Buffer[] = [];
    let size = 0;
    while (entry.chunks.length > 0 && size < maxBytes) {
      const chunk = entry.chunks[0]!; // the loop's condition says there is one
      const room = maxBytes - size;
      if (chunk.length <= room) {
        taken.push(chunk);
        entry.chunks.shift();
        size += chunk.length;
      } else {
        taken.push(chunk.subarray(0, room));
        entry.chunks[0] = chunk.subarray(room);
        size += room;
      }
    }
    entry.buffered -= size;
    if (entry.buffered < MAX_BUFFERED_BYTES && entry.socket.isPaused()) entry.socket.resume();
    return { data: Buffer.concat(taken, size), eof: false };
  }

  /** Sends `data` to connection `id`'s guest end; resolves once its socket took it. */
  async write(id: number, data: Uint8Array, session: Session): Promise<void> {
    const entry = this.find(id, session);
    if (data.length > MAX_IO_BYTES) throw invalid(`connection ${id}: a write of ${data.length} bytes is over ${MAX_IO_BYTES}`);
    if (entry.socket.destroyed || entry.socket.writableEnded) throw new MoatError("MOAT_GUEST_PORT_FORWARD", `guest: connection ${id}: its guest end is closed for writing`, { status: Code.FAILED_PRECONDITION });
    await new Promise<void>((resolve, reject) =>
      entry.socket.write(data, (error) => (error ? reject(new MoatError("MOAT_GUEST_PORT_FORWARD", `guest: connection ${id}: write: ${error.message}`, { status: Code.UNAVAILABLE })) : resolve())),
    );
  }

  /** Half-closes connection `id`: its guest end reads end-of-file. */
  closeWrite(id: number, session: Session): void {
    this.find(id, session).socket.end();
  }

  /** Ends connection `id`; one already gone (or never this session's) is no error. */
  close(id: number, session: Session): void {
    const entry = this.connections.get(id);
    if (!entry || entry.session !== session.id) return;
    this.connections.delete(id);
    entry.socket.destroy();
    entry.ended = true;
    entry.chunks = [];
    entry.buffered = 0;
    entry.wake?.();
  }

  private find(id: number, session: Session): Connection {
    const entry = this.connections.get(id);
    if (!entry || entry.session !== session.id) throw new MoatError("MOAT_GUEST_PORT_FORWARD", `guest: connection ${id}: no such forwarded connection in this session`, { status: Code.NOT_FOUND });
    return entry;
  }
}

/** One connect to `address`:`port`; rejects with the socket's error, or when `signal` fires. */
function dialOnce(address: string, port: number, signal: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address, port, noDelay: true });
    const onAbort = () => {
      socket.destroy();
      reject(signal.reason ?? new Error("aborted"));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("connect", () => {
      signal.removeEventListener("abort", onAbort);
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (error) => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(error);
    });
  });
}

function invalid(what: string): MoatError {
  return new MoatError("MOAT_GUEST_PORT_FORWARD", `guest: ${what}`, { status: Code.INVALID_ARGUMENT });
}
