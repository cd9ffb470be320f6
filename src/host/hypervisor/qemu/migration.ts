// Saving a paused VM's device state to a file and loading it into a new QEMU: the two halves
// of a VM template (docs/templates.md). QEMU's migration stream goes through a unix socket
// that this process serves or dials, because `exec:` would need QEMU to spawn a process,
// which its seccomp sandbox forbids, and `file:` needs QEMU 8.2.
//
// Guest RAM is not in the stream: with the x-ignore-shared capability QEMU skips RAM that is
// backed by a file (the template's memory file), so the state is tens of KiB.
import { createWriteStream } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { connect, createServer, type Socket } from "node:net";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { settleWithin } from "../../../shared/deadline.js";
import { MoatError } from "../../../shared/errors.js";
import { printable } from "../../../shared/printable.js";
import { Code } from "../../../shared/ttrpc/index.js";
import type { QmpClient } from "./qmp.js";

const POLL_MS = 5;
const QMP_CALL_MS = 5_000;
/** What of QEMU's words an error message quotes (a hostile QEMU's answer may be a megabyte). */
const MAX_STATUS_CHARS = 200;
const IGNORE_SHARED = { capabilities: [{ capability: "x-ignore-shared", state: true }] };

/** Stops the VM and writes its device state to `statePath`, through `socketPath`. */
export async function saveState(qmp: QmpClient, statePath: string, socketPath: string, timeoutMs: number, where: string): Promise<void> {
  await rm(socketPath, { force: true });
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(socketPath, resolve));
  try {
    const received = new Promise<void>((resolve, reject) => {
      server.once("connection", (socket: Socket) => pipeline(socket, createWriteStream(statePath)).then(resolve, reject));
    });
    await qmp.execute("stop", undefined, QMP_CALL_MS);
    await qmp.execute("migrate-set-capabilities", IGNORE_SHARED, QMP_CALL_MS);
    await qmp.execute("migrate", { uri: `unix:${socketPath}` }, QMP_CALL_MS);
    await migrationDone(qmp, timeoutMs, `${where}: saving state`);
    const ended = await settleWithin(received.then(() => true), timeoutMs);
    if (!ended) throw new MoatError("MOAT_TEMPLATE_SAVE", `${where}: saving state: the stream did not end within ${timeoutMs} ms`, { status: Code.DEADLINE_EXCEEDED });
  } finally {
    server.close();
    await rm(socketPath, { force: true });
  }
}

/**
 * Loads `statePath` into a QEMU started with `-incoming defer` and the same devices, then
 * lets the guest run. QEMU listens on `socketPath`; this process streams the file into it.
 */
export async function loadState(qmp: QmpClient, statePath: string, socketPath: string, timeoutMs: number, where: string): Promise<void> {
  const state = await readFile(statePath);
  await qmp.execute("migrate-set-capabilities", IGNORE_SHARED, QMP_CALL_MS);
  await qmp.execute("migrate-incoming", { uri: `unix:${socketPath}` }, QMP_CALL_MS);
  // QEMU closes the connection as soon as it has read the end-of-state marker, which may be
  // before this side sees its own write finish: the verdict is QEMU's status below, not the
  // socket's, and a QEMU that fails to load exits (restoreFromTemplate then quotes its log).
  const socket = connect(socketPath);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => socket.end(state));
    socket.once("close", () => resolve());
    socket.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EPIPE" || error.code === "ECONNRESET") return; // QEMU stopped reading: see above
      reject(new MoatError("MOAT_TEMPLATE_RESTORE", `${where}: cannot stream ${statePath} into QEMU`, { cause: error, status: Code.INTERNAL }));
    });
  });
  // A loaded VM stays paused (no -S, but incoming ends in "paused" or "postmigrate"): run it.
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = printable(String((await qmp.query("query-status", undefined, QMP_CALL_MS)).status), MAX_STATUS_CHARS);
    if (status === "paused" || status === "postmigrate") break;
    if (status !== "inmigrate") throw new MoatError("MOAT_TEMPLATE_RESTORE", `${where}: QEMU is "${status}" after loading ${statePath}`, { status: Code.INTERNAL });
    if (Date.now() > deadline) throw new MoatError("MOAT_TEMPLATE_RESTORE", `${where}: loading ${statePath} took over ${timeoutMs} ms`, { status: Code.DEADLINE_EXCEEDED });
    await sleep(POLL_MS);
  }
  await qmp.execute("cont", undefined, QMP_CALL_MS);
  await rm(socketPath, { force: true });
}

/** Waits for an outgoing migration to complete; fails with QEMU's reason if it did not. */
async function migrationDone(qmp: QmpClient, timeoutMs: number, where: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await qmp.query("query-migrate", undefined, QMP_CALL_MS);
    const status = info.status === undefined ? undefined : printable(String(info.status), MAX_STATUS_CHARS);
    if (status === "completed") return;
    if (status === "failed" || status === "cancelled") {
      const reason = info["error-desc"] === undefined ? "no reason given" : printable(String(info["error-desc"]), MAX_STATUS_CHARS);
      throw new MoatError("MOAT_TEMPLATE_SAVE", `${where}: QEMU's migration ${status}: ${reason}`, { status: Code.INTERNAL });
    }
    if (Date.now() > deadline) throw new MoatError("MOAT_TEMPLATE_SAVE", `${where}: not done within ${timeoutMs} ms (${status ?? "no status"})`, { status: Code.DEADLINE_EXCEEDED });
    await sleep(POLL_MS);
  }
}
