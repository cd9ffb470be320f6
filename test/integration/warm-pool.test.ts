// The warm pool (issue 5, [factory] vm_cache_number): moatd keeps VMs restored from the
// template; a new sandbox takes one (moat run over moatd's socket, or moatd's own create) and
// gets its shares, bind-mounted into the VM's one 9p export after the VM started, and its own
// identity; the pool refills; a moatd killed and restarted leaves no stray pool VM.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { after, afterEach, test } from "node:test";
import { busyboxBundle } from "./harness/bundle.js";
import { helperBinary } from "./harness/c-helper.js";
import { runMoat } from "./harness/moat-cli.js";
import { createAsConmon } from "./harness/oci-runtime.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
afterEach(async () => {
  await workspace.stopDaemon(); // its pool goes with it
  workspace.assertNothingLeft(DAEMON_FILES);
});
after(() => workspace.remove());

const POOL_SIZE = 2;
const config = workspace.configFile("pool", `[factory]\nvm_cache_number = ${POOL_SIZE}\n`);
const moat = (args: string[], env: NodeJS.ProcessEnv = {}) => runMoat(["--config", config, ...args], env);
/** Restoring two VMs under TCG on a busy machine; a bound so that a broken pool fails the test instead of hanging it. */
const FILL_WAIT_MS = 300_000;

/** The pool's ready VMs as `moat factory status` reports them. */
async function poolStatus(): Promise<{ ready: number; ids: string[] }> {
  const status = await moat(["factory", "status"]);
  assert.equal(status.code, 0, status.stderr);
  const match = /^warm pool: (\d+) of \d+ VMs ready(?: \(([^)]*)\))?/m.exec(status.stdout);
  assert.ok(match, status.stdout);
  return { ready: Number(match[1]), ids: match[2] ? match[2].split(", ") : [] };
}

/** Starts moatd if none runs (any command does) and waits until its pool is full. */
async function fullPool(): Promise<string[]> {
  const list = await moat(["list"], { MOAT_TRACE: "sandbox,factory" }); // moatd inherits the tracer: its log says which path each start took
  assert.equal(list.code, 0, list.stderr);
  const deadline = Date.now() + FILL_WAIT_MS;
  for (;;) {
    const { ready, ids } = await poolStatus();
    if (ready === POOL_SIZE) return ids;
    assert.ok(Date.now() < deadline, `the pool did not fill within ${FILL_WAIT_MS} ms:\n${workspace.daemonLog()}`);
    await sleep(500);
  }
}

function poolQemus(): string[] {
  return workspace.qemuProcesses().filter((line) => line.includes(`${workspace.stateRoot}/.pool/`));
}

test("moat run takes a pool VM; its read-write and read-only directory binds work after restore; the pool refills", async () => {
  const before = await fullPool();
  const dir = `${workspace.dir}/binds`;
  mkdirSync(`${dir}/ro`, { recursive: true });
  mkdirSync(`${dir}/rw`);
  writeFileSync(`${dir}/ro/in`, "from the host\n");
  const script = ["cat /ro/in", "echo out > /rw/out", "touch /ro/x 2>/dev/null && echo ro-writable", "echo root > /on-root", "ls /rw"].join("; ");
  const bundle = busyboxBundle(`${dir}/bundle`, ["sh", "-c", script], (spec) => {
    spec.mounts = [
      ...(spec.mounts ?? []),
      { destination: "/ro", type: "bind", source: `${dir}/ro`, options: ["rbind", "ro"] },
      { destination: "/rw", type: "bind", source: `${dir}/rw`, options: ["rbind", "rw"] },
    ];
  });
  const run = await moat(["run", "--bundle", bundle, "pooled-binds"], { MOAT_TRACE: "sandbox" });
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /agent ready after \d+ ms \(from the warm pool, template [0-9a-f]{16}: 1 vCPU, 512 MiB;/);
  assert.equal(run.stdout, "from the host\nout\n");
  assert.equal(readFileSync(`${dir}/rw/out`, "utf8"), "out\n");
  assert.equal(readFileSync(`${bundle}/rootfs/on-root`, "utf8"), "root\n");
  assert.ok(!existsSync(`${dir}/ro/x`), "the read-only bind refused the write");
  // The pool refills, one VM at a time, to its size again.
  const after = await fullPool();
  assert.equal(after.filter((id) => !before.includes(id)).length, 1, `one new pool VM: before ${before}, after ${after}`);
});

test("two pooled sandboxes read different random bytes and each has its own hostname; moatd's own create takes one too", async () => {
  await fullPool();
  const probe = "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; cat /proc/sys/kernel/hostname";
  const runs = await Promise.all(["pool-a", "pool-b"].map((name) => moat(["run", "--name", name, "busybox", "sh", "-c", probe], { MOAT_TRACE: "sandbox" })));
  const [a, b] = runs.map((run) => {
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /\(from the warm pool, template /);
    const [random, hostname] = run.stdout.trim().split("\n");
    return { random, hostname };
  });
  assert.notEqual(a!.random, b!.random, "each pool VM's RNG was reseeded when a sandbox took it"); // two runs, mapped above
  assert.deepEqual([a!.hostname, b!.hostname], ["pool-a", "pool-b"]);

  // moatd's create (runc's create, containerd's Task.Create) takes from its own pool in-process.
  await fullPool();
  const bundle = busyboxBundle(`${workspace.dir}/created`, ["true"]);
  process.env.MOAT_CONFIG = config; // createAsConmon runs `moat create` with this environment
  try {
    const created = createAsConmon(helperBinary(workspace.dir, "subreaper"), workspace.stateRoot, bundle, "created-from-pool", "");
    assert.equal(await created.created, 0, created.stderr());
    assert.match(workspace.daemonLog(), /created-from-pool: agent ready after \d+ ms \(from the warm pool, template /);
    const deleted = await moat(["delete", "--force", "created-from-pool"]);
    assert.equal(deleted.code, 0, deleted.stderr);
    await created.standIn;
  } finally {
    delete process.env.MOAT_CONFIG;
  }
});

test("a moatd killed and restarted removes the pool VMs it left and fills its own", async () => {
  await fullPool();
  const left = poolQemus().map((line) => Number(line.split(" ")[0]));
  assert.equal(left.length, POOL_SIZE);
  for (const line of workspace.daemonProcesses()) process.kill(Number(line.split(" ")[0]), "SIGKILL");
  while (workspace.daemonProcesses().length > 0) await sleep(50);
  assert.equal(poolQemus().length, POOL_SIZE, "pool VMs outlive a killed moatd (own session)");
  await fullPool(); // a new moatd
  assert.match(workspace.daemonLog(), /warm pool: pool-[0-9a-f]+ was left by a daemon that is gone; removed and its QEMU \d+ killed/);
  const now = poolQemus().map((line) => Number(line.split(" ")[0]));
  assert.equal(now.length, POOL_SIZE, `no stray pool VM:\n${poolQemus().join("\n")}`);
  assert.deepEqual(now.filter((pid) => left.includes(pid)), [], "the old pool VMs were killed");
  // The only mounts are the running pool VMs' bounded log directories (a tmpfs each) and
  // 9p exports (each bound onto itself by its QEMU's jail): none is left by the killed ones.
  const running = readdirSync(`${workspace.stateRoot}/.pool`).flatMap((id) => [`${workspace.stateRoot}/.pool/${id}/logs`, `${workspace.stateRoot}/.pool/${id}/shares`]);
  assert.deepEqual(workspace.mounts().sort(), running.sort());
});
