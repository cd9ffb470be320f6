import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import { SOCKET_NAME_MAX_BYTES, SOCKET_PATH_MAX_BYTES, SOCKET_ROOT_MAX_BYTES, socketDirFor, vmPaths } from "./hypervisor.js";
import { makeSocketDir, moveSocketDir, STATE_DIR_LINK } from "./socket-dir.js";

const root = mkdtempSync(join(tmpdir(), "moat-socket-dir-"));
after(() => rmSync(root, { recursive: true, force: true }));

test("a socket directory's path has the same length whatever the state root and id", () => {
  const docker = socketDirFor("/run/moat-sockets", `/run/docker/runtime-runc/moby/${"a".repeat(64)}`);
  const short = socketDirFor("/run/moat-sockets", "/run/moat/c1");
  assert.equal(docker.length, short.length);
  assert.notEqual(docker, short);
  assert.equal(socketDirFor("/run/moat-sockets", "/run/moat/c1"), short, "the same for a restarted moatd");
  const paths = vmPaths(`/very/long/state/root/${"b".repeat(200)}/${"c".repeat(128)}`, "/run/moat-sockets");
  for (const socket of [paths.qmpSocket, paths.agentSocket, paths.migrationSocket]) assert.ok(socket.length <= SOCKET_PATH_MAX_BYTES, socket);
  assert.equal(paths.consoleLog.startsWith(paths.stateDir), true, "logs stay in the state directory");
  // The longest socket root the configuration allows still fits the longest socket name.
  assert.equal(socketDirFor("/".padEnd(SOCKET_ROOT_MAX_BYTES, "r"), "/x").length + 1 + SOCKET_NAME_MAX_BYTES, SOCKET_PATH_MAX_BYTES);
});

test("made 0700 under a root made 0711, with a link back to its state directory; a leftover of the same state directory is replaced", async () => {
  const paths = vmPaths(join(root, "state", "c1"), join(root, "sockets"));
  await makeSocketDir(paths, "sandbox c1");
  assert.equal(statSync(paths.socketDir).mode & 0o777, 0o700);
  assert.equal(statSync(join(root, "sockets")).mode & 0o777, 0o711);
  assert.equal(readlinkSync(join(paths.socketDir, STATE_DIR_LINK)), paths.stateDir);
  writeFileSync(join(paths.socketDir, "qmp.sock"), "stale");
  await makeSocketDir(paths, "sandbox c1");
  assert.equal(existsSync(join(paths.socketDir, "qmp.sock")), false);
});

test("another state directory's socket directory is refused, not taken over", async () => {
  const paths = vmPaths(join(root, "state", "c2"), join(root, "sockets"));
  mkdirSync(paths.socketDir, { recursive: true });
  symlinkSync("/elsewhere/c2", join(paths.socketDir, STATE_DIR_LINK));
  await assert.rejects(makeSocketDir(paths, "sandbox c2"), (error: unknown) => error instanceof MoatError && error.code === "MOAT_SOCKET_DIR" && error.message.includes("belongs to /elsewhere/c2"));
});

test("a socket root others may write is refused by name", async () => {
  const open = join(root, "open-sockets");
  mkdirSync(open);
  chmodSync(open, 0o777);
  const paths = vmPaths(join(root, "state", "c3"), open);
  await assert.rejects(makeSocketDir(paths, "sandbox c3"), (error: unknown) => error instanceof MoatError && error.message === `sandbox c3: socket root ${open} is writable by its group or others (mode 777)`);
  assert.equal(existsSync(paths.socketDir), false);
});

test("moved with its VM: the new state directory's socket directory, linked to it", async () => {
  const from = vmPaths(join(root, "state", ".pool", "pool-1"), join(root, "sockets"));
  const to = vmPaths(join(root, "state", "c4"), join(root, "sockets"));
  await makeSocketDir(from, "pool-1");
  writeFileSync(join(from.socketDir, "agent.sock"), "");
  await makeSocketDir(to, "sandbox c4"); // the sandbox made its own first
  await moveSocketDir(from, to, "sandbox c4");
  assert.equal(existsSync(from.socketDir), false);
  assert.equal(existsSync(join(to.socketDir, "agent.sock")), true);
  assert.equal(readlinkSync(join(to.socketDir, STATE_DIR_LINK)), to.stateDir);
});
