// Issue 10, item 12: a bad bundle is refused by `moat create` and `moat run --bundle` before
// anything starts (no moatd, nothing under the state root), in one line naming the file and
// the field; and moatd refuses it the same way for callers that reach it directly (the
// containerd shim's Create), leaving nothing but its own files.
import assert from "node:assert/strict";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, test } from "node:test";
import { DaemonClient } from "../../src/host/daemon/index.js";
import { MoatError } from "../../src/shared/errors.js";
import type { OciSpec } from "../../src/host/oci/index.js";
import { busyboxBundle } from "./harness/bundle.js";
import { containerdForTestFile } from "./harness/containerd.js";
import { BUSYBOX_IMAGE } from "./harness/oci-image.js";
import { runMoat } from "./harness/moat-cli.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const { workspace: containerdWorkspace, containerd } = containerdForTestFile();
after(async () => {
  await workspace.stopDaemon();
  workspace.remove();
});

type Linux = { namespaces: Array<{ type: string }>; [key: string]: unknown };
const linuxOf = (spec: OciSpec) => spec.linux as Linux; // the harness's spec has linux.namespaces

/** Bundles that older moat accepted (and crun in the guest refused, after a VM had started), each with the field its error names. */
const BAD: Array<{ name: string; field: string; change: (spec: OciSpec) => void }> = [
  { name: "namespace-type", field: "linux.namespaces[6].type: must be one of", change: (spec) => void linuxOf(spec).namespaces.push({ type: "net" }) },
  {
    name: "hostname-no-uts",
    field: "hostname: needs a UTS namespace",
    change: (spec) => void (linuxOf(spec).namespaces = linuxOf(spec).namespaces.filter((namespace) => namespace.type !== "uts")),
  },
  { name: "env-no-equals", field: 'process.env[1]: must be NAME=VALUE, got "JUSTNAME"', change: (spec) => void spec.process.env?.push("JUSTNAME") },
  { name: "rlimit-twice", field: "process.rlimits[1].type: RLIMIT_NOFILE is set twice", change: (spec) => void (spec.process.rlimits as unknown[]).push({ type: "RLIMIT_NOFILE", soft: 1, hard: 1 }) },
  { name: "capabilities", field: 'process.capabilities.bounding: must be an array, got "CAP_KILL"', change: (spec) => void ((spec.process.capabilities as Record<string, unknown>).bounding = "CAP_KILL") },
  { name: "seccomp-action", field: "linux.seccomp.defaultAction: must be one of", change: (spec) => void (linuxOf(spec).seccomp = { defaultAction: "SCMP_ACT_DENY" }) },
  { name: "memory-string", field: 'linux.resources.memory.limit: must be an integer from -1 to 9223372036854775807, got "2g"', change: (spec) => void (linuxOf(spec).resources = { memory: { limit: "2g" } }) },
  { name: "bind-missing", field: "mounts[7].source: ", change: (spec) => void spec.mounts?.push({ destination: "/x", type: "bind", source: "/nonexistent/moat-test", options: ["rbind"] }) },
  { name: "version", field: 'ociVersion: must be a SemVer 2.0.0 version such as "1.0.2", got "1.0"', change: (spec) => void (spec.ociVersion = "1.0") },
];

const bundles = new Map(BAD.map(({ name, change }) => [name, busyboxBundle(join(workspace.dir, name), ["true"], change)]));

/** Nothing of moat's under the state root, and no moatd serving it. */
function assertNothingStarted(what: string): void {
  assert.deepEqual(workspace.daemonProcesses(), [], `${what}: a moatd was started`);
  const entries = existsSync(workspace.stateRoot) ? readdirSync(workspace.stateRoot) : [];
  assert.deepEqual(entries, [], `${what}: left in the state root`);
}

afterEach(() => workspace.assertNothingLeft(DAEMON_FILES));

for (const { name, field } of BAD) {
  for (const command of [["create"], ["run"], ["run", "--detach"]]) {
    test(`moat ${command.join(" ")} --bundle refuses a bad bundle (${name}) before anything starts`, async () => {
      const bundle = bundles.get(name)!; // made above for every entry
      const id = `bad-${name}`;
      const result = await runMoat(["--root", workspace.stateRoot, ...command, "--bundle", bundle, id]);
      assert.equal(result.code, 1, result.stderr);
      const lines = result.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, `one line on stderr, got:\n${result.stderr}`);
      assert.ok(lines[0]!.startsWith(`moat: ${bundle}/config.json: ${field}`), `stderr names the file and the field: ${lines[0]}`);
      assertNothingStarted(`moat ${command.join(" ")} (${name})`);
    });
  }
}

test("moatd refuses the same bundles for a caller that reaches it directly, leaving only its own files", async () => {
  const client = await DaemonClient.connect({ stateRoot: workspace.stateRoot, configPath: undefined });
  try {
    for (const { name, field } of BAD) {
      const bundle = bundles.get(name)!; // made above for every entry
      await assert.rejects(client.create(`direct-${name}`, bundle), (error: unknown) => {
        assert.ok(error instanceof MoatError, String(error));
        assert.ok(error.message.includes(`${bundle}/config.json: ${field}`), error.message);
        return true;
      });
    }
  } finally {
    client.close();
  }
  const entries = readdirSync(workspace.stateRoot).filter((entry) => !DAEMON_FILES.includes(entry));
  assert.deepEqual(entries, [], "moatd left something for a refused create");
});

test("through containerd: a task whose spec is bad (ctr run --seccomp-profile with an unknown action) is refused by the shim's Create naming the field, leaving nothing", async () => {
  const profile = join(containerdWorkspace.dir, "bad-seccomp.json");
  writeFileSync(profile, JSON.stringify({ defaultAction: "SCMP_ACT_DENY" }));
  const result = await containerd.run(["--rm", "--seccomp", "--seccomp-profile", profile, BUSYBOX_IMAGE, "bad-seccomp-1", "true"]);
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /config\.json: linux\.seccomp\.defaultAction: must be one of SCMP_ACT_KILL, .*got "SCMP_ACT_DENY"/, `${result.stderr}\n--- moatd.log\n${containerdWorkspace.daemonLog()}`);
  assert.deepEqual(containerdWorkspace.qemuProcesses(), [], "no VM was started for it");
  await containerd.ctr(["containers", "rm", "bad-seccomp-1"]); // ctr run --rm leaves the container when its task cannot be created
  await containerd.assertNothingLeft();
});
