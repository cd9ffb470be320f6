// Issue 11 item 2, the warm pool for networked sandboxes ([factory] vm_cache_networked): moatd
// keeps a VM restored from the template with one NIC, backed by a throwaway tap in QEMU's own
// network namespace; a sandbox with one interface takes it, the tap moves into the sandbox's
// namespace (as tap0_moat) and is plumbed there, and the container has the interface's MAC and
// reaches a server on the test's bridge. Afterwards nothing is left in the namespace, and the
// pool refills. Only addresses on the test's own bridge are contacted.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { busyboxBundle } from "./harness/bundle.js";
import { hostBridgeWithServer } from "./harness/host-bridge.js";
import { runMoat } from "./harness/moat-cli.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const suffix = randomBytes(3).toString("hex");
const config = workspace.configFile("pool", "[factory]\nvm_cache_networked = 1\n");
const moat = (args: string[], env: NodeJS.ProcessEnv = {}) => runMoat(["--config", config, ...args], env);
/** Restoring a pool VM under TCG on a busy machine; a bound so that a broken pool fails the test instead of hanging it. */
const FILL_WAIT_MS = 300_000;
// A /24 of 198.18.0.0/15 of its own (issue-11-hooks takes 198.18.100-249).
const subnet = `198.18.${250 + (parseInt(suffix.slice(0, 2), 16) % 5)}`;
const bridge = `mpb${suffix}`;
const hostEnd = `mph${suffix}`;
const netns = `moat-pn-${suffix}`;
let server: Server | undefined;
let port = 0;

const ip = (...args: string[]) => execFileSync("ip", args, { encoding: "utf8" });

before(async () => {
  ({ server, port } = await hostBridgeWithServer(bridge, `${subnet}.1`));
  ip("netns", "add", netns);
  ip("link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", netns);
  ip("link", "set", hostEnd, "master", bridge, "up");
  ip("-n", netns, "link", "set", "eth0", "up");
  ip("-n", netns, "addr", "add", `${subnet}.2/24`, "dev", "eth0");
});

after(async () => {
  await workspace.stopDaemon(); // its pool goes with it
  workspace.assertNothingLeft(DAEMON_FILES);
  server?.close();
  for (const undo of [() => ip("link", "del", hostEnd), () => ip("netns", "del", netns), () => ip("link", "del", bridge)]) {
    try {
      undo();
    } catch {
      // Never made, or gone with the namespace.
    }
  }
  workspace.remove();
});

/** Starts moatd if none runs (any command does) and waits until its pool has its networked VM. */
async function fullPool(): Promise<string> {
  const list = await moat(["list"], { MOAT_TRACE: "sandbox,factory,network" }); // moatd inherits the tracer: its log says which path each start took
  assert.equal(list.code, 0, list.stderr);
  const deadline = Date.now() + FILL_WAIT_MS;
  for (;;) {
    const status = await moat(["factory", "status"]);
    assert.equal(status.code, 0, status.stderr);
    const ready = /^warm pool: 1 of 1 VMs ready \((pool-[0-9a-f]+)\), 1 of them with one NIC/m.exec(status.stdout);
    if (ready) return ready[1]!; // the group is in the pattern
    assert.ok(Date.now() < deadline, `the pool did not fill within ${FILL_WAIT_MS} ms:\n${status.stdout}\n${workspace.daemonLog()}`);
    await sleep(500);
  }
}

/** What moat may have made in the namespace: links other than lo and eth0, and ingress qdiscs. */
function leftInNetns(): string[] {
  const links = (JSON.parse(ip("-n", netns, "-j", "link", "show")) as Array<{ ifname: string }>).map((link) => link.ifname).filter((link) => link !== "lo" && link !== "eth0");
  const qdiscs = execFileSync("ip", ["netns", "exec", netns, "tc", "qdisc", "show"], { encoding: "utf8" }).split("\n").filter((line) => line.includes("ingress"));
  return [...links, ...qdiscs];
}

test("a sandbox with one interface takes the pool's networked VM: its tap moves into the namespace, the container has traffic, nothing is left, the pool refills", async () => {
  const first = await fullPool();
  const poolQemu = workspace.qemuProcesses().find((line) => line.includes(`/.pool/${first}/`));
  assert.ok(poolQemu?.includes("virtio-net"), `the pool VM has a NIC: ${poolQemu}`);
  const bundle = busyboxBundle(`${workspace.dir}/pooled`, ["sh", "-c", `ip link show eth0; timeout 60 wget -q -O - http://${subnet}.1:${port}/`], (spec) => {
    const linux = spec.linux as { namespaces: Array<{ type: string; path?: string }> }; // the harness's spec has them
    linux.namespaces = linux.namespaces.map((entry) => (entry.type === "network" ? { type: "network", path: `/run/netns/${netns}` } : entry));
  });
  const run = await moat(["run", "--bundle", bundle, `pooled-${suffix}`], { MOAT_TRACE: "sandbox" });
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}\n${workspace.daemonLog().slice(-3000)}`);
  assert.match(run.stderr, /agent ready after \d+ ms \(from the warm pool, template [0-9a-f]{16}: /, run.stderr);
  const mac = (JSON.parse(ip("-n", netns, "-j", "link", "show", "eth0")) as Array<{ address: string }>)[0]?.address ?? "";
  assert.match(run.stdout, new RegExp(`link/ether ${mac} `), "the agent gave the pool VM's NIC the interface's MAC");
  assert.match(run.stdout, new RegExp(`hello from the host, ${subnet.replace(/\./g, "\\.")}\\.2\\n`), run.stdout);
  assert.match(workspace.daemonLog(), new RegExp(`pooled-${suffix}: took pool VM ${first} `));
  assert.match(workspace.daemonLog(), new RegExp(`pooled-${suffix}: moved the pool VM's taps into /run/netns/${netns}: tap0_moat`));
  assert.deepEqual(leftInNetns(), [], "moat's tap and qdiscs are gone from the namespace");
  const next = await fullPool();
  assert.notEqual(next, first, "the pool refilled with a new VM");
});
