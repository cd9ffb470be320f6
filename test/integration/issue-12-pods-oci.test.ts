// Issue 12, item 1: one VM per pod, driven as CRI-O drives a runc-style runtime: `moat create`
// of the pod's sandbox (pause) bundle, then its containers' bundles, whose specs carry CRI-O's
// annotations and name the pause container's namespaces by host paths (/proc/<pid>/ns/…, the
// pause's stand-in's). The containers share one QEMU, their hostname, IPC and network (localhost)
// namespaces, and one host directory; each goes alone, the VM goes with the last, in any order,
// and a restarted moatd adopts the whole pod.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, afterEach, test } from "node:test";
import type { OciSpec } from "../../src/host/oci/index.js";
import { busyboxBundle } from "./harness/bundle.js";
import { createAsConmon, underSubreaper, type CreatedContainer } from "./harness/oci-runtime.js";
import { helperBinary } from "./harness/c-helper.js";
import { runMoat } from "./harness/moat-cli.js";
import { TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const subreaper = helperBinary(workspace.dir, "subreaper");
const moat = (args: string[]) => runMoat(["--root", workspace.stateRoot, ...args]);
afterEach(() => workspace.assertCensusClean());
after(async () => {
  await workspace.stopDaemon();
  workspace.remove();
});

const CRIO_TYPE = "io.kubernetes.cri-o.ContainerType";
const CRIO_SANDBOX = "io.kubernetes.cri-o.SandboxID";

/** The pod's sandbox container: a program that only waits, its own hostname, new namespaces. */
function pauseBundle(podId: string): string {
  return busyboxBundle(join(workspace.dir, podId), ["sleep", "100000"], (spec) => {
    spec.hostname = `pod-${podId}`;
    spec.annotations = { [CRIO_TYPE]: "sandbox", [CRIO_SANDBOX]: podId };
  });
}

/** A member as CRI-O writes it: the pause's ipc, uts and network namespaces by host path, its own pid and mount namespaces, no hostname. */
function memberBundle(id: string, podId: string, pausePid: number, args: string[], change: (spec: OciSpec) => void = () => undefined): string {
  return busyboxBundle(join(workspace.dir, id), args, (spec) => {
    delete spec.hostname;
    spec.annotations = { [CRIO_TYPE]: "container", [CRIO_SANDBOX]: podId };
    const linux = spec.linux as { namespaces: Array<{ type: string; path?: string }> }; // defaultSpec's
    linux.namespaces = [{ type: "pid" }, { type: "mount" }, { type: "cgroup" }, { type: "ipc", path: `/proc/${pausePid}/ns/ipc` }, { type: "uts", path: `/proc/${pausePid}/ns/uts` }, { type: "network", path: `/proc/${pausePid}/ns/net` }];
    change(spec);
  });
}

async function ok(result: Promise<{ code: number | null; stdout: string; stderr: string }>, what: string): Promise<string> {
  const done = await result;
  assert.equal(done.code, 0, `${what}: ${done.stderr}\nmoatd.log:\n${workspace.daemonLog().slice(-3000)}`);
  return done.stdout;
}

async function createStarted(id: string, bundle: string): Promise<CreatedContainer & { pid: number }> {
  const container = createAsConmon(subreaper, workspace.stateRoot, bundle, id, "");
  assert.equal(await container.created, 0, `create ${id}: ${container.stderr()}\nmoatd.log:\n${workspace.daemonLog().slice(-3000)}`);
  await ok(moat(["start", id]), `start ${id}`);
  return { ...container, pid: Number(readFileSync(join(workspace.dir, `${id}.pid`), "utf8")) };
}

function status(stateJson: string): string {
  return (JSON.parse(stateJson) as { status: string }).status;
}

async function killAndDelete(id: string, container: CreatedContainer): Promise<void> {
  await ok(moat(["kill", id, "KILL"]), `kill ${id}`);
  assert.equal((await container.standIn).exitStatus, 137);
  await ok(moat(["delete", id]), `delete ${id}`);
}

test("two containers in one VM: one QEMU, shared hostname, IPC and localhost, one host directory; each goes alone; the VM goes with the last; a restarted moatd adopts the pod", async (context) => {
  const pod = await createStarted("pod1", pauseBundle("pod1"));
  const shared = join(workspace.dir, "shared");
  mkdirSync(shared);
  const volume = (spec: OciSpec) => spec.mounts!.push({ destination: "/shared", type: "bind", source: shared, options: ["rbind", "rw"] }); // defaultSpec has mounts
  const a = await createStarted("a1", memberBundle("a1", "pod1", pod.pid, ["sh", "-c", "echo served-by-a > /tmp/index.html && exec httpd -f -p 127.0.0.1:8080 -h /tmp"], volume));
  const b = await createStarted("b1", memberBundle("b1", "pod1", pod.pid, ["sleep", "100000"], volume));
  assert.equal(workspace.qemuProcesses().length, 1, "one VM for the pod");
  // The namespaces: one of each shared kind, the pause's; each container its own mount namespace.
  const ns = async (id: string, type: string) => (await ok(moat(["exec", id, "readlink", `/proc/self/ns/${type}`]), `${id} ${type}`)).trim();
  for (const type of ["ipc", "uts", "net"]) {
    const pause = await ns("pod1", type);
    assert.equal(await ns("a1", type), pause, `a1 shares the pause's ${type} namespace`);
    assert.equal(await ns("b1", type), pause, `b1 shares the pause's ${type} namespace`);
  }
  assert.notEqual(await ns("a1", "mnt"), await ns("b1", "mnt"), "each container has its own mount namespace");
  assert.equal((await ok(moat(["exec", "b1", "hostname"]), "hostname")).trim(), "pod-pod1", "the pod's hostname");
  // What the pause container costs in the guest (docs/design.md, "Pods"): reported, not asserted.
  const pauseCost = await ok(moat(["exec", "pod1", "sh", "-c", "grep VmRSS /proc/1/status; echo memory.current $(cat /sys/fs/cgroup/memory.current)"]), "pause cost");
  context.diagnostic(`pause container in the guest: ${pauseCost.replace(/\s+/g, " ").trim()}`);
  // Localhost: b1 reaches a1's server.
  const fetched = await ok(moat(["exec", "b1", "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://127.0.0.1:8080/index.html && exit 0; sleep 1; done; exit 1"]), "wget");
  assert.equal(fetched.trim(), "served-by-a");
  // One host directory: what a1 writes, b1 reads, and the host sees once the guest has written
  // it back, with no sync (a read-write volume is on the cached 9p device; the guest writes
  // back within about a second: docs/storage.md, "Write-back to the host"). Polled; the bound
  // is a deadline for failure.
  await ok(moat(["exec", "a1", "sh", "-c", "echo from-a > /shared/note"]), "write");
  assert.equal((await ok(moat(["exec", "b1", "cat", "/shared/note"]), "read")).trim(), "from-a");
  const noteDeadline = Date.now() + 20_000;
  const hostNote = () => readFileSync(join(shared, "note"), "utf8").trim();
  while (hostNote() !== "from-a" && Date.now() < noteDeadline) await sleep(100);
  assert.equal(hostNote(), "from-a", "the host reads what a1 wrote");
  writeFileSync(join(shared, "host-note"), "from-host\n");
  assert.equal((await ok(moat(["exec", "a1", "cat", "/shared/host-note"]), "host file")).trim(), "from-host");

  // Update: a member's limits change within the VM; one the VM cannot give says so.
  await ok(moat(["update", "--memory", "64m", "b1"]), "update b1");
  assert.equal((await ok(moat(["exec", "b1", "cat", "/sys/fs/cgroup/memory.max"]), "memory.max")).trim(), String(64 * 1024 * 1024));
  const tooLarge = await moat(["update", "--memory", "64g", "b1"]);
  assert.equal(tooLarge.code, 1, tooLarge.stdout);
  assert.match(tooLarge.stderr, /container b1: update: linux\.resources\.memory\.limit: .* would need a bigger one/);

  // A member deleted: the others run on in the same VM.
  await killAndDelete("a1", a);
  assert.equal(status(await ok(moat(["state", "b1"]), "state b1")), "running");
  assert.equal((await ok(moat(["exec", "b1", "echo", "still"]), "exec b1")).trim(), "still");
  assert.equal(workspace.qemuProcesses().length, 1);

  // moatd killed: the next one adopts the pod, its sandbox container and its member.
  const daemons = workspace.daemonProcesses();
  assert.equal(daemons.length, 1);
  process.kill(Number(daemons[0]!.split(" ")[0]), "SIGKILL"); // one, checked just above
  assert.equal(status(await ok(moat(["state", "b1"]), "state b1 after restart")), "running");
  assert.deepEqual((await ok(moat(["list", "-q"]), "list")).trim().split("\n").sort(), ["b1", "pod1"]);
  assert.match(workspace.daemonLog(), /container b1: adopted \(running, in pod pod1\)/);
  assert.equal((await ok(moat(["exec", "b1", "cat", "/shared/note"]), "exec after restart")).trim(), "from-a");

  // The sandbox container goes first (not Kubernetes's order): the member runs on, then the VM goes with it.
  await killAndDelete("pod1", pod);
  assert.equal((await ok(moat(["exec", "b1", "echo", "alone"]), "exec b1 alone")).trim(), "alone");
  assert.equal(workspace.qemuProcesses().length, 1, "the VM stays while a container is in it");
  await killAndDelete("b1", b);
  assert.deepEqual(workspace.qemuProcesses(), [], "the VM went with the last container");
});

test("Kubernetes's order: members stopped and deleted first, then the sandbox; force-deleting a running pod sandbox keeps a created member", async () => {
  const pod = await createStarted("pod2", pauseBundle("pod2"));
  const member = await createStarted("m2", memberBundle("m2", "pod2", pod.pid, ["sleep", "100000"]));
  await killAndDelete("m2", member);
  assert.equal(workspace.qemuProcesses().length, 1);
  await killAndDelete("pod2", pod);
  assert.deepEqual(workspace.qemuProcesses(), []);

  // A created (never started) member outlives its pod's sandbox container deleted with --force.
  const pod3 = await createStarted("pod3", pauseBundle("pod3"));
  const created = createAsConmon(subreaper, workspace.stateRoot, memberBundle("m3", "pod3", pod3.pid, ["sleep", "100000"]), "m3", "");
  assert.equal(await created.created, 0, created.stderr());
  await ok(moat(["delete", "--force", "pod3"]), "delete --force pod3");
  assert.equal((await pod3.standIn).exitStatus, 137);
  assert.equal(status(await ok(moat(["state", "m3"]), "state m3")), "created");
  await ok(moat(["delete", "--force", "m3"]), "delete --force m3");
  assert.equal((await created.standIn).exitStatus, 137);
  assert.deepEqual(workspace.qemuProcesses(), []);
});

test("a member of a pod that does not exist, or whose spec is bad, is refused clearly and leaves nothing", async () => {
  await ok(moat(["list"]), "list"); // moatd started here, not left to a failing create's subreaper
  const missing = underSubreaper(subreaper, ["--root", workspace.stateRoot, "create", "--bundle", memberBundle("orphan", "nopod", process.pid, ["true"]), "--pid-file", join(workspace.dir, "orphan.pid"), "orphan"], join(workspace.dir, "orphan.pid"), "");
  void missing.standIn.catch(() => undefined); // none: the create failed
  assert.notEqual(await missing.created, 0);
  assert.match(missing.stderr(), /^moat: container orphan: .*\/orphan\/config\.json: its pod's sandbox nopod does not exist here/);
  const bad = underSubreaper(
    subreaper,
    ["--root", workspace.stateRoot, "create", "--bundle", busyboxBundle(join(workspace.dir, "badtype"), ["true"], (spec) => (spec.annotations = { [CRIO_TYPE]: "pause", [CRIO_SANDBOX]: "x" })), "--pid-file", join(workspace.dir, "badtype.pid"), "badtype"],
    join(workspace.dir, "badtype.pid"),
    "",
  );
  void bad.standIn.catch(() => undefined); // none: the create failed
  assert.notEqual(await bad.created, 0);
  assert.match(bad.stderr(), /annotations\["io\.kubernetes\.cri-o\.ContainerType"\]: must be "sandbox" or "container", got "pause"/);
  assert.deepEqual(workspace.qemuProcesses(), []);
});
