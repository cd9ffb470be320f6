// One moatd per state root, even when two start at the same moment (a supervisor restarting
// it and a containerd task relay starting it, after a crash): two daemons adopting the same
// sandboxes would both drive their VMs. The lock is a listening socket in the abstract
// namespace, named after the state root: binding it is atomic, and the kernel releases it when
// the process dies, however it dies (a socket file or a pid file would outlive a SIGKILL).
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:net";

export interface DaemonLock {
  release(): void;
}

/** Takes the state root's lock; undefined while another process holds it. */
export function takeDaemonLock(stateRoot: string): Promise<DaemonLock | undefined> {
  // Abstract names are capped like socket paths (108 bytes): a hash of the root fits any root.
  const name = `\0moatd-${createHash("sha256").update(stateRoot).digest("hex").slice(0, 32)}`;
  return new Promise((resolve, reject) => {
    const server: Server = createServer((socket) => socket.destroy());
    server.once("error", (error: NodeJS.ErrnoException) => (error.code === "EADDRINUSE" ? resolve(undefined) : reject(error)));
    server.listen(name, () => {
      server.unref(); // the lock never keeps moatd alive by itself
      resolve({ release: () => void server.close() });
    });
  });
}
