import assert from "node:assert/strict";
import { test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import { DAEMON_SOCKET_NAME_MAX_BYTES, daemonSocketPath } from "./socket-path.js";

test("moatd's socket is in the state root, which must leave room for its sockets' names", () => {
  assert.equal(daemonSocketPath("/run/docker/runtime-runc/moby"), "/run/docker/runtime-runc/moby/moatd.sock");
  const longest = `/${"r".repeat(107 - 1 - DAEMON_SOCKET_NAME_MAX_BYTES - 1)}`;
  assert.equal(daemonSocketPath(longest), `${longest}/moatd.sock`);
  // Node would bind a truncated path without a word: refused by name instead.
  assert.throws(
    () => daemonSocketPath(`${longest}r`),
    (error: unknown) => error instanceof MoatError && error.code === "MOAT_STATE_PATH_LONG" && error.message.startsWith(`state root ${longest}r: too long for moatd's sockets`),
  );
});
