// A connected pair of unix sockets for a container's stdin. Node destroys the stdin pipe it
// creates for a child when that child exits, and `crun create` exits at once while the
// container keeps running, so the agent makes the pair itself: the container gets one end
// (passed to crun and inherited by the container), the agent writes to the other, and ending
// it gives the container end of file.
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, connect, type Socket } from "node:net";
import { join } from "node:path";

export async function stdinSocketPair(dir: string): Promise<{ local: Socket; remote: Socket }> {
  const socketDir = await mkdtemp(join(dir, "stdin-"));
  const path = join(socketDir, "s");
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(path, resolve));
    const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
    const local = connect(path);
    await new Promise<void>((resolve, reject) => local.once("error", reject).once("connect", resolve));
    return { local, remote: await accepted };
  } finally {
    server.close();
    await rm(socketDir, { recursive: true, force: true });
  }
}
