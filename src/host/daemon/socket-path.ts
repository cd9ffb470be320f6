import { join } from "node:path";

/** moatd's socket under a state root; one daemon per state root. */
export function daemonSocketPath(stateRoot: string): string {
  return join(stateRoot, "moatd.sock");
}
