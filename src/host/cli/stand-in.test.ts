import assert from "node:assert/strict";
import { resolve } from "node:path";
import { test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import { standInTerminal } from "./stand-in.js";

test("a process without a terminal gets none, and may not name a console socket", () => {
  assert.equal(standInTerminal("c1", false, undefined, true), undefined);
  assert.throws(() => standInTerminal("c1", false, "console.sock", false), (error: unknown) => error instanceof MoatError && error.code === "MOAT_CLI_TERMINAL" && /^c1: --console-socket is given/.test(error.message));
});

test("a terminal goes to the console socket (made absolute), else to the caller's own terminal in the foreground", () => {
  assert.deepEqual(standInTerminal("c1", true, "console.sock", true), { consoleSocket: resolve("console.sock") });
  assert.deepEqual(standInTerminal("c1", true, "/run/x.sock", false), { consoleSocket: "/run/x.sock" });
  assert.equal(standInTerminal("c1", true, undefined, false), "own");
});

test("a detached process with a terminal needs a console socket, as with runc", () => {
  assert.throws(() => standInTerminal("c1", true, undefined, true), (error: unknown) => error instanceof MoatError && error.code === "MOAT_CLI_TERMINAL" && /--console-socket must say where its terminal goes/.test(error.message));
});
