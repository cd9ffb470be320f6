import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { after, test } from "node:test";
import { listen } from "../../../../test/support/unix-socket.js";
import { MoatError } from "../../errors.js";
import { connectHybridVsock } from "./hybrid-vsock.js";

const closers: Array<() => void> = [];
after(() => closers.forEach((close) => close()));

/** A fake VMM that answers the CONNECT line with `answer`. */
async function fakeVmm(answer: (line: string) => string | undefined): Promise<string> {
  const { path, server, close } = await listen();
  closers.push(close);
  server.on("connection", (peer: Socket) => {
    closers.push(() => peer.destroy());
    peer.on("error", () => undefined);
    peer.once("data", (chunk) => {
      const reply = answer(chunk.toString());
      if (reply !== undefined) peer.write(reply);
    });
  });
  return path;
}

test("CONNECT, OK, then the bytes that followed OK arrive as stream data", async () => {
  const path = await fakeVmm((line) => (line === "CONNECT 1024\n" ? "OK 1073741824\nhello" : "bad"));
  const socket = await connectHybridVsock(path, 1024, 2000);
  const first = new Promise<Buffer>((resolve) => socket.once("data", resolve));
  socket.resume(); // handed over paused, so that no byte is lost before a reader is attached
  assert.equal((await first).toString(), "hello");
  socket.destroy();
});

test("a refusal, a silent peer and an endless line are errors", async () => {
  const refused = await fakeVmm(() => "ERR no listener\n");
  await assert.rejects(connectHybridVsock(refused, 1024, 2000), (error: unknown) => error instanceof MoatError && /refused: "ERR no listener"/.test(error.message));
  const silent = await fakeVmm(() => undefined);
  await assert.rejects(connectHybridVsock(silent, 1024, 50), /no answer to CONNECT within 50 ms/);
  const endless = await fakeVmm(() => "x".repeat(100));
  await assert.rejects(connectHybridVsock(endless, 1024, 2000), /longer than a line/);
});
