// A QMP client (QEMU Machine Protocol, docs/interop/qmp-spec): newline-delimited JSON over a
// unix socket. The server greets with {"QMP": ...}; the client must send qmp_capabilities
// before any other command; each command gets {"return": ...} or {"error": {class, desc}},
// matched here by "id"; {"event": ...} lines may come at any time.
//
// QEMU is trusted more than a guest, but a broken or wrong peer must still not hang or crash
// the host: lines are capped, bad JSON closes the connection, every command has a deadline.

import { connect, type Socket } from "node:net";
import { MoatError } from "../../../shared/errors.js";
import { tracer } from "../../../shared/trace.js";
import { Code } from "../../../shared/ttrpc/index.js";
import { isPlainObject } from "../../../shared/json-object.js";

const trace = tracer("qmp");

/** A QMP line longer than this is refused (query-qmp-schema, the largest reply, is ~200 KiB). */
const MAX_LINE_BYTES = 1 << 20;

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export class QmpClient {
  readonly closed: Promise<Error>;
  private resolveClosed!: (reason: Error) => void; // assigned in the constructor's Promise executor
  private closeReason: Error | undefined;
  private buffer = "";
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly eventListeners = new Set<(event: QmpEvent) => void>();
  private greeted: ((greeting: unknown) => void) | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly where: string,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => this.receive(text));
    socket.on("error", (error) => this.close(new Error(`socket error: ${error.message}`)));
    socket.on("close", () => this.close(new Error("QEMU closed the QMP socket")));
  }

  /** Connects to `path`, reads the greeting and negotiates capabilities. */
  static async connect(path: string, timeoutMs: number): Promise<QmpClient> {
    const where = `qmp ${path}`;
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", (error) => reject(new MoatError("MOAT_QMP_CONNECT", `${where}: cannot connect`, { cause: error, status: Code.UNAVAILABLE })));
    });
    const client = new QmpClient(socket, where);
    const greeting = new Promise<unknown>((resolve) => (client.greeted = resolve));
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new MoatError("MOAT_QMP_TIMEOUT", `${where}: no greeting within ${timeoutMs} ms`, { status: Code.DEADLINE_EXCEEDED })), timeoutMs).unref(),
    );
    const closed = client.closed.then((reason) => {
      throw new MoatError("MOAT_QMP_PROTOCOL", `${where}: closed before greeting`, { cause: reason, status: Code.UNAVAILABLE });
    });
    try {
      await Promise.race([greeting, timeout, closed]);
      await client.execute("qmp_capabilities", undefined, timeoutMs);
    } catch (error) {
      client.close(error instanceof Error ? error : new Error(String(error)));
      throw error;
    }
    return client;
  }

  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Runs a command; resolves with its "return" value, rejects with its "error". */
  execute(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    if (this.closeReason) {
      return Promise.reject(new MoatError("MOAT_QMP_CLOSED", `${this.where}: ${command}: connection closed`, { cause: this.closeReason, status: Code.UNAVAILABLE }));
    }
    const id = `moat-${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new MoatError("MOAT_QMP_TIMEOUT", `${this.where}: ${command}: no answer within ${timeoutMs} ms`, { status: Code.DEADLINE_EXCEEDED }));
      }, timeoutMs);
      this.pending.set(id, { command, resolve, reject, timer });
      trace(this.where, `-> ${command}`);
      this.socket.write(JSON.stringify(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id }) + "\n");
    });
  }

  /**
   * Runs a command whose answer is a JSON object (query-status, query-migrate); any other
   * answer is QEMU breaking QMP, a MOAT_QMP_PROTOCOL error, not a TypeError in the caller.
   */
  async query(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<Record<string, unknown>> {
    const answer = await this.execute(command, args, timeoutMs);
    if (!isPlainObject(answer)) {
      throw new MoatError("MOAT_QMP_PROTOCOL", `${this.where}: ${command}: the answer is not a JSON object`, { status: Code.INTERNAL });
    }
    return answer;
  }

  close(reason: Error = new Error("closed by client")): void {
    if (this.closeReason) return;
    this.closeReason = reason;
    trace(this.where, `closed: ${reason.message}`);
    this.socket.destroy();
    for (const [id, call] of this.pending) {
      this.pending.delete(id);
      clearTimeout(call.timer);
      call.reject(new MoatError("MOAT_QMP_CLOSED", `${this.where}: ${call.command}: connection closed`, { cause: reason, status: Code.UNAVAILABLE }));
    }
    this.resolveClosed(reason);
  }

  private receive(text: string): void {
    this.buffer += text;
    let newline: number;
    while (!this.closeReason && (newline = this.buffer.indexOf("\n")) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line.length > 0) this.handleLine(line);
    }
    if (this.buffer.length > MAX_LINE_BYTES) this.close(new Error(`protocol violation: a line longer than ${MAX_LINE_BYTES} bytes`));
  }

  private handleLine(line: string): void {
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      this.close(new Error(`protocol violation: not JSON: ${line.slice(0, 80)}`));
      return;
    }
    if (typeof message !== "object" || message === null || Array.isArray(message)) {
      this.close(new Error(`protocol violation: not a JSON object: ${line.slice(0, 80)}`));
      return;
    }
    const record = message as Record<string, unknown>; // checked to be a plain object above
    trace(this.where, `<- ${line.slice(0, 200)}`);
    if ("QMP" in record) {
      this.greeted?.(record.QMP);
      this.greeted = undefined;
      return;
    }
    if (typeof record.event === "string") {
      const event: QmpEvent = { event: record.event, data: isPlainObject(record.data) ? record.data : undefined };
      for (const listener of this.eventListeners) listener(event);
      return;
    }
    const id = typeof record.id === "string" ? record.id : undefined;
    const call = id === undefined ? undefined : this.pending.get(id);
    if (!call || id === undefined) return; // an answer to a call that timed out
    this.pending.delete(id);
    clearTimeout(call.timer);
    if ("return" in record) {
      call.resolve(record.return);
    } else if (isPlainObject(record.error)) {
      const { class: errorClass, desc } = record.error;
      call.reject(new MoatError("MOAT_QMP_COMMAND", `${this.where}: ${call.command}: ${String(errorClass)}: ${String(desc)}`, { status: Code.INTERNAL }));
    } else {
      const reason = new Error(`protocol violation: answer to ${call.command} has neither return nor error`);
      call.reject(new MoatError("MOAT_QMP_PROTOCOL", `${this.where}: ${call.command}: malformed answer`, { cause: reason, status: Code.INTERNAL }));
      this.close(reason);
    }
  }
}

