// CRI PortForward into a sandbox on a network namespace path (docs/networking.md, "Port
// forwarding"). containerd serves PortForward by dialling localhost:PORT inside the pod's
// network namespace on the host; with moat the pod's programs are in the guest. So each such
// sandbox has `moat-port-relay` in its namespace, listening on the loopback, and a `nat OUTPUT`
// REDIRECT rule sending every TCP connection to 127.0.0.1 (and ::1) there to it. The relay
// hands each connection to moatd on the unix socket `port.sock` in the sandbox's socket
// directory, with the port it was made to; moatd asks the agent to dial that port on the
// guest's loopback (PortForwardService) and moves the bytes. What the guest sends is checked
// by the agent client; here the connections at once are bounded, one read and one write per
// connection are outstanding at most, and the next read waits until the client took the last,
// so a guest that floods or never answers holds at most its own pod's connections.
// The rules are recorded (port-forward.json) before they are added, and removed by exactly
// their own text at delete: nothing else in the namespace is touched.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { tracer } from "../../shared/trace.js";
import { Code } from "../../shared/ttrpc/index.js";
import { packageRoot } from "../config/index.js";
import { inNetns } from "./netns-exec.js";

const trace = tracer("network");

/** What the relay needs of the guest: the agent's PortForwardService, its answers checked. */
export interface PortPeer {
  dialPort(port: number): Promise<number>;
  readPort(connectionId: number, maxBytes: number): Promise<{ data: Uint8Array; eof: boolean }>;
  writePort(connectionId: number, data: Uint8Array): Promise<void>;
  closePortWrite(connectionId: number): Promise<void>;
  closePort(connectionId: number): Promise<void>;
}

/** The socket moat-port-relay connects to, in the sandbox's socket directory. */
export const PORT_SOCKET_NAME = "port.sock";
const RECORD_FILE = "port-forward.json";
/** Connections carried at once per sandbox (each holds up to two agent calls); more are reset. */
export const MAX_CONNECTIONS = 32;
/** Bytes asked of the guest per read. */
export const READ_BYTES = 64 * 1024;
const READY_TIMEOUT_MS = 10_000;
/** What moat-port-relay sends first on each connection: the port, u16 big-endian. */
export const HEADER_BYTES = 2;
export const CONNECTED = 0;
export const REFUSED = 1;
const COMMENT = "moat port-forward";
/** What iptables says when the rule to delete is not there. */
const GONE = /Bad rule|does a matching rule exist|No chain\/target\/match|No such file or directory/i;

/** The rules moat adds in a sandbox's namespace, as recorded in its state directory. */
export interface PortForwardRecord {
  netns: string;
  /** Each rule's arguments after the tool and `-t nat -A|-D`. */
  rules: Array<{ tool: "iptables" | "ip6tables"; spec: string[] }>;
}

/** The REDIRECT rule for `family`'s loopback to `port`: iptables arguments after the chain action. */
export function redirectRule(family: 4 | 6, port: number): { tool: "iptables" | "ip6tables"; spec: string[] } {
  const loopback = family === 4 ? "127.0.0.1/32" : "::1/128";
  return { tool: family === 4 ? "iptables" : "ip6tables", spec: ["OUTPUT", "-o", "lo", "-d", loopback, "-p", "tcp", "-m", "comment", "--comment", COMMENT, "-j", "REDIRECT", "--to-ports", String(port)] };
}

/** moat-port-relay's first line: "ready PORT4 PORT6", or "no-loopback" (the namespace's lo is down); undefined if it is neither. */
export function parseReady(line: string): { port4: number; port6: number } | "no-loopback" | undefined {
  if (line.trim() === "no-loopback") return "no-loopback";
  const match = /^ready (\d{1,5}) (\d{1,5})$/.exec(line.trim());
  if (!match) return undefined;
  const [port4, port6] = [Number(match[1]), Number(match[2])];
  if (port4 < 1 || port4 > 65535 || port6 > 65535) return undefined;
  return { port4, port6 };
}

/** The port of a relay connection's header; undefined if it names none (0). */
export function parseHeader(header: Buffer): number | undefined {
  if (header.length !== HEADER_BYTES) return undefined;
  const port = header.readUInt16BE(0);
  return port === 0 ? undefined : port;
}

