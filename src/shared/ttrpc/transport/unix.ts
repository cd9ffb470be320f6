// A ttrpc transport over a unix socket: the agent's virtio-serial chardev on the host, and
// later the shim's socket.
import { connect, type Socket } from "node:net";

/** Connects to a unix socket; rejects with the socket error (ENOENT, ECONNREFUSED, …). */
export function connectUnix(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once("connect", () => {
      socket.removeListener("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}
