// The guest's half of the resolver relay (docs/networking.md, "Docker's names"). Docker writes
// `nameserver 127.0.0.11` into a container's resolv.conf on its user-defined networks: its
// embedded DNS, reached in the container's namespace on the host. In the guest that address is
// the guest's own loopback, so the agent answers there (UDP 127.0.0.11:53) and hands each
// query to the host (ReadDnsQueries), which sends it to 127.0.0.11:53 in the sandbox's host
// namespace and hands the answer back (WriteDnsAnswers). Everything here is bounded: query and
// answer sizes, queries waiting for the host, queries outstanding, and how long one may be.
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { log } from "./log.js";

export const DNS_ADDRESS = "127.0.0.11";
const DNS_PORT = 53;
const HEADER_BYTES = 12;
/** Plain DNS over UDP: a query larger than this is no query a resolver sends. */
export const MAX_QUERY_BYTES = 512;
/** EDNS answers may be larger than 512 bytes; none larger than this is relayed. */
export const MAX_ANSWER_BYTES = 4096;
/** Queries sent to the host and not answered yet; more are dropped (a client retries). */
export const MAX_OUTSTANDING = 64;
/** An unanswered query is forgotten after this long (its client has given up by then). */
const QUERY_LIFETIME_MS = 10_000;

interface Outstanding {
  clientId: number;
  client: RemoteInfo;
  at: number;
}

export class DnsRelay {
  private socket: Socket | undefined;
  private starting: Promise<void> | undefined;
  private readonly waiting: Buffer[] = [];
  private readonly outstanding = new Map<number, Outstanding>();
  private nextId = 1;
  private wake: (() => void) | undefined;
  private dropped = 0;

  /** Listens on 127.0.0.11:53 the first time it is called. */
  private start(): Promise<void> {
    this.starting ??= new Promise<void>((resolve, reject) => {
      const socket = createSocket({ type: "udp4" });
      socket.once("error", (error) => reject(new MoatError("MOAT_GUEST_DNS", `guest: cannot answer DNS on ${DNS_ADDRESS}:${DNS_PORT}`, { cause: error, status: Code.FAILED_PRECONDITION })));
      socket.bind(DNS_PORT, DNS_ADDRESS, () => {
        socket.removeAllListeners("error");
        socket.on("error", (error) => log(`dns: ${String(error)}`));
        socket.on("message", (message, client) => this.query(message, client));
        this.socket = socket;
        log(`dns: answering on ${DNS_ADDRESS}:${DNS_PORT}, relayed to the host`);
        resolve();
      });
    });
    return this.starting;
  }

  private query(message: Buffer, client: RemoteInfo): void {
    this.expire();
    if (message.length < HEADER_BYTES || message.length > MAX_QUERY_BYTES || this.outstanding.size + this.waiting.length >= MAX_OUTSTANDING) {
      if (this.dropped++ % 100 === 0) log(`dns: dropped a query of ${message.length} bytes (${this.outstanding.size} outstanding; ${this.dropped} dropped so far)`);
      return;
    }
    let id = this.nextId;
    while (this.outstanding.has(id)) id = (id % 0xffff) + 1;
    this.nextId = (id % 0xffff) + 1;
    this.outstanding.set(id, { clientId: message.readUInt16BE(0), client, at: Date.now() });
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
      if (!entry || !this.socket) continue;
      this.outstanding.delete(message.readUInt16BE(0));
      message.writeUInt16BE(entry.clientId, 0);
      this.socket.send(message, entry.client.port, entry.client.address);
    }
  }
}
