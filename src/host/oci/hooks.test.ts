import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import { asksNewNetworkNamespace, hostHooks, networkNamespacePath, runHooks, runHooksWarning, specAnnotations, type HookState } from "./hooks.js";
import type { OciSpec } from "./bundle.js";

const dir = mkdtempSync(join(tmpdir(), "moat-hooks-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function script(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

const state: HookState = { ociVersion: "1.0.2", id: "c1", status: "creating", pid: 4242, bundle: dir, annotations: { a: "b" } };

test("a hook reads the state on stdin, gets its argv (args[0] as argv[0]), exactly its env, and the bundle as working directory", async () => {
  const record = join(dir, "record");
  const hook = script("record.sh", `cat > ${record}.state; echo "$0|$1|$2" > ${record}.argv; env | grep -v '^PWD=' | sort > ${record}.env; pwd > ${record}.cwd`);
  await runHooks("prestart", [{ path: hook, args: ["libnetwork-setkey", "one", "two"], env: ["FOO=bar", "EMPTY="] }], state, "container c1");
  assert.deepEqual(JSON.parse(readFileSync(`${record}.state`, "utf8")), state);
  // sh reports $0 as the script it runs; the arguments after argv[0] are the hook's.
  assert.match(readFileSync(`${record}.argv`, "utf8"), /\|one\|two\n$/);
  const env = readFileSync(`${record}.env`, "utf8").split("\n").filter((line) => line && !line.startsWith("SHLVL=") && !line.startsWith("_="));
  assert.deepEqual(env, ["EMPTY=", "FOO=bar"]);
  assert.equal(readFileSync(`${record}.cwd`, "utf8").trim(), dir);
});

test("the first failing hook fails the run with MOAT_HOOK_FAILED naming it and its output; the rest do not run", async () => {
  const failing = script("fail.sh", "echo broken >&2; exit 3");
  const marker = join(dir, "not-run");
  const later = script("later.sh", `touch ${marker}`);
  await assert.rejects(runHooks("createRuntime", [{ path: failing }, { path: later }], state, "container c1"), (error: unknown) => {
    assert.ok(error instanceof MoatError);
    assert.equal(error.code, "MOAT_HOOK_FAILED");
    assert.match(error.message, /^container c1: createRuntime hook #0 \(.*fail\.sh\): exited with status 3 \(stderr: broken\)$/);
    return true;
  });
  assert.equal(existsSync(marker), false);
});

test("a hook past its timeout is killed and fails; a hook that cannot be run fails", async () => {
  const slow = script("slow.sh", "exec sleep 30");
  await assert.rejects(runHooks("prestart", [{ path: slow, timeout: 1 }], state, "c"), /did not finish within its timeout of 1 s; killed/);
  await assert.rejects(runHooks("prestart", [{ path: join(dir, "missing") }], state, "c"), /prestart hook #0 .*missing\): cannot be run: spawn .*ENOENT/);
});

test("a hook that does not read its stdin still succeeds", async () => {
  await runHooks("prestart", [{ path: script("true.sh", "exit 0") }], { ...state, annotations: Object.fromEntries(Array.from({ length: 4000 }, (_, i) => [`k${i}`, "v".repeat(40)])) }, "c");
});

test("poststart/poststop failures are warnings, and the next hook still runs", async () => {
  const marker = join(dir, "ran-after-warning");
  const warnings: string[] = [];
  await runHooksWarning("poststop", [{ path: script("fail2.sh", "exit 1") }, { path: script("mark.sh", `touch ${marker}`) }], { ...state, status: "stopped" }, "container c1", (line) => warnings.push(line));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? "", /^warning: container c1: poststop hook #0 .*: exited with status 1$/);
  assert.equal(existsSync(marker), true);
});

test("hostHooks takes the host's four kinds and leaves createContainer/startContainer to the guest", () => {
  const hook = { path: "/bin/true" };
  const spec = { ociVersion: "1.0.2", process: { args: ["sh"], cwd: "/" }, root: { path: "rootfs" }, hooks: { prestart: [hook], createContainer: [hook], poststop: [hook], poststart: [] }, annotations: { x: "y" } } as OciSpec;
  assert.deepEqual(hostHooks(spec), { prestart: [hook], poststop: [hook] });
  assert.deepEqual(specAnnotations(spec), { x: "y" });
  assert.deepEqual(hostHooks({ ...spec, hooks: undefined }), {});
});

test("the spec's network namespace: a new one without a path, or the one it names by an absolute path", () => {
  const withNetwork = (entry: Record<string, unknown> | undefined) => ({ ociVersion: "1.0.2", process: { args: ["true"] }, linux: { namespaces: [{ type: "pid" }, ...(entry ? [entry] : [])] } }) as unknown as OciSpec; // the fields these read
  assert.deepEqual([asksNewNetworkNamespace(withNetwork({ type: "network" })), networkNamespacePath(withNetwork({ type: "network" }))], [true, undefined]);
  assert.deepEqual([asksNewNetworkNamespace(withNetwork({ type: "network", path: "/run/netns/a" })), networkNamespacePath(withNetwork({ type: "network", path: "/run/netns/a" }))], [false, "/run/netns/a"]);
  assert.deepEqual([asksNewNetworkNamespace(withNetwork(undefined)), networkNamespacePath(withNetwork(undefined))], [false, undefined]);
  assert.equal(networkNamespacePath(withNetwork({ type: "network", path: "relative" })), undefined, "guestSpec refuses it, naming it");
});
