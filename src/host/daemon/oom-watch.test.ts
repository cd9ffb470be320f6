import assert from "node:assert/strict";
import { test } from "node:test";
import { OOM_BURST, OOM_WINDOW_MS, OomWatch, type OomSource } from "./oom-watch.js";

type Answer = { containerId: string; sequence: bigint } | Error;

/** A source that answers from a script, one answer per call; a call with none left waits for `send`. */
function scripted(answers: Answer[]): OomSource & { asked: bigint[]; send(more: Answer[]): void } {
  const asked: bigint[] = [];
  let waiting: (() => void) | undefined;
  return {
    asked,
    send(more) {
      answers.push(...more);
      waiting?.();
    },
    async nextOomEvent(afterSequence) {
      asked.push(afterSequence);
      while (answers.length === 0) await new Promise<void>((resolve) => (waiting = resolve));
      const answer = answers.shift()!; // not empty here
      if (answer instanceof Error) throw answer;
      return answer;
    },
  };
}

const settled = () => new Promise((resolve) => setImmediate(resolve));

test("events are handed on in order, each acknowledged by the next call, and an exit waits for the sequence it names", async () => {
  const source = scripted([
    { containerId: "c1", sequence: 1n },
    { containerId: "c2", sequence: 2n },
  ]);
  const heard: string[] = [];
  const watch = new OomWatch(source, "test", (id) => heard.push(id));
  await watch.caughtUp(2n);
  assert.deepEqual(heard, ["c1", "c2"], "both handed on before the wait for 2 ended");
  await settled();
  assert.deepEqual(source.asked, [0n, 1n, 2n]);
});

test("the loop ends with the agent connection; waits then end at once", async () => {
  const source = scripted([{ containerId: "c1", sequence: 1n }, new Error("connection closed")]);
  const heard: string[] = [];
  const watch = new OomWatch(source, "test", (id) => heard.push(id));
  await settled();
  await watch.caughtUp(7n, 60_000); // would take a minute if the ended loop were still waited for
  assert.deepEqual(heard, ["c1"]);
});

test("a sequence the guest never sends delays an exit by the bound only", async () => {
  const watch = new OomWatch(scripted([]), "test", () => assert.fail("no event was sent"));
  await watch.caughtUp(5n, 20);
});

test("a flood is cut to OOM_BURST events per window; the rest are taken and dropped", async () => {
  const flood = (from: number) => Array.from({ length: OOM_BURST * 2 }, (_, index) => ({ containerId: "c1", sequence: BigInt(from + index) }));
  let nowMs = 0;
  const source = scripted(flood(1));
  let heard = 0;
  const watch = new OomWatch(source, "test", () => heard++, () => nowMs);
  await watch.caughtUp(BigInt(2 * OOM_BURST));
  assert.equal(heard, OOM_BURST, "one window's worth");
  nowMs += OOM_WINDOW_MS;
  source.send(flood(2 * OOM_BURST + 1));
  await watch.caughtUp(BigInt(4 * OOM_BURST));
  assert.equal(heard, 2 * OOM_BURST, "the next window hands on again");
});

test("a listener that throws does not end the loop", async () => {
  const heard: string[] = [];
  const watch = new OomWatch(
    scripted([
      { containerId: "bad", sequence: 1n },
      { containerId: "good", sequence: 2n },
    ]),
    "test",
    (id) => {
      if (id === "bad") throw new Error("listener failed");
      heard.push(id);
    },
  );
  await watch.caughtUp(2n);
  assert.deepEqual(heard, ["good"]);
});
