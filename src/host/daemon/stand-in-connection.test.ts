import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { after, test } from "node:test";
import { StandInConnection } from "./stand-in-connection.js";
import { StdioRelay, type StandInHandlers } from "./stdio-relay.js";

const dir = mkdtempSync(join(tmpdir(), "moat-stand-in-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let sockets = 0;

/** moatd's end (StdioRelay) on a fresh socket, recording what the stand-in sent. */
async function relay(): Promise<{ relay: StdioRelay; heard: string[]; stdin: Buffer[] }> {
  const heard: string[] = [];
  const stdin: Buffer[] = [];
  const handlers: StandInHandlers = {
    hello: (pid) => void heard.push(`hello ${pid}`),
    stdin: async (data) => void stdin.push(data),
    stdinEnd: async () => void heard.push("stdin end"),
    signal: (number) => void heard.push(`signal ${number}`),
    resize: async (rows, columns) => void heard.push(`resize ${rows}x${columns}`),
  };
  return { relay: await StdioRelay.listen(join(dir, `s${++sockets}.sock`), "test", handlers), heard, stdin };
}

function collect(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => chunks.push(chunk));
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve));
}

test("the stand-in says hello, relays input, signals and sizes, and ends with the output and then the exit status", async () => {
  const { relay: moatd, heard, stdin } = await relay();
  const stdout = collect();
  const stderr = collect();
  const connection = await StandInConnection.connect(moatd.path, 4242, { stdout: stdout.stream, stderr: stderr.stream });
  connection.resize(40, 132);
  assert.equal(await connection.stdin(Buffer.alloc(3 << 20, 7)), true, "input larger than one frame");
  connection.stdinEnd();
  connection.signal(2);
  await until(() => heard.includes("signal 2"));
  assert.deepEqual(heard, ["hello 4242", "resize 40x132", "stdin end", "signal 2"]);
  assert.equal(Buffer.concat(stdin).length, 3 << 20);
  await moatd.writeOutput("stdout", Buffer.from("out\n"));
  await moatd.writeOutput("stderr", Buffer.from("err\n"));
  await moatd.sendExit(137);
  assert.deepEqual(await connection.ended, { kind: "exit", status: 137 });
  assert.equal(stdout.text(), "out\n");
  assert.equal(stderr.text(), "err\n");
  await moatd.close();
});

test("output waits while stdout is full, and an exit status that came before the connection closed is still the end", async () => {
  const { relay: moatd } = await relay();
  const written: Buffer[] = [];
  let release: (() => void) | undefined;
  // A stdout that holds its second chunk until released.
  const slow = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _encoding, done) {
      written.push(chunk);
      if (written.length === 2) release = done;
      else done();
    },
  });
  const connection = await StandInConnection.connect(moatd.path, 1, { stdout: slow, stderr: collect().stream });
  await moatd.writeOutput("stdout", Buffer.from("a"));
  await moatd.writeOutput("stdout", Buffer.from("b"));
  await moatd.writeOutput("stdout", Buffer.from("c"));
  await moatd.sendExit(5);
  await moatd.close(); // moatd removes the container once the exit went out
  await until(() => release !== undefined);
  let ended = false;
  void connection.ended.then(() => (ended = true));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(ended, false, "nothing ends while output is still to be written");
  release!(); // set just above
  assert.deepEqual(await connection.ended, { kind: "exit", status: 5 });
  assert.equal(Buffer.concat(written).toString(), "abc");
});

test("a connection that closes before the exit status is lost, and input sent then says so", async () => {
  const { relay: moatd } = await relay();
  const connection = await StandInConnection.connect(moatd.path, 1, { stdout: collect().stream, stderr: collect().stream });
  await moatd.writeOutput("stdout", Buffer.from("partial"));
  await moatd.close(); // moatd killed
  const end = await connection.ended;
  assert.equal(end.kind, "lost");
  assert.equal(await connection.stdin(Buffer.from("late")), false);
});
