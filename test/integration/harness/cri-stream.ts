// A client for what containerd's CRI stream server speaks (issue 12 item 4): Exec, Attach and
// PortForward answer with a URL on that server (127.0.0.1 here), and the session runs there
// over a WebSocket (Kubernetes' channel protocol, subprotocol `v4.channel.k8s.io`; the server
// also speaks SPDY/3.1, which kubectl used to use, but not this client). Every binary message
// starts with one byte naming its channel. Exec and Attach: 0 stdin, 1 stdout, 2 stderr,
// 3 error (v4: a JSON Status when the process ends: "Success", or "Failure" with the exit code
// among its causes), 4 resize (the client's JSON {"Width","Height"}); the server first sends
// an empty message on the lowest channel it writes. PortForward: a pair per requested port,
// data (2k) and error (2k+1); the server first sends the port, two bytes little-endian, on
// both; then data on 2k is the connection's bytes each way.
import { WebSocket, type RawData } from "ws";

export const CHANNEL_PROTOCOL = "v4.channel.k8s.io";
export const STDIN = 0;
export const STDOUT = 1;
export const STDERR = 2;
export const ERROR = 3;
export const RESIZE = 4;

/** One channel-protocol session: what arrived per channel, and what the error channel said. */
export class ChannelSession {
  private readonly received = new Map<number, Buffer[]>();
  private waiters: Array<() => void> = [];
  /** Resolves when the server closes the session. */
  readonly closed: Promise<void>;

  private constructor(private readonly socket: WebSocket) {
    socket.on("message", (data: RawData) => {
      const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (bytes.length === 0) return;
      const channel = bytes[0]!; // length checked on the line above
      const list = this.received.get(channel) ?? [];
      list.push(bytes.subarray(1));
      this.received.set(channel, list);
      this.wake();
    });
    this.closed = new Promise((resolve) => socket.once("close", () => (this.wake(), resolve())));
  }

  /** Dials `url` (http:// from CRI, dialled as ws://) with the v4 channel protocol. */
  static open(url: string): Promise<ChannelSession> {
    const socket = new WebSocket(url.replace(/^http/, "ws"), [CHANNEL_PROTOCOL]);
    return new Promise((resolve, reject) => {
      socket.once("open", () => {
        if (socket.protocol !== CHANNEL_PROTOCOL) reject(new Error(`stream server chose subprotocol "${socket.protocol}", not ${CHANNEL_PROTOCOL}`));
        else resolve(new ChannelSession(socket));
      });
      socket.once("unexpected-response", (_request, response) => reject(new Error(`stream server answered ${response.statusCode} to ${url}`)));
      socket.once("error", reject);
    });
  }

  /** Everything received on `channel` so far (without channel bytes). */
  bytes(channel: number): Buffer {
    return Buffer.concat(this.received.get(channel) ?? []);
  }

  text(channel: number): string {
    return this.bytes(channel).toString();
  }

  send(channel: number, data: string | Buffer): void {
    this.socket.send(Buffer.concat([Buffer.from([channel]), Buffer.from(data)]));
  }

  /** Tells the terminal its new size (resize channel). */
  resize(width: number, height: number): void {
    this.send(RESIZE, JSON.stringify({ Width: width, Height: height }));
  }

  /** Waits until `predicate` holds, the session closes, or `timeoutMs` passes; returns whether it holds. */
  async until(predicate: () => boolean, timeoutMs = 120_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (this.socket.readyState === WebSocket.CLOSED || Date.now() > deadline) return predicate();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.waiters.push(() => (clearTimeout(timer), resolve()));
      });
    }
    return true;
  }

  /**
   * The exit code the v4 error channel reported once the session closed: 0 for "Success",
   * the ExitCode cause of a "Failure", undefined if it said nothing parseable.
   */
  exitCode(): number | undefined {
    const text = this.text(ERROR);
    if (text === "") return undefined;
    const status = JSON.parse(text) as { status?: string; details?: { causes?: Array<{ reason?: string; message?: string }> } }; // a metav1.Status, as the v4 protocol sends it
    if (status.status === "Success") return 0;
    const cause = status.details?.causes?.find((entry) => entry.reason === "ExitCode");
    return cause?.message === undefined ? undefined : Number(cause.message);
  }

  close(): void {
    this.socket.close();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }
}

/**
 * A port-forward session to one port: `data()` is what the pod's port sent, `error()` what the
 * server reported (a failed dial), both without the leading port bytes.
 */
export class PortForwardSession {
  private constructor(
    private readonly session: ChannelSession,
    readonly port: number,
  ) {}

  static async open(url: string, port: number): Promise<PortForwardSession> {
    const session = await ChannelSession.open(url);
    const forwarded = new PortForwardSession(session, port);
    // The server names the port on both channels before anything else.
    await session.until(() => session.bytes(0).length >= 2 && session.bytes(1).length >= 2);
    for (const channel of [0, 1]) {
      const named = session.bytes(channel).readUInt16LE(0);
      if (named !== port) throw new Error(`port-forward: channel ${channel} names port ${named}, not ${port}`);
    }
    return forwarded;
  }

  write(data: string | Buffer): void {
    this.session.send(0, data);
  }

  data(): string {
    return this.session.bytes(0).subarray(2).toString();
  }

  error(): string {
    return this.session.bytes(1).subarray(2).toString();
  }

  until(predicate: () => boolean, timeoutMs?: number): Promise<boolean> {
    return this.session.until(predicate, timeoutMs);
  }

  get closed(): Promise<void> {
    return this.session.closed;
  }

  close(): void {
    this.session.close();
  }
}
