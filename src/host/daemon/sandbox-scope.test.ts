import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { containUnhandledRejections } from "./sandbox-scope.js";

// In a child process of its own: node:test has an unhandledRejection listener of its own.
test("an unhandled rejection on a sandbox's path is logged as that sandbox's, and the process goes on", () => {
  const module = new URL("./sandbox-scope.js", import.meta.url).href;
  const script = `
    const { containUnhandledRejections, inSandbox } = await import(${JSON.stringify(module)});
    const lines = [];
    await new Promise((bothLogged) => {
      containUnhandledRejections((line) => lines.push(line) === 2 && bothLogged());
      inSandbox("s1", () => void (async () => { await new Promise((resolve) => setImmediate(resolve)); throw new Error("boom in s1"); })());
      void Promise.reject(new Error("boom outside"));
    });
    process.stdout.write(JSON.stringify(lines));
  `;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  assert.equal(child.status, 0, `the process ended: ${child.stderr}`);
  const lines = JSON.parse(child.stdout) as string[]; // the child's own JSON
  assert.ok(lines.some((line) => line.startsWith("sandbox s1: unhandled rejection") && line.includes("boom in s1")), lines.join("\n"));
  assert.ok(lines.some((line) => line.startsWith("moatd: unhandled rejection") && line.includes("boom outside")), lines.join("\n"));
});

test("the guard's lines are rate-limited, and the suppressed ones counted", () => {
  const lines: string[] = [];
  let nowMs = 0;
  const guard = containUnhandledRejections((line) => lines.push(line), () => nowMs);
  process.off("unhandledRejection", guard); // called directly here
  for (let index = 0; index < 25; index++) guard(new Error(`e${index}`));
  assert.equal(lines.length, 10);
  nowMs += 60_000;
  guard(new Error("next window"));
  assert.match(lines[10] ?? "", /15 more unhandled rejections/);
  assert.match(lines[11] ?? "", /next window/);
});
