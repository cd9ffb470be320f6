// The guest's half of the resolver relay (docs/networking.md, "Docker's names"). Docker writes
// `nameserver 127.0.0.11` into a container's resolv.conf on its user-defined networks: its
// embedded DNS, reached in the container's namespace on the host. In the guest that address is
// the guest's own loopback, so the agent answers there (UDP and TCP 127.0.0.11:53) and hands each
// query to the host (ReadDnsQueries), which sends it to 127.0.0.11:53 in the sandbox's host
// namespace and hands the answer back (WriteDnsAnswers). Everything here is bounded: query and
// answer sizes, queries waiting for the host, queries outstanding, and how long one may be.
import { createSocket } from "node:dgram";
import { createServer, type Socket as TcpSocket } from "node:net";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { log } from "./log.js";

export const DNS_ADDRESS = "127.0.0.11";
export const DNS_PORT = 53;
const HEADER_BYTES = 12;
/** Plain DNS over UDP: a query larger than this is no query a resolver sends. */
export const MAX_QUERY_BYTES = 512;
/** EDNS answers may be larger than 512 bytes; none larger than this is relayed. */
export const MAX_ANSWER_BYTES = 4096;
/** Queries sent to the host and not answered yet; more are dropped (a client retries). */
export const MAX_OUTSTANDING = 64;
/** An unanswered query is forgotten after this long (its client has given up by then). */
const QUERY_LIFETIME_MS = 10_000;

/** TCP clients at once (DNS over TCP: each message after a u16 length); more are refused. */
export const MAX_TCP_CLIENTS = 16;
/** A TCP client that sends more than this without a whole message is dropped. */
const MAX_TCP_BUFFER_BYTES = 2 + MAX_QUERY_BYTES;

interface Outstanding {
  clientId: number;
  /** Sends the answer to the client the query came from (a UDP datagram, or a TCP message). */
  reply: (answer: Buffer) => void;
  at: number;
}

export class DnsRelay {
  private readonly tcpClients = new Set<TcpSocket>();
  private starting: Promise<void> | undefined;
  private readonly waiting: Buffer[] = [];
  private readonly outstanding = new Map<number, Outstanding>();
  private nextId = 1;
  private wake: (() => void) | undefined;
  private dropped = 0;
  private readonly closers: Array<() => void> = [];

  /** `address` and `port`: where it answers (127.0.0.11:53; a test's own otherwise). */
  constructor(private readonly address = DNS_ADDRESS, private readonly port = DNS_PORT) {}

  /** Listens on 127.0.0.11:53 the first time it is called. */
  private start(): Promise<void> {
    this.starting ??= new Promise<void>((resolve, reject) => {
      const socket = createSocket({ type: "udp4" });
      socket.once("error", (error) => reject(new MoatError("MOAT_GUEST_DNS", `guest: cannot answer DNS on ${DNS_ADDRESS}:${DNS_PORT}`, { cause: error, status: Code.FAILED_PRECONDITION })));
      socket.bind(this.port, this.address, () => {
        socket.removeAllListeners("error");
        socket.on("error", (error) => log(`dns: ${String(error)}`));
        this.closers.push(() => socket.close());
        socket.on("message", (message, client) => this.query(message, (answer) => socket.send(answer, client.port, client.address)));
        const tcp = createServer((client) => this.tcpClient(client));
        this.closers.push(() => tcp.close());
        tcp.once("error", (error) => reject(new MoatError("MOAT_GUEST_DNS", `guest: cannot answer DNS over TCP on ${DNS_ADDRESS}:${DNS_PORT}`, { cause: error, status: Code.FAILED_PRECONDITION })));
        tcp.listen(this.port, this.address, () => {
          tcp.removeAllListeners("error");
          tcp.on("error", (error) => log(`dns: tcp: ${String(error)}`));
          log(`dns: answering on ${this.address}:${this.port} (UDP and TCP), relayed to the host`);
          resolve();
        });
      });
    });
    return this.starting;
  }

  /** Stops answering (a test's; the agent's answers as long as it runs). */
  close(): void {
    for (const close of this.closers.splice(0)) close();
    for (const client of this.tcpClients) client.destroy();
  }

  /** One DNS-over-TCP client: messages after a u16 length each way; bounded in number and buffer. */
  private tcpClient(client: TcpSocket): void {
    if (this.tcpClients.size >= MAX_TCP_CLIENTS) {
      client.destroy();
      return;
    }
    this.tcpClients.add(client);
    client.once("close", () => this.tcpClients.delete(client));
    client.on("error", () => undefined); // a client that resets is gone; nothing to tell
    client.setTimeout(QUERY_LIFETIME_MS, () => client.destroy());
    let buffered = Buffer.alloc(0);
    client.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const message = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
        buffered = buffered.subarray(2 + message.length);
        this.query(Buffer.from(message), (answer) => {
          if (client.destroyed) return;
          const header = Buffer.alloc(2);
          header.writeUInt16BE(answer.length, 0);
          client.write(Buffer.concat([header, answer]));
        });
      }
      if (buffered.length > MAX_TCP_BUFFER_BYTES) client.destroy();
    });
  }

  private query(message: Buffer, reply: (answer: Buffer) => void): void {
    this.expire();
    if (message.length < HEADER_BYTES || message.length > MAX_QUERY_BYTES || this.outstanding.size >= MAX_OUTSTANDING) {
      if (this.dropped++ % 100 === 0) log(`dns: dropped a query of ${message.length} bytes (${this.outstanding.size} outstanding; ${this.dropped} dropped so far)`);
      return;
    }
    let id = this.nextId;
    while (this.outstanding.has(id)) id = (id % 0xffff) + 1;
    this.nextId = (id % 0xffff) + 1;
    this.outstanding.set(id, { clientId: message.readUInt16BE(0), reply, at: Date.now() });
    const relayed = Buffer.from(message);
    relayed.writeUInt16BE(id, 0);
    this.waiting.push(relayed);
    this.wake?.();
  }

  private expire(): void {
    const now = Date.now();
    for (const [id, entry] of this.outstanding) if (now - entry.at > QUERY_LIFETIME_MS) this.outstanding.delete(id);
  }

  /** The next queries (at most `max`), once there are any; ends empty when `signal` fires. */
  async read(max: number, signal: AbortSignal): Promise<Buffer[]> {
    await this.start();
    while (this.waiting.length === 0 && !signal.aborted) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
      this.wake = undefined;
    }
    return this.waiting.splice(0, Math.max(1, Math.min(max, MAX_OUTSTANDING)));
  }

  /** Sends each answer to the client whose query had its id; others are dropped. */
  write(answers: Uint8Array[]): void {
    if (answers.length > MAX_OUTSTANDING) throw new MoatError("MOAT_GUEST_DNS", `guest: WriteDnsAnswers: at most ${MAX_OUTSTANDING} answers, got ${answers.length}`, { status: Code.INVALID_ARGUMENT });
    for (const answer of answers) {
      if (answer.length < HEADER_BYTES || answer.length > MAX_ANSWER_BYTES) continue;
      const message = Buffer.from(answer);
      const entry = this.outstanding.get(message.readUInt16BE(0));
      if (!entry) continue;
      this.outstanding.delete(message.readUInt16BE(0));
      message.writeUInt16BE(entry.clientId, 0);
      entry.reply(message);
    }
  }
}