/** Whether `netns` is the namespace moatd itself runs in (the host's): no rule goes there. */
async function isOwnNetns(netns: string): Promise<boolean> {
  const [theirs, ours] = await Promise.all([stat(netns), stat("/proc/self/ns/net")]);
  return theirs.dev === ours.dev && theirs.ino === ours.ino;
}

async function runRule(netns: string, action: "-A" | "-D", rule: PortForwardRecord["rules"][number]): Promise<{ ok: boolean; stderr: string }> {
  const ran = await inNetns(netns, [rule.tool, "-w", "-t", "nat", action, ...rule.spec]);
  return { ok: ran.code === 0, stderr: ran.stderr || `exit status ${ran.code}` };
}

/**
 * Removes the rules the sandbox in `stateDir` added (its port-forward.json says which), each by
 * its own text; a rule or namespace gone already counts as removed. Throws if one could not be.
 */
export async function removePortForward(stateDir: string): Promise<void> {
  const path = join(stateDir, RECORD_FILE);
  const text = await readFile(path, "utf8").catch(() => undefined);
  if (text === undefined) return;
  const record = JSON.parse(text) as PortForwardRecord; // written by PortForwardRelay.start
  const failures: string[] = [];
  if (existsSync(record.netns)) {
    for (const rule of record.rules) {
      const ran = await runRule(record.netns, "-D", rule);
      if (!ran.ok && !GONE.test(ran.stderr)) failures.push(`${rule.tool} -D ${rule.spec.join(" ")}: ${ran.stderr}`);
    }
  }
  if (failures.length > 0) throw new MoatError("MOAT_PORT_FORWARD_RULES", `${stateDir}: network namespace ${record.netns}: ${failures.join("; ")}`, { status: Code.INTERNAL });
  await rm(path, { force: true });
  trace(stateDir, `port-forward rules removed from ${record.netns}`);
}

