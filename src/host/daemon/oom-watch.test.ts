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

test("a flood is paced: OOM_BURST events per window are taken, the next only once the window has passed", async () => {
  const flood = Array.from({ length: OOM_BURST * 2 }, (_, index) => ({ containerId: "c1", sequence: BigInt(index + 1) }));
  let nowMs = 0;
  const waits: number[] = [];
  let windowPassed = () => undefined as void;
  const wait = (ms: number) => {
    waits.push(ms);
    return new Promise<void>((resolve) => (windowPassed = () => ((nowMs += ms), resolve())));
  };
  const source = scripted(flood);
  let heard = 0;
  const watch = new OomWatch(source, "test", () => heard++, () => nowMs, wait);
  await watch.caughtUp(BigInt(OOM_BURST));
  await settled();
  assert.equal(heard, OOM_BURST, "one window's worth");
  assert.equal(source.asked.length, OOM_BURST, "the guest is not asked again while the window lasts");
  assert.deepEqual(waits, [OOM_WINDOW_MS]);
  windowPassed();
  await watch.caughtUp(BigInt(2 * OOM_BURST));
  assert.equal(heard, 2 * OOM_BURST, "the next window takes and hands on the rest: nothing is dropped");
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
