// Issue 12 item 5: `moat node install`, what deploy/daemonset.yaml runs on a node, against a
// real containerd (Debian's 1.6) and an operator's config.toml with comments and other
// runtimes. Installed twice (the second run changes nothing and restarts nothing), the file is
// then read by containerd itself: its CRI plugin loads, `containerd config dump` holds the
// `moat` and `kata` runtimes, and tasks run through moat's shim as the installer linked it (from
// the installed release, not this checkout). Uninstall gives the file back byte for byte and
// removes the links and files. Bad files (runtime_root under Kata's table, not TOML) are
// refused with nothing written. deploy/node-entry.sh, the DaemonSet's entry, runs as it would in
// its pod (paths moved by its variables). No cluster runs here: the node label (kubectl label) and the
// DaemonSet itself are not exercised; the manifests are decoded by kubectl without a cluster and
// checked field by field.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { after, test } from "node:test";
import { parse } from "smol-toml";
import { Containerd } from "./harness/containerd.js";
import { repoRoot, runCommand, runMoat } from "./harness/moat-cli.js";
import { BUSYBOX_IMAGE } from "./harness/oci-image.js";
import { TestWorkspace } from "./harness/state-root.js";
import { NODE_LABEL, NODE_LABEL_VALUE } from "../../src/host/cli/node-install.js";

const workspace = new TestWorkspace();
const containerd = new Containerd(workspace, { kataSnippetWithCri: true });
after(async () => {
  await containerd.stop();
  await workspace.stopDaemon();
  workspace.remove();
});

const installDir = join(workspace.dir, "opt-moat");
const restarts = join(workspace.dir, "restarts");
/** The restart command: this machine has no systemd, and the test starts containerd itself; it counts the installer's restarts. */
const restartCommand = `echo restart >> '${restarts}'`;
const KATA_TABLE = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]';

function nodeInstall(config: string, into = installDir) {
  return runMoat(["node", "install", "--install-dir", into, "--prefix", containerd.installBin, "--containerd-config", config, "--restart-command", restartCommand]);
}

function restartCount(): number {
  return existsSync(restarts) ? readFileSync(restarts, "utf8").split("\n").filter(Boolean).length : 0;
}

/**
 * An operator's config.toml: what the harness needs for a private CRI (its root, socket, stream
 * server on loopback, CNI dir; runc as the default runtime), less Kata's table, plus comments
 * everywhere and another shim v2 runtime with options; no newline at its end.
 */
function operatorConfig(): string {
  const harness = readFileSync(containerd.configPath, "utf8");
  const base = harness.slice(0, harness.indexOf(KATA_TABLE));
  return [
    "# containerd on this node: kept by hand, do not lose these comments",
    base.replace("[grpc]", "# the socket kubelet uses\n[grpc]"),
    "    # gVisor for batch jobs (not installed on this machine; containerd loads its table all the same)",
    '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc] # inline comment',
    '      runtime_type = "io.containerd.runsc.v1"',
    '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc.options]',
    '        TypeUrl = "io.containerd.runsc.v1.options"',
    "# end of file, without a newline",
  ].join("\n");
}

