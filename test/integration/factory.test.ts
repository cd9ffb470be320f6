// VM templates (issue 5): sandboxes restore from a saved VM instead of booting (warmed up by
// one container its agent ran before it was saved), each clone takes its own randomness, clock
// and hostname, a changed configuration builds a new template, a sandbox of another size
// restores from a template of its size class (built on first use), and with templates off
// sandboxes boot cold, saying why.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, test } from "node:test";
import { startSandboxVm } from "../../src/host/sandbox/index.js";
import { runMoat } from "./harness/moat-cli.js";
import { TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
afterEach(() => workspace.assertNothingLeft());
after(() => workspace.remove());
const moat = (args: string[], env: NodeJS.ProcessEnv = {}) => runMoat(["--root", workspace.stateRoot, ...args], env);

test("factory init builds the template and proves a VM restores from it; status marks it current", async () => {
  const init = await moat(["factory", "init"]);
  assert.equal(init.code, 0, init.stderr);
  assert.match(init.stdout, /^template ready in .*templates; a VM restored from it answered \d+ ms after QEMU started\n$/);
  const status = await moat(["factory", "status"]);
  assert.match(status.stdout, /^[0-9a-f]{16} {2}current {2}saved /m);
  const check = await moat(["check"]);
  assert.match(check.stdout, /ok {3}VM templates +on; template [0-9a-f]{16} saved/);
});

test("a template's agent ran one container before the template was saved; its clones carry nothing of it", async () => {
  const key = /^([0-9a-f]{16}) {2}current/m.exec((await moat(["factory", "status"])).stdout)?.[1];
  assert.ok(key, "factory init (above) built the template");
  assert.match(readFileSync(join(workspace.stateRoot, ".templates", key, "logs", "vm.log"), "utf8"), /warm-up: one container run and removed in \d+ ms/);
  const sandbox = await startSandboxVm(workspace.config(), "warm-clone");
  try {
    assert.equal(sandbox.timings.start.kind, "template");
    await assert.rejects(sandbox.agent.stateContainer("moat-warm-up"), /NOT_FOUND/);
  } finally {
    await sandbox.shutdown();
  }
});

test("clones of one template differ: random bytes and boot id; their clock is the host's", async () => {
  const probe = "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; cat /proc/sys/kernel/random/boot_id; date +%s";
  const runs = await Promise.all(["clone-a", "clone-b"].map((name) => moat(["run", "--name", name, "busybox", "sh", "-c", probe], { MOAT_TRACE: "sandbox" })));
  const [a, b] = runs.map((run) => {
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /agent ready after \d+ ms \(from a template, [0-9a-f]{16}: 1 vCPU, 512 MiB;/);
    const [random, bootId, seconds] = run.stdout.trim().split("\n");
    return { random, bootId, seconds: Number(seconds) };
  });
  assert.notEqual(a!.random, b!.random, "each clone's RNG was reseeded"); // two runs, mapped above
  assert.notEqual(a!.bootId, b!.bootId);
  const now = Date.now() / 1000;
  assert.ok(Math.abs(a!.seconds - now) < 120, `guest clock ${a!.seconds}, host ${now}: the clone's clock was set`);
});

test("a sandbox of another size restores from a template of its size class, built on first use, and has that size; enable_template = false boots cold", async () => {
  const probe = "grep -c ^processor /proc/cpuinfo; grep MemTotal /proc/meminfo";
  const sized = async () => {
    // 700 MiB rounds up to the 768 MiB class.
    const run = await moat(["run", "--cpus", "2", "--memory", "700m", "busybox", "sh", "-c", probe], { MOAT_TRACE: "sandbox,factory" });
    assert.equal(run.code, 0, run.stderr);
    const key = /agent ready after \d+ ms \(from a template, ([0-9a-f]{16}): 2 vCPUs, 768 MiB;/.exec(run.stderr)?.[1];
    assert.ok(key, run.stderr);
    const [cpus, memTotal] = run.stdout.trim().split("\n");
    assert.equal(cpus, "2");
    const memTotalMiB = Number(/(\d+) kB/.exec(memTotal ?? "")?.[1]) / 1024;
    assert.ok(memTotalMiB > 512 && memTotalMiB <= 768, `the guest has the 768 MiB class's memory: ${memTotal}`);
    return { key, built: /factory template [0-9a-f]{16}: built in/.test(run.stderr) };
  };
  const first = await sized();
  const second = await sized();
  assert.ok(first.built, "the first sandbox of that size built its template");
  assert.ok(!second.built, "the second restored from it");
  assert.equal(second.key, first.key);
  const status = await moat(["factory", "status"]);
  assert.match(status.stdout, new RegExp(`^${first.key} {2}sized {4}saved .*2 vCPUs, 768 MiB`, "m"));
  assert.match(status.stdout, /^[0-9a-f]{16} {2}current {2}saved .*1 vCPU, 512 MiB/m, "the default size's template is kept beside it");
  const off = workspace.configFile("templates-off", "[factory]\nenable_template = false\n");
  const cold = await moat(["--config", off, "run", "busybox", "true"], { MOAT_TRACE: "sandbox" });
  assert.equal(cold.code, 0, cold.stderr);
  assert.match(cold.stderr, /cold boot: templates are off \(\[factory\] enable_template\)/);
});

test("a changed configuration builds a new template in place of the old; destroy removes it", async () => {
  const before = (await moat(["factory", "status"])).stdout;
  const changed = workspace.configFile("params", '[hypervisor.qemu]\nkernel_params = "moat.test=1"\n');
  const run = await moat(["--config", changed, "run", "busybox", "cat", "/proc/cmdline"], { MOAT_TRACE: "sandbox" });
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /from a template/);
  assert.match(run.stdout, /moat\.test=1/, "the template was booted with the new parameters");
  const after = (await moat(["--config", changed, "factory", "status"])).stdout;
  const key = (text: string) => /^([0-9a-f]{16}) {2}current/m.exec(text)?.[1];
  assert.ok(key(before) && key(after) && key(before) !== key(after), `${before}\n${after}`);
  assert.equal(after.match(/^[0-9a-f]{16} /gm)?.length, 1, "the old template was removed");
  const destroyed = await moat(["--config", changed, "factory", "destroy"]);
  assert.equal(destroyed.stdout, `removed 1 template from ${workspace.stateRoot}/.templates\n`);
});
