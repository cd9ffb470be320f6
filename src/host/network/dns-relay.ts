// The host's half of a sandbox's resolver relay (docs/networking.md, "Docker's names"): the
// guest's queries to 127.0.0.11:53 (the agent answers there, ReadDnsQueries) go to
// `moat-dns-relay`, which sends them to 127.0.0.11:53 in the sandbox's own host namespace,
// where Docker's embedded DNS answers; the answers go back (WriteDnsAnswers). The guest is
// hostile: the agent client bounds each batch and each query's size, and here the rate (a token
// bucket) and the bytes waiting for the relay are bounded; what is over is dropped, as a lost
// datagram would be, and a client retries. Nothing the guest sends chooses an address.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { tracer } from "../../shared/trace.js";
import { Code } from "../../shared/ttrpc/index.js";
import { packageRoot } from "../config/index.js";

const trace = tracer("network");

/** What the relay needs of the guest: the agent's two calls. */
export interface DnsPeer {
  readDnsQueries(maxQueries: number): Promise<Uint8Array[]>;
  writeDnsAnswers(answers: Uint8Array[]): Promise<void>;
}

const BATCH = 16;
/** Queries per second a guest may relay, and how many it may send at once after a quiet spell. */
export const RATE_PER_SECOND = 100;
export const BURST = 200;
/** Bytes waiting to be written to moat-dns-relay; more are dropped. */
const MAX_PENDING_BYTES = 64 * 1024;
const MAX_ANSWER_BYTES = 4096;

/** A token bucket: take() says whether one more query may go now. */
export class RateLimit {
  private tokens: number;
  private at: number;
  constructor(private readonly perSecond: number, private readonly burst: number, private readonly now: () => number = () => performance.now()) {
    this.tokens = burst;
    this.at = now();
  }
  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.perSecond);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Splits `moat-dns-relay`'s output into its frames (u16 length, message); keeps a partial one for the next chunk. */
export class FrameReader {
  private buffered = Buffer.alloc(0);
  push(chunk: Buffer): Buffer[] {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    const frames: Buffer[] = [];
    while (this.buffered.length >= 2) {
      const length = this.buffered.readUInt16BE(0);
      if (this.buffered.length < 2 + length) break;
      frames.push(this.buffered.subarray(2, 2 + length));
      this.buffered = this.buffered.subarray(2 + length);
    }
    return frames;
  }
}

export class DnsRelay {
  private stopped = false;
  private dropped = 0;

  private constructor(private readonly child: ChildProcess, private readonly guest: DnsPeer, private readonly where: string) {}

  /** Starts relaying the guest's queries into network namespace `netns`. */
  static start(netns: string, guest: DnsPeer, where: string): DnsRelay {
    const binary = join(packageRoot(), "dist", "bin", "moat-dns-relay");
    if (!existsSync(binary)) throw new MoatError("MOAT_NETNS_CONNECT", `${where}: ${binary} does not exist`, { hint: "make build", status: Code.FAILED_PRECONDITION });
    const child = spawn(binary, [netns], { stdio: ["pipe", "pipe", "pipe"] });
    const relay = new DnsRelay(child, guest, where);
    child.on("error", (error) => trace(where, `dns relay: ${String(error)}`));
    child.stdin!.on("error", () => undefined); // its exit is traced below
    child.stderr!.setEncoding("utf8").on("data", (text: string) => trace(where, `dns relay: ${text.trim().slice(0, 500)}`));
    child.once("exit", (code, signal) => {
      if (!relay.stopped) trace(where, `dns relay exited (${signal ?? code})`);
      relay.stopped = true;
    });
    const frames = new FrameReader();
    child.stdout!.on("data", (chunk: Buffer) => {
      const answers = frames.push(chunk).filter((answer) => answer.length >= 12 && answer.length <= MAX_ANSWER_BYTES);
      if (answers.length > 0) void guest.writeDnsAnswers(answers).catch((error: unknown) => trace(where, `dns answers: ${String(error)}`));
    });
    void relay.pump();
    trace(where, `relaying the guest's DNS on 127.0.0.11:53 to 127.0.0.11:53 in ${netns}`);
    return relay;
  }

  private async pump(): Promise<void> {
    const limit = new RateLimit(RATE_PER_SECOND, BURST);
    while (!this.stopped) {
      let queries: Uint8Array[];
      try {
        queries = await this.guest.readDnsQueries(BATCH);
      } catch (error) {
        // The guest went away, or answered outside the agent API's bounds: no more relaying.
        if (!this.stopped) trace(this.where, `dns relay stops: ${String(error)}`);
        this.stop();
        return;
      }
      for (const query of queries) {
        const stdin = this.child.stdin!; // spawned with a "pipe"
        if (this.stopped || !limit.take() || stdin.writableLength > MAX_PENDING_BYTES) {
          if (this.dropped++ % 100 === 0) trace(this.where, `dns relay: dropped a query (${this.dropped} so far: over ${RATE_PER_SECOND}/s or the relay is behind)`);
          continue;
        }
        const header = Buffer.alloc(2);
        header.writeUInt16BE(query.length, 0);
        stdin.write(Buffer.concat([header, query]));
      }
    }
  }

  /** Stops the relay process; the guest's pending call ends with the agent connection. */
  stop(): void {
    this.stopped = true;
    this.child.stdin?.end();
    this.child.kill("SIGKILL");
  }
}