test("node install twice on an operator's config.toml, containerd loads it and runs tasks through the installed shim, uninstall restores it byte for byte", async () => {
  const original = operatorConfig();
  writeFileSync(containerd.configPath, original);

  const first = await nodeInstall(containerd.configPath);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /config\.toml: added runtime moat, kata\n/);
  assert.equal(restartCount(), 1, "the changed configuration restarted containerd once");
  const installed = readFileSync(containerd.configPath, "utf8");
  assert.ok(installed.startsWith(original), "everything the operator wrote is still there, in front of moat's block");

  const second = await nodeInstall(containerd.configPath);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /config\.toml: unchanged \(already there: moat, kata\)\n/);
  assert.equal(readFileSync(containerd.configPath, "utf8"), installed, "the second run changed nothing");
  assert.equal(restartCount(), 1, "and restarted nothing");
  assert.deepEqual(readdirSync(join(installDir, "releases")).length, 1, "one release for the same files");

  // containerd itself reads the result.
  const dump = await runCommand("containerd", ["--config", containerd.configPath, "config", "dump"]);
  assert.equal(dump.code, 0, dump.stderr);
  const runtimes = (parse(dump.stdout) as any).plugins["io.containerd.grpc.v1.cri"].containerd.runtimes; // test: containerd's own dump, fields checked below
  assert.equal(runtimes.moat.runtime_type, "io.containerd.moat.v2");
  assert.equal(runtimes.kata.runtime_type, "io.containerd.kata.v2");
  assert.equal(runtimes.kata.privileged_without_host_devices, true);
  assert.deepEqual(runtimes.kata.pod_annotations, ["io.katacontainers.*", "io.moat.*"]);
  assert.equal(runtimes.runsc.runtime_type, "io.containerd.runsc.v1", "the operator's runtime as it was");
  assert.equal(runtimes.runc.runtime_type, "io.containerd.runc.v2");
  await containerd.start();
  const plugins = await containerd.ctr(["plugins", "ls"]);
  assert.match(plugins.stdout, /^io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok\s*$/m, `CRI loaded with the installed configuration:\n${plugins.stdout}\n${containerd.log().slice(-3000)}`);
  await containerd.importBusybox();
  for (const runtime of ["io.containerd.moat.v2", "io.containerd.kata.v2"]) {
    const result = await containerd.ctr(["run", "--rm", "--runtime", runtime, "--fifo-dir", containerd.fifoDir, BUSYBOX_IMAGE, `deploy-${runtime.split(".")[2]}`, "uname", "-r"]);
    assert.equal(result.code, 0, `${runtime}: ${result.stderr}\n${workspace.daemonLog()}`);
    assert.match(result.stdout, /-moat\n$/, `${runtime}: the task ran under moat's guest kernel`);
  }
  const daemons = workspace.daemonProcesses();
  assert.equal(daemons.length, 1, daemons.join("\n"));
  assert.ok(daemons[0]!.includes(join(installDir, "releases")), `moatd runs from the installed release, started by the installed shim: ${daemons[0]}`); // length checked above
  await containerd.assertNothingLeft();
  await containerd.stop();
  await workspace.stopDaemon();

  const removed = await runMoat(["node", "uninstall", "--install-dir", installDir, "--restart-command", restartCommand]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.ok(readFileSync(containerd.configPath).equals(Buffer.from(original)), "the configuration is the operator's again, byte for byte");
  assert.equal(restartCount(), 2, "the changed configuration restarted containerd once more");
  assert.deepEqual(existsSync(containerd.installBin) ? readdirSync(containerd.installBin) : [], [], "the shim's links are gone");
  assert.equal(existsSync(installDir), false, "moat's files are gone");
});

test("runtime_root under Kata's table: refused with the reason, nothing written, linked or restarted", async () => {
  const config = join(workspace.dir, "kata-runtime-root.toml");
  const text = `version = 2\n${KATA_TABLE}\n  runtime_type = "io.containerd.kata.v2"\n  runtime_root = "/opt/kata/rootfs"\n`;
  writeFileSync(config, text);
  const before = restartCount();
  const refusedDir = join(workspace.dir, "opt-refused");
  const result = await nodeInstall(config, refusedDir);
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /kata-runtime-root\.toml: plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.kata\.runtime_root: containerd 1\.6 refuses runtime_root for io\.containerd\.kata\.v2/);
  assert.match(result.stderr, /Hint: remove the runtime_root line/);
  assert.equal(readFileSync(config, "utf8"), text);
  assert.equal(restartCount(), before);
  assert.equal(existsSync(refusedDir), false);
  assert.deepEqual(existsSync(containerd.installBin) ? readdirSync(containerd.installBin) : [], []);
});

test("a config.toml that is not TOML: the error names the file and line, nothing is written", async () => {
  const config = join(workspace.dir, "broken.toml");
  const text = 'version = 2\n[plugins."io.containerd.grpc.v1.cri"\n  x = 1\n';
  writeFileSync(config, text);
  const brokenDir = join(workspace.dir, "opt-broken");
  const result = await nodeInstall(config, brokenDir);
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /broken\.toml:2:\d+: not TOML: /);
  assert.equal(readFileSync(config, "utf8"), text);
  assert.equal(existsSync(brokenDir), false);
});

