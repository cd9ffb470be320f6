// VM templates (issue 5): sandboxes restore from a saved VM instead of booting, each clone
// takes its own randomness, clock and hostname, a changed configuration builds a new
// template, and a sandbox the template does not fit boots cold, saying why.
import assert from "node:assert/strict";
import { after, afterEach, test } from "node:test";
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

test("clones of one template differ: random bytes and boot id; their clock is the host's", async () => {
  const probe = "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; cat /proc/sys/kernel/random/boot_id; date +%s";
  const runs = await Promise.all(["clone-a", "clone-b"].map((name) => moat(["run", "--name", name, "busybox", "sh", "-c", probe], { MOAT_TRACE: "sandbox" })));
  const [a, b] = runs.map((run) => {
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /agent ready after \d+ ms \(from a template;/);
    const [random, bootId, seconds] = run.stdout.trim().split("\n");
    return { random, bootId, seconds: Number(seconds) };
  });
  assert.notEqual(a!.random, b!.random, "each clone's RNG was reseeded"); // two runs, mapped above
  assert.notEqual(a!.bootId, b!.bootId);
  const now = Date.now() / 1000;
  assert.ok(Math.abs(a!.seconds - now) < 120, `guest clock ${a!.seconds}, host ${now}: the clone's clock was set`);
});

test("a sandbox of another size boots cold and says why; enable_template = false boots cold", async () => {
  const sized = await moat(["run", "--cpus", "2", "busybox", "true"], { MOAT_TRACE: "sandbox" });
  assert.equal(sized.code, 0, sized.stderr);
  assert.match(sized.stderr, /cold boot: 2 vCPUs and 512 MiB differ from the template's 1 and 512/);
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
