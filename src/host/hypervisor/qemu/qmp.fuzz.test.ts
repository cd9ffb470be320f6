// Fuzz target "qmp-stream" (test/support/fuzz.ts): QEMU, once a guest may own it, says what
// it likes on QMP. The input is its lines: the first is sent when moatd connects (the
// greeting's place), each next one in answer to one command moatd sends, "@ID" in it replaced
// by that command's id. Connecting, a command, and a query (whose answer must be an object)
// each end in a value or in one of moat's errors, within their timeouts.
import { test } from "node:test";
import fc from "fast-check";
import { bytesNear, expectMoatError, fuzzTarget } from "../../../../test/support/fuzz.js";
import { listen } from "../../../../test/support/unix-socket.js";
import { QmpClient } from "./qmp.js";

// Short: a timeout is one of the right ends too, and the target must run in seconds.
const CALL_MS = 25;

const json = fc.jsonValue({ maxDepth: 3 });
const line = fc.oneof(
  json.map((value) => JSON.stringify({ return: value, id: "@ID" })),
  json.map((value) => JSON.stringify({ error: value, id: "@ID" })),
  fc.record({ class: json, desc: json }).map((error) => JSON.stringify({ error, id: "@ID" })),
  fc.constantFrom('{"QMP": {"version": {}, "capabilities": []}}', '{"return": {}, "id": "@ID"}', '{"return": {"status": "running"}, "id": "@ID"}', '{"id": "@ID"}', '{"return": null, "id": "moat-99"}'),
  json.map((data) => JSON.stringify({ event: "STOP", data })),
  json.map((value) => JSON.stringify(value)),
  fc.string({ maxLength: 40, unit: "binary" }),
);
// Mostly a greeting and a capabilities answer that let moatd in, so that the hostile lines
// reach the commands after them.
const greeting = fc.oneof({ weight: 9, arbitrary: fc.constant('{"QMP": {"version": {}, "capabilities": []}}') }, { weight: 1, arbitrary: line });
const capabilities = fc.oneof({ weight: 9, arbitrary: fc.constant('{"return": {}, "id": "@ID"}') }, { weight: 1, arbitrary: line });
const session = fc.tuple(greeting, capabilities, fc.array(line, { maxLength: 4 })).map(([first, second, rest]) => Buffer.from([first, second, ...rest].join("\n") + "\n"));
const inputs = bytesNear(session);

async function check(input: Buffer): Promise<void> {
  const { path, server, close } = await listen();
  const lines = input.toString("utf8").split("\n");
  server.on("connection", (socket) => {
    socket.on("error", () => undefined);
    let next = 0;
    const say = (id: string) => {
      if (next < lines.length) socket.write(`${(lines[next++] ?? "").replaceAll("@ID", id)}\n`);
    };
    say("");
    let buffered = "";
    socket.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const command = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        say(/"id":"([^"]*)"/.exec(command)?.[1] ?? "");
      }
    });
  });
  let qmp: QmpClient | undefined;
  try {
    qmp = await QmpClient.connect(path, CALL_MS);
    await qmp.execute("cont", undefined, CALL_MS).catch((error: unknown) => expectMoatError(error));
    const answer = await qmp.query("query-status", undefined, CALL_MS).catch((error: unknown) => expectMoatError(error));
    if (answer !== undefined && (typeof answer !== "object" || answer === null || Array.isArray(answer))) throw new Error(`query answered ${JSON.stringify(answer)}`);
  } catch (error) {
    expectMoatError(error);
  } finally {
    qmp?.close();
    close();
  }
}

test("fuzz qmp-stream: connect, execute and query end in a value or a MoatError, whatever QEMU says", async () => {
  await fuzzTarget("qmp-stream", inputs, check, 120);
});