test("a restart that fails is tried again by the next run, although the file no longer changes", async () => {
  const dir = join(workspace.dir, "restart");
  mkdirSync(dir);
  const config = join(dir, "config.toml");
  writeFileSync(config, "version = 2\n");
  const install = (restart: string) => runMoat(["node", "install", "--install-dir", join(dir, "opt-moat"), "--prefix", join(dir, "bin"), "--containerd-config", config, "--restart-command", restart]);
  const failed = await install("echo 'Job for containerd.service failed' >&2; exit 1");
  assert.notEqual(failed.code, 0);
  assert.match(failed.stderr, /restarting containerd with `.*` failed: Job for containerd\.service failed\nHint: the configuration is written and recorded; the next run restarts containerd again/);
  const retried = await install("echo RESTARTED");
  assert.equal(retried.code, 0, retried.stderr);
  assert.match(retried.stdout, /config\.toml: unchanged[\s\S]*RESTARTED/);
  const settled = await install("echo RESTARTED");
  assert.doesNotMatch(settled.stdout, /RESTARTED/, "once restarted, an unchanged file restarts nothing");
  const removed = await runMoat(["node", "uninstall", "--install-dir", join(dir, "opt-moat"), "--restart-command", "true"]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal(readFileSync(config, "utf8"), "version = 2\n");
});

test("a node label kubectl cannot set: the error quotes kubectl, the rest stays installed, and a second run tries the label again", async () => {
  const dir = join(workspace.dir, "label");
  mkdirSync(dir);
  const config = join(dir, "config.toml");
  writeFileSync(config, "version = 2\n");
  const args = ["node", "install", "--install-dir", join(dir, "opt-moat"), "--prefix", join(dir, "bin"), "--containerd-config", config, "--restart-command", "true", "--node-name", "node-1"];
  // No cluster: kubectl with an empty configuration dials localhost:8080, where nothing listens.
  const env = { KUBECONFIG: "/dev/null" };
  const first = await runMoat(args, env);
  assert.notEqual(first.code, 0);
  // It asks for the node's labels first (one it had before is the operator's, not moat's).
  assert.match(first.stderr, /moat node: `kubectl get node node-1 -o jsonpath=\{\.metadata\.labels\.moat\\\.io\/runtime\}` failed: .*(refused|localhost:8080)/);
  assert.match(first.stderr, /Hint: the DaemonSet's service account needs get and patch on nodes/);
  assert.match(readFileSync(config, "utf8"), /runtimes\.moat\]/, "the runtimes are installed all the same");
  const second = await runMoat(args, env);
  assert.match(second.stdout, /config\.toml: unchanged/);
  assert.match(second.stderr, /kubectl get node node-1/, "the label is tried again");
  const removed = await runMoat(["node", "uninstall", "--install-dir", join(dir, "opt-moat"), "--restart-command", "true"], env);
  assert.equal(removed.code, 0, `no label was recorded, so uninstall does not try to remove one: ${removed.stderr}`);
  assert.equal(readFileSync(config, "utf8"), "version = 2\n");
});

test("deploy/node-entry.sh, as the DaemonSet runs it: install, sleep until SIGTERM; its preStop uninstalls only when told to", async () => {
  const dir = join(workspace.dir, "entry");
  mkdirSync(dir);
  const config = join(dir, "config.toml");
  const original = '# a node\nversion = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n';
  writeFileSync(config, original);
  const entryRestarts = join(dir, "restarts");
  const env = {
    ...process.env,
    NODE_NAME: "", // no cluster: no label
    MOAT_SOURCE: repoRoot,
    MOAT_INSTALL_DIR: join(dir, "opt-moat"),
    MOAT_PREFIX: join(dir, "bin"),
    MOAT_CONTAINERD_CONFIG: config,
    MOAT_RESTART_COMMAND: `echo restart >> '${entryRestarts}'`,
  };
  const entry = join(repoRoot, "deploy", "node-entry.sh");
  const child = spawn(entry, ["install"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk) => (output += chunk));
  child.stderr.on("data", (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  while (!output.includes("sleeping until stopped")) {
    assert.equal(child.exitCode, null, `the entry ended before installing:\n${output}`);
    await sleep(100);
  }
  assert.match(readFileSync(config, "utf8"), /runtimes\.kata\]\n  runtime_type = "io\.containerd\.kata\.v2"/);
  assert.deepEqual(readdirSync(join(dir, "bin")).sort(), ["containerd-shim-kata-v2", "containerd-shim-moat-v2"]);
  assert.equal(readFileSync(entryRestarts, "utf8"), "restart\n");
  child.kill("SIGTERM");
  assert.equal(await exited, 0, `SIGTERM ends the sleeping entry cleanly:\n${output}`);

  const kept = await runCommand(entry, ["uninstall-on-stop"], { env: { ...env, MOAT_UNINSTALL_ON_STOP: "false" } });
  assert.equal(kept.code, 0, kept.stderr);
  assert.notEqual(readFileSync(config, "utf8"), original, "without MOAT_UNINSTALL_ON_STOP=true the preStop leaves the node installed");
  const removed = await runCommand(entry, ["uninstall-on-stop"], { env: { ...env, MOAT_UNINSTALL_ON_STOP: "true" } });
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal(readFileSync(config, "utf8"), original);
  assert.equal(existsSync(join(dir, "opt-moat")), false);
  assert.equal(existsSync(join(dir, "bin")), false, "the prefix the installer made is gone with its links");
  assert.equal(readFileSync(entryRestarts, "utf8"), "restart\nrestart\n");
});

test("the manifests in deploy/ parse as Kubernetes objects and say what the installer does", async () => {
  const runtimeClasses = await manifest("runtimeclass.yaml");
  assert.deepEqual(runtimeClasses.map((object) => [object.kind, object.metadata.name, object.handler]), [["RuntimeClass", "moat", "moat"], ["RuntimeClass", "kata", "kata"]]);
  for (const runtimeClass of runtimeClasses) {
    assert.equal(runtimeClass.apiVersion, "node.k8s.io/v1");
    assert.deepEqual(runtimeClass.scheduling.nodeSelector, { [NODE_LABEL]: NODE_LABEL_VALUE }, "the label moat node install sets");
    assert.match(runtimeClass.overhead.podFixed.memory, /^\d+Mi$/);
    assert.match(runtimeClass.overhead.podFixed.cpu, /^\d+m$/);
  }
  const objects = await manifest("daemonset.yaml");
  assert.deepEqual(objects.map((object) => object.kind), ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]);
  const daemonSet = objects[4]!; // five objects, checked above
  const pod = daemonSet.spec.template.spec;
  assert.equal(pod.hostPID, true, "nsenter reaches the host's systemd");
  assert.equal(pod.serviceAccountName, objects[1]!.metadata.name); // as above
  assert.deepEqual(objects[2]!.rules, [{ apiGroups: [""], resources: ["nodes"], verbs: ["get", "patch"] }]); // as above
  const [container] = pod.containers;
  assert.equal(container.securityContext.privileged, true);
  assert.deepEqual(container.command, ["/moat/deploy/node-entry.sh", "install"]);
  assert.deepEqual(container.lifecycle.preStop.exec.command, ["/moat/deploy/node-entry.sh", "uninstall-on-stop"]);
  assert.equal(container.env.find((variable: any) => variable.name === "NODE_NAME").valueFrom.fieldRef.fieldPath, "spec.nodeName"); // test: JSON from kubectl
  const hostPaths = new Map(pod.volumes.map((volume: any) => [volume.name, volume.hostPath.path])); // test: JSON from kubectl
  const mounts = Object.fromEntries(container.volumeMounts.map((mount: any) => [hostPaths.get(mount.name), mount.mountPath])); // test: JSON from kubectl
  assert.deepEqual(mounts, { "/opt/moat": "/opt/moat", "/usr/local/bin": "/host/usr/local/bin", "/etc/containerd": "/etc/containerd", "/run/containerd": "/run/containerd" }, "every mount names a volume; /opt/moat at the host's own path, where the shim's links point");
  const entry = readFileSync(join(repoRoot, "deploy", "node-entry.sh"), "utf8");
  // The entry's default paths are where the DaemonSet mounts the host's directories.
  const defaultOf = (variable: string) => new RegExp(`\\$\\{${variable}:-([^}]*)\\}`).exec(entry)?.[1];
  assert.equal(defaultOf("MOAT_INSTALL_DIR"), mounts["/opt/moat"]);
  assert.equal(defaultOf("MOAT_PREFIX"), mounts["/usr/local/bin"]);
  assert.equal(defaultOf("MOAT_CONTAINERD_CONFIG"), `${mounts["/etc/containerd"]}/config.toml`);
  assert.deepEqual(container.env.map((variable: any) => variable.name).filter((name: string) => /^MOAT_(INSTALL_DIR|PREFIX|CONTAINERD_CONFIG|SOURCE)$/.test(name)), [], "the DaemonSet keeps the entry's paths"); // test: JSON from kubectl
  const [seedsPod] = await manifest("seeds-pod.yaml");
  assert.equal(seedsPod.spec.runtimeClassName, "kata");
});

/** The objects of deploy/<file>, decoded by kubectl's own YAML decoder without a cluster (`label --local`). */
async function manifest(file: string): Promise<any[]> { // test: Kubernetes objects, checked field by field by the caller
  const result = await runCommand("kubectl", ["label", "--local", "-f", join(repoRoot, "deploy", file), "moat.io/checked=true", "-o", "json"], { env: { KUBECONFIG: "/dev/null" } });
  assert.equal(result.code, 0, `kubectl could not decode deploy/${file}: ${result.stderr}`);
  // One JSON object per document, each from a "{" to a "}" at the start of a line.
  return JSON.parse(`[${result.stdout.trim().replace(/^}\n\{/gm, "},{")}]`);
}
