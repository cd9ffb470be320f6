import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { decodeStandInFrame, StandInFrame, StdioRelay, type StandInMessage } from "./stdio-relay.js";

function frame(type: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(payload.length, 1);
  return Buffer.concat([header, payload]);
}

function resize(rows: number, columns: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt16BE(rows, 0);
  payload.writeUInt16BE(columns, 2);
  return payload;
}

test("RESIZE carries a terminal's rows and columns as two big-endian u16", () => {
  assert.deepEqual(decodeStandInFrame(StandInFrame.RESIZE, resize(40, 132)), { type: "resize", rows: 40, columns: 132 });
  assert.deepEqual(decodeStandInFrame(StandInFrame.RESIZE, resize(0xffff, 0)), { type: "resize", rows: 0xffff, columns: 0 });
  assert.equal(decodeStandInFrame(StandInFrame.RESIZE, Buffer.alloc(3)), undefined);
  assert.equal(decodeStandInFrame(StandInFrame.RESIZE, Buffer.alloc(8)), undefined);
});

test("frames of a known type with the wrong length, and unknown types, are refused", () => {
  assert.equal(decodeStandInFrame(StandInFrame.HELLO, Buffer.alloc(2)), undefined);
  assert.equal(decodeStandInFrame(StandInFrame.STDIN_EOF, Buffer.alloc(1)), undefined);
  assert.equal(decodeStandInFrame(StandInFrame.SIGNAL, Buffer.alloc(5)), undefined);
  assert.equal(decodeStandInFrame(StandInFrame.STDOUT, Buffer.alloc(1)), undefined, "output frames only go to the stand-in");
  assert.equal(decodeStandInFrame(99, Buffer.alloc(0)), undefined);
});

test("any type and payload decode to a well-formed message or to nothing, never a throw", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 16 }), (type, bytes) => {
      const message = decodeStandInFrame(type, Buffer.from(bytes));
      if (message?.type === "resize") {
        assert.ok(message.rows >= 0 && message.rows <= 0xffff && message.columns >= 0 && message.columns <= 0xffff);
      }
    }),
  );
});

test("frames split anywhere reach the handlers in order; a bad frame closes the connection", async () => {
  const dir = mkdtempSync(join(tmpdir(), "moat-relay-"));
  const seen: StandInMessage[] = [];
  const relay = await StdioRelay.listen(join(dir, "stdio.sock"), "test", {
    hello: (pid) => void seen.push({ type: "hello", pid }),
    stdin: async (data) => void seen.push({ type: "stdin", data }),
    stdinEnd: async () => void seen.push({ type: "stdinEnd" }),
    signal: (number) => void seen.push({ type: "signal", number }),
    resize: async (rows, columns) => void seen.push({ type: "resize", rows, columns }),
  });
  try {
    const client = connect(relay.path);
    await new Promise((resolve) => client.once("connect", resolve));
    const pid = Buffer.alloc(4);
    pid.writeUInt32BE(4242);
    const wire = Buffer.concat([frame(StandInFrame.HELLO, pid), frame(StandInFrame.RESIZE, resize(24, 80)), frame(StandInFrame.STDIN, Buffer.from("ls\r")), frame(StandInFrame.RESIZE, resize(50, 200))]);
    for (let offset = 0; offset < wire.length; offset += 3) {
      client.write(wire.subarray(offset, offset + 3));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const closed = new Promise((resolve) => client.once("close", resolve));
    client.on("error", () => undefined);
    client.write(frame(StandInFrame.RESIZE, Buffer.alloc(2)));
    await closed;
    assert.deepEqual(seen, [
      { type: "hello", pid: 4242 },
      { type: "resize", rows: 24, columns: 80 },
      { type: "stdin", data: Buffer.from("ls\r") },
      { type: "resize", rows: 50, columns: 200 },
    ]);
  } finally {
    await relay.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

// Issue 13 (the soak): an exec whose process had exited by the time its stand-in connected got
// its output, exit and close sent at once, and the stand-in, not yet past writing its HELLO,
// found the connection closed (EPIPE) and exited 255. The order is forced here: the relay is
// used as relayExec uses it (output, exit, close), and the stand-in writes its HELLO only once
// the relay has taken its connection and everything that could follow that has run.
test("a stand-in that connects after its process exited gets the output and the exit after its HELLO, not a closed connection", async () => {
  const dir = mkdtempSync(join(tmpdir(), "moat-relay-"));
  const hellos: number[] = [];
  const relay = await StdioRelay.listen(join(dir, "exec-1.sock"), "test", {
    hello: (pid) => void hellos.push(pid),
    stdin: async () => undefined,
    stdinEnd: async () => undefined,
    signal: () => undefined,
    resize: async () => undefined,
  });
  try {
    // As relayExec: the process's output and exit, then the relay closed once the exit went out.
    const relayed = relay
      .writeOutput("stdout", Buffer.from("cycle 14\n"))
      .then(() => relay.sendExit(7))
      .then(() => relay.close());
    const client = connect(relay.path);
    const errors: string[] = [];
    client.on("error", (error: NodeJS.ErrnoException) => errors.push(error.code ?? String(error)));
    let received = Buffer.alloc(0);
    client.on("data", (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
    const closed = new Promise((resolve) => client.once("close", resolve));
    await new Promise((resolve) => client.once("connect", resolve));
    // Until the relay has accepted the connection; then every callback and promise its accept
    // started has run before the next turn of the event loop, where the HELLO goes out.
    while (!relay.everConnected) await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    const pid = Buffer.alloc(4);
    pid.writeUInt32BE(4243);
    client.write(frame(StandInFrame.HELLO, pid));
    await relayed;
    await closed;
    assert.deepEqual(errors, [], "the HELLO went out on a live connection");
    assert.deepEqual(hellos, [4243]);
    const status = Buffer.alloc(4);
    status.writeInt32BE(7);
    assert.deepEqual(received, Buffer.concat([frame(StandInFrame.STDOUT, Buffer.from("cycle 14\n")), frame(StandInFrame.EXIT, status)]));
  } finally {
    await relay.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
