// Failures the OCI callers must be told about, with nothing left behind (issue 3): a bundle
// the guest cannot run fails at create, and a guest that dies under a running exec ends both
// the exec and the container with 137.
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { busyboxBundle } from "./harness/bundle.js";
import { createAsConmon, ociWorkspace } from "./harness/oci-runtime.js";
import { TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const { subreaper, moat } = ociWorkspace(workspace);

test("a bundle whose program does not exist fails at create with crun's words, and leaves nothing", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/missing-binary`, ["/no/such/program"]);
  const result = await moat(["create", "--bundle", bundle, "nobin-1"]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /container nobin-1: crun create failed: .*\/no\/such\/program/);
  const list = await moat(["list", "-q"]);
  assert.equal(list.stdout, "");
});

test("a guest that dies under a running exec: the exec and the container end with 137", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/doomed`, ["sleep", "1000"]);
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, "doomed-1", "");
  assert.equal(await container.created, 0, container.stderr());
  assert.equal((await moat(["start", "doomed-1"])).code, 0);
  const exec = moat(["exec", "doomed-1", "sleep", "1000"]);
  for (;;) {
    // The table lists the guest's processes (`--format json` gives the host's stand-in, as runc's does).
    const ps = await moat(["ps", "doomed-1"]);
    if (ps.stdout.split("\n").filter((line) => line.endsWith("sleep 1000")).length === 2) break;
    await sleep(100);
  }
  const [qemu] = workspace.qemuProcesses();
  process.kill(Number(qemu!.split(" ")[0]), "SIGKILL"); // the sandbox's one QEMU, listed as "pid cmdline"

  assert.equal((await exec).code, 137);
  assert.equal((await container.standIn).exitStatus, 137);
  const state = await moat(["state", "doomed-1"]);
  assert.equal((JSON.parse(state.stdout) as { status: string }).status, "stopped");
  const deleted = await moat(["delete", "doomed-1"]);
  assert.equal(deleted.code, 0, deleted.stderr);
});
