import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { after, test } from "node:test";
import { listen } from "../../../../test/support/unix-socket.js";
import { rejectsWithCode } from "../../../../test/support/assertions.js";
import { QmpClient } from "./qmp.js";

const closers: Array<() => void> = [];
after(() => closers.forEach((close) => close()));

/** A QMP server whose behaviour the test scripts: `onLine` gets each command line. */
async function fakeQmp(greeting: string | undefined, onLine: (line: string, peer: Socket) => void): Promise<string> {
  const { path, server, close } = await listen();
  closers.push(close);
  server.on("connection", (peer: Socket) => {
    closers.push(() => peer.destroy());
    peer.on("error", () => undefined); // the client under test may reset the connection
    if (greeting !== undefined) peer.write(greeting);
    let buffer = "";
    peer.on("data", (chunk) => {
      buffer += chunk.toString();
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        onLine(buffer.slice(0, newline), peer);
        buffer = buffer.slice(newline + 1);
      }
    });
  });
  return path;
}

const GREETING = '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": []}}\r\n';

/** Answers every command with {"return": {}} except those in `answers`. */
function wellBehaved(answers: Record<string, (id: string) => string> = {}) {
  return (line: string, peer: Socket) => {
    const { execute, id } = JSON.parse(line) as { execute: string; id: string };
    peer.write((answers[execute]?.(id) ?? JSON.stringify({ return: {}, id })) + "\r\n");
  };
}


test("greeting, capabilities, a command and an event", async () => {
  const path = await fakeQmp(
    GREETING,
    wellBehaved({
      "query-status": (id) =>
        `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}\r\n` + JSON.stringify({ return: { status: "running", running: true }, id }),
    }),
  );
  const qmp = await QmpClient.connect(path, 2000);
  const events: string[] = [];
  qmp.onEvent((event) => events.push(event.event));
  assert.deepEqual(await qmp.execute("query-status", undefined, 2000), { status: "running", running: true });
  assert.deepEqual(events, ["RESUME"]);
  qmp.close();
});

test("a command's error names the command, class and description", async () => {
  const path = await fakeQmp(
    GREETING,
    wellBehaved({ cont: (id) => JSON.stringify({ error: { class: "GenericError", desc: "Migration is not finalized yet" }, id }) }),
  );
  const qmp = await QmpClient.connect(path, 2000);
  await rejectsWithCode(qmp.execute("cont", undefined, 2000), "MOAT_QMP_COMMAND", /cont: GenericError: Migration is not finalized yet/);
  qmp.close();
});

test("a peer that never greets times out", async () => {
  const path = await fakeQmp(undefined, () => undefined);
  await rejectsWithCode(QmpClient.connect(path, 100), "MOAT_QMP_TIMEOUT", /no greeting within 100 ms/);
});

test("a peer that speaks something else is refused", async () => {
  const path = await fakeQmp("SSH-2.0-OpenSSH_9.2\r\n", () => undefined);
  await rejectsWithCode(QmpClient.connect(path, 2000), "MOAT_QMP_PROTOCOL", /closed before greeting/);
});

test("a JSON value that is not an object closes the connection", async () => {
  const path = await fakeQmp(GREETING, wellBehaved({ "query-status": () => "[1, 2, 3]" }));
  const qmp = await QmpClient.connect(path, 2000);
  await rejectsWithCode(qmp.execute("query-status", undefined, 2000), "MOAT_QMP_CLOSED");
  assert.match((await qmp.closed).message, /not a JSON object/);
});

test("an endless line is cut off, not buffered for ever", async () => {
  const path = await fakeQmp(GREETING, (line, peer) => {
    const { execute, id } = JSON.parse(line) as { execute: string; id: string };
    if (execute === "qmp_capabilities") peer.write(JSON.stringify({ return: {}, id }) + "\r\n");
    else peer.write("x".repeat(2 * 1024 * 1024));
  });
  const qmp = await QmpClient.connect(path, 2000);
  await rejectsWithCode(qmp.execute("query-status", undefined, 5000), "MOAT_QMP_CLOSED");
  assert.match((await qmp.closed).message, /longer than 1048576 bytes/);
});

test("an answer with neither return nor error fails the call and closes", async () => {
  const path = await fakeQmp(GREETING, wellBehaved({ stop: (id) => JSON.stringify({ id }) }));
  const qmp = await QmpClient.connect(path, 2000);
  await rejectsWithCode(qmp.execute("stop", undefined, 2000), "MOAT_QMP_PROTOCOL", /malformed answer/);
  assert.match((await qmp.closed).message, /neither return nor error/);
});

test("a command with no answer times out", async () => {
  const path = await fakeQmp(GREETING, wellBehaved({ "query-status": () => "" }));
  const qmp = await QmpClient.connect(path, 2000);
  await rejectsWithCode(qmp.execute("query-status", undefined, 50), "MOAT_QMP_TIMEOUT", /query-status: no answer within 50 ms/);
  qmp.close();
});
