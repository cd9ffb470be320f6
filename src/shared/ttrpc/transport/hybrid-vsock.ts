// Hybrid vsock, as Firecracker and Cloud Hypervisor expose a guest's vsock on the host: a unix
// socket where the client writes "CONNECT <port>\n" and the VMM answers "OK <host port>\n"
// once the guest accepted. After that line the socket carries the guest port's bytes; it is
// handed over paused, so that nothing is lost before the caller attaches its reader.
import type { Socket } from "node:net";
import { MoatError } from "../../errors.js";
import { Code } from "../status.js";
import { connectUnix } from "./unix.js";

/** The answer line is short ("OK 1073741824\n"); anything longer is not a VMM talking. */
const MAX_ANSWER_BYTES = 64;

export async function connectHybridVsock(path: string, port: number, timeoutMs: number): Promise<Socket> {
  const where = `hybrid vsock ${path} port ${port}`;
  const socket = await connectUnix(path).catch((error: unknown) => {
    throw new MoatError("MOAT_VSOCK_CONNECT", `${where}: cannot connect`, { cause: error, status: Code.UNAVAILABLE });
  });
  try {
    await handshake(socket, port, timeoutMs, where);
    return socket;
  } catch (error) {
    socket.destroy();
    throw error;
  }
}

function handshake(socket: Socket, port: number, timeoutMs: number, where: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let answer = Buffer.alloc(0);
    const fail = (what: string) => {
      finish();
      reject(new MoatError("MOAT_VSOCK_CONNECT", `${where}: ${what}`, { status: Code.UNAVAILABLE }));
    };
    const timer = setTimeout(() => fail(`no answer to CONNECT within ${timeoutMs} ms`), timeoutMs);
    const onData = (chunk: Buffer) => {
      answer = Buffer.concat([answer, chunk]);
      const newline = answer.indexOf(0x0a);
      if (newline < 0) {
        if (answer.length > MAX_ANSWER_BYTES) fail("answer to CONNECT is longer than a line");
        return;
      }
      const line = answer.subarray(0, newline).toString("latin1");
      if (!line.startsWith("OK")) return fail(`refused: ${JSON.stringify(line.slice(0, MAX_ANSWER_BYTES))}`);
      finish();
      // Bytes after the line already belong to the guest's stream.
      if (answer.length > newline + 1) socket.unshift(answer.subarray(newline + 1));
      resolve();
    };
    const onEnd = () => fail("closed before answering CONNECT");
    const finish = () => {
      clearTimeout(timer);
      socket.removeListener("data", onData);
      socket.removeListener("end", onEnd);
      socket.pause();
    };
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.write(`CONNECT ${port}\n`);
  });
}
