import { join } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

/** A unix socket's path has at most 107 bytes; Node truncates a longer one silently when it binds. */
const SOCKET_PATH_MAX_BYTES = 107;
/** The longest name of a socket moatd serves in its state root (moatd.sock, a front end's: containerd-task.sock). */
export const DAEMON_SOCKET_NAME_MAX_BYTES = 24;

/**
 * moatd's socket under a state root; one daemon per state root. Its sockets are the only ones
 * left in the state root (a sandbox's are under the socket root), so the state root must
 * leave room for their names: refused, naming it, where it does not.
 */
export function daemonSocketPath(stateRoot: string): string {
  const longest = Buffer.byteLength(stateRoot) + 1 + DAEMON_SOCKET_NAME_MAX_BYTES;
  if (longest > SOCKET_PATH_MAX_BYTES) {
    throw new MoatError("MOAT_STATE_PATH_LONG", `state root ${stateRoot}: too long for moatd's sockets in it (${longest} bytes with the longest name, unix sockets allow ${SOCKET_PATH_MAX_BYTES})`, {
      hint: `use a state root (--root or [runtime] state_root) of at most ${SOCKET_PATH_MAX_BYTES - 1 - DAEMON_SOCKET_NAME_MAX_BYTES} bytes`,
      status: Code.INVALID_ARGUMENT,
    });
  }
  return join(stateRoot, "moatd.sock");
}