/** The namespace whose rules the sandbox in `stateDir` recorded, if it still exists: where a restarted moatd starts its relay again. */
export async function recordedPortForwardNetns(stateDir: string): Promise<string | undefined> {
  const text = await readFile(join(stateDir, RECORD_FILE), "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  const netns = (JSON.parse(text) as Partial<PortForwardRecord>).netns; // written by PortForwardRelay.start; checked on the next line
  return typeof netns === "string" && existsSync(netns) ? netns : undefined;
}

export class PortForwardRelay {
  private stopped = false;

  private constructor(
    private readonly server: Server,
    private readonly socketPath: string,
    private readonly child: ChildProcess,
    private readonly connections: ForwardedConnections,
    private readonly where: string,
  ) {}

  /**
   * Starts relaying TCP connections to the loopback of network namespace `netns` into the
   * guest: listens on `socketDir`/port.sock, starts moat-port-relay in the namespace, records
   * then adds the REDIRECT rules. Rules a previous moatd recorded are removed first. Undefined
   * for moatd's own namespace (a sandbox on the host's network). On failure nothing is left.
   */
  static async start(netns: string, stateDir: string, socketDir: string, guest: PortPeer, where: string): Promise<PortForwardRelay | undefined> {
    const binary = join(packageRoot(), "dist", "bin", "moat-port-relay");
    if (!existsSync(binary)) throw new MoatError("MOAT_PORT_FORWARD_START", `${where}: ${binary} does not exist`, { hint: "make build", status: Code.FAILED_PRECONDITION });
    if (await isOwnNetns(netns)) {
      trace(where, `port-forward: ${netns} is moatd's own network namespace; no relay there`);
      return undefined;
    }
    await removePortForward(stateDir);
    const socketPath = join(socketDir, PORT_SOCKET_NAME);
    await rm(socketPath, { force: true });
    // allowHalfOpen: a client that half-closes still gets the guest's answer.
    const server = createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(socketPath, resolve));
    const child = spawn(binary, [netns, socketPath], { stdio: ["pipe", "pipe", "pipe"] });
    const connections = new ForwardedConnections(guest, where);
    const relay = new PortForwardRelay(server, socketPath, child, connections, where);
    try {
      const ready = await relay.ready(netns);
      if (ready === "no-loopback") {
        trace(where, `port-forward: the loopback of ${netns} is down, nothing there can dial localhost; no relay`);
        relay.stop();
        return undefined;
      }
      const rules = [redirectRule(4, ready.port4), ...(ready.port6 > 0 ? [redirectRule(6, ready.port6)] : [])];
      const record: PortForwardRecord = { netns, rules: [] };
      for (const rule of rules) {
        // Recorded before it is added: whatever happens next, the delete finds it.
        record.rules.push(rule);
        await writeFile(join(stateDir, RECORD_FILE), JSON.stringify(record) + "\n");
        const ran = await runRule(netns, "-A", rule);
        if (ran.ok) continue;
        if (rule.tool === "ip6tables") {
          // IPv4 is what containerd dials first and always gets: IPv6 is a nicety.
          trace(where, `port-forward: no IPv6 rule in ${netns}: ${ran.stderr}`);
          record.rules.pop();
          await writeFile(join(stateDir, RECORD_FILE), JSON.stringify(record) + "\n");
          continue;
        }
        throw new MoatError("MOAT_PORT_FORWARD_START", `${where}: network namespace ${netns}: ${rule.tool} -t nat -A ${rule.spec.join(" ")}: ${ran.stderr}`, { hint: "moat needs iptables (Debian's package) for port-forward", status: Code.FAILED_PRECONDITION });
      }
      server.on("connection", (socket: Socket) => connections.carry(socket));
      trace(where, `port-forward: TCP to localhost in ${netns} goes to the guest (relay on port ${ready.port4}${ready.port6 ? `, [::1]:${ready.port6}` : ""})`);
      return relay;
    } catch (error) {
      relay.stop();
      await removePortForward(stateDir).catch((undo: unknown) => trace(where, `undo port-forward rules: ${String(undo)}`));
      throw error;
    }
  }

  /** moat-port-relay's "ready" line, or why it did not come. */
  private ready(netns: string): Promise<NonNullable<ReturnType<typeof parseReady>>> {
    const child = this.child;
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (text: string) => {
      if (stderr.length < 2000) stderr += text;
      trace(this.where, `port relay: ${text.trim().slice(0, 500)}`);
    });
    child.stdin!.on("error", () => undefined); // its exit is traced below
    child.once("exit", (code, signal) => {
      if (!this.stopped) trace(this.where, `port relay exited (${signal ?? code})`);
    });
    return new Promise((resolve, reject) => {
      const fail = (what: string) => reject(new MoatError("MOAT_PORT_FORWARD_START", `${this.where}: moat-port-relay in ${netns}: ${what}${stderr ? `: ${stderr.trim()}` : ""}`, { status: Code.INTERNAL }));
      const timer = setTimeout(() => fail(`not ready within ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
      let line = "";
      child.stdout!.setEncoding("utf8").on("data", (text: string) => {
        line += text;
        if (!line.includes("\n")) {
          if (line.length > 100) fail(`printed ${JSON.stringify(line.slice(0, 100))}`);
          return;
        }
        clearTimeout(timer);
        const ready = parseReady(line.slice(0, line.indexOf("\n")));
        if (ready) resolve(ready);
        else fail(`printed ${JSON.stringify(line.slice(0, 100))}`);
      });
      child.once("error", (error) => (clearTimeout(timer), fail(String(error))));
      // stderr may still be on its way: read it before saying why.
      child.once("close", (code, signal) => (clearTimeout(timer), fail(`exited (${signal ?? code})`)));
    });
  }

  /** Stops relaying: moat-port-relay killed, connections ended, the socket removed. The rules stay for removePortForward. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.child.stdin?.end();
    this.child.kill("SIGKILL");
    this.connections.stop();
    this.server.close();
    void rm(this.socketPath, { force: true });
  }
}

/**
 * The connections moat-port-relay hands over, each carried to the guest: bounded in number,
 * one agent read and one write outstanding at most each.
 */
export class ForwardedConnections {
  private stopped = false;
  private readonly sockets = new Set<Socket>();
  /** Connections counted against MAX_CONNECTIONS: until their agent calls have settled. */
  private active = 0;

  constructor(
    private readonly guest: PortPeer,
    private readonly where: string,
  ) {}

  /** Connections being carried (or whose agent calls have not settled yet). */
  get size(): number {
    return this.active;
  }

  /** One connection from moat-port-relay: its port, the guest's end dialled, then the bytes. */
  carry(socket: Socket): void {
    socket.on("error", () => undefined); // a reset client: its close ends the connection below
    if (this.stopped || this.active >= MAX_CONNECTIONS) {
      if (!this.stopped) trace(this.where, `port-forward: ${MAX_CONNECTIONS} connections at once already; one more refused`);
      socket.destroy(); // the relay resets the client
      return;
    }
    this.active++;
    this.sockets.add(socket);
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      this.active--;
      this.sockets.delete(socket);
    };
    let header = Buffer.alloc(0);
    const onHeader = (chunk: Buffer) => {
      header = Buffer.concat([header, chunk]);
      if (header.length < HEADER_BYTES) return;
      socket.off("data", onHeader);
      socket.off("close", settle);
      socket.pause();
      const port = parseHeader(header.subarray(0, HEADER_BYTES));
      if (port === undefined) {
        trace(this.where, "port-forward: a relay connection without a port");
        socket.destroy();
        settle();
        return;
      }
      void this.forward(socket, port, header.subarray(HEADER_BYTES)).finally(settle);
    };
    socket.on("data", onHeader);
    socket.once("close", settle);
  }

  /** Carries one connection to guest port `port` until both ways ended; settles once every agent call has. */
  private async forward(socket: Socket, port: number, early: Buffer): Promise<void> {
    const where = `${this.where}: port-forward to guest port ${port}`;
    let id: number;
    try {
      id = await this.guest.dialPort(port);
    } catch (error) {
      trace(where, `refused: ${String(error)}`);
      if (!socket.destroyed) socket.end(Buffer.from([REFUSED]));
      return;
    }
    if (socket.destroyed) {
      await this.guest.closePort(id).catch(() => undefined);
      return;
    }
    socket.write(Buffer.from([CONNECTED]));
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    const toGuest = this.toGuest(socket, id, early, where);
    const fromGuest = this.fromGuest(socket, id, where);
    await Promise.race([closed, Promise.all([toGuest, fromGuest])]);
    // Either both ways ended, or the client (or the relay) went: the guest's end goes too, which
    // ends a pending read there.
    await this.guest.closePort(id).catch((error: unknown) => trace(where, `close: ${String(error)}`));
    socket.destroy();
    await Promise.allSettled([toGuest, fromGuest]);
  }

  /** The client's bytes to the guest, one write at a time (the socket paused meanwhile), then its half-close. */
  private toGuest(socket: Socket, id: number, early: Buffer, where: string): Promise<void> {
    return new Promise<void>((resolve) => {
      let chain: Promise<void> = early.length > 0 ? this.guest.writePort(id, early) : Promise.resolve();
      const failed = (error: unknown) => {
        trace(where, `to the guest: ${String(error)}`);
        socket.destroy();
        resolve();
      };
      socket.on("data", (chunk: Buffer) => {
        socket.pause();
        chain = chain.then(() => this.guest.writePort(id, chunk)).then(() => void (socket.destroyed || socket.resume()));
        chain.catch(failed);
      });
      socket.once("end", () => {
        chain = chain.then(() => this.guest.closePortWrite(id));
        chain.then(resolve, failed);
      });
      socket.once("close", () => chain.then(resolve, resolve));
      socket.resume();
    });
  }

  /** The guest's bytes to the client: a read, written, and the next read only once the socket took it; then the half-close. */
  private async fromGuest(socket: Socket, id: number, where: string): Promise<void> {
    try {
      while (!socket.destroyed) {
        const { data, eof } = await this.guest.readPort(id, READ_BYTES);
        if (socket.destroyed) return;
        if (data.length > 0 && !socket.write(data)) await drained(socket);
        if (eof) {
          socket.end();
          return;
        }
      }
    } catch (error) {
      trace(where, `from the guest: ${String(error)}`);
      socket.destroy();
    }
  }

  /** Ends every connection; later ones are refused. */
  stop(): void {
    this.stopped = true;
    for (const socket of this.sockets) socket.destroy();
  }
}

/** Resolves once `socket` drained its write buffer, or closed. */
function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off("drain", done).off("close", done);
      resolve();
    };
    socket.on("drain", done).on("close", done);
  });
}
