// `moat run IMAGE CMD…` and `moat run --bundle DIR`: a container in its own VM, in the
// foreground (issue 3, first steps).
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { release } from "node:os";
import { after, afterEach, test } from "node:test";
import { busyboxBundle } from "./harness/bundle.js";
import { moatBinary, runCommand, runMoat } from "./harness/moat-cli.js";
import { TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
afterEach(() => workspace.assertNothingLeft());
after(() => workspace.remove());

const moat = (args: string[]) => runMoat(["--root", workspace.stateRoot, ...args]);

/** Runs moat with `input` on its stdin; resolves with its exit code and stdout bytes. */
function moatWithInput(args: string[], input: Buffer) {
  return runCommand(moatBinary, ["--root", workspace.stateRoot, ...args], { input });
}

test("the container runs on the guest kernel, not the host's", async () => {
  const result = await moat(["run", "--rm", "busybox", "uname", "-r"]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /-moat\n$/);
  assert.notEqual(result.stdout.trim(), release());
});

test("stdout and stderr arrive apart, and the exit code is the container's", async () => {
  const result = await moat(["run", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7"]);
  assert.equal(result.code, 7);
  assert.equal(result.stdout, "out\n");
  assert.equal(result.stderr, "err\n");
});

test("the container sees its own hostname, PID namespace and a writable root that the image never sees", async () => {
  const result = await moat(["run", "--name", "named-1", "busybox", "sh", "-c", "hostname; echo $$; echo x > /written && cat /written"]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "named-1\n1\nx\n");
  const again = await moat(["run", "busybox", "ls", "/written"]);
  assert.notEqual(again.code, 0, "a write in one container must not reach the image");
});

test("-i relays stdin intact, with end of file", async () => {
  const input = randomBytes(3 * 1024 * 1024 + 17);
  const result = await moatWithInput(["run", "-i", "busybox", "md5sum"], input);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.split(" ")[0], createHash("md5").update(input).digest("hex"));
});

test("a large output stream arrives intact", async () => {
  const result = await moatWithInput(["run", "busybox", "sh", "-c", "seq 1 2000000"], Buffer.alloc(0));
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stdout.split("\n");
  assert.equal(lines.length, 2_000_001);
  assert.equal(lines[1_999_999], "2000000");
});

test("SIGTERM while the VM starts stops moat run with 143 and leaves nothing behind", async () => {
  const child = spawn(moatBinary, ["--root", workspace.stateRoot, "run", "--rm", "busybox", "echo", "never"], { env: { ...process.env, MOAT_TRACE: "qemu" }, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  let signalled = false;
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
    // QEMU's command line is traced as it is spawned: the start is under way.
    if (!signalled && stderr.includes("qemu-system")) {
      signalled = true;
      child.kill("SIGTERM");
    }
  });
  const [code] = (await once(child, "close")) as [number | null];
  assert.ok(signalled, stderr);
  assert.equal(code, 143, stderr);
  assert.match(stderr, /moat: moat run: stopped by SIGTERM before the container started; nothing was left behind\n/);
  // afterEach: no QEMU, no state directory, no mount left.
});

test("a command that does not exist is one clear error", async () => {
  const result = await moat(["run", "busybox", "no-such-command"]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /crun run --detach failed: executable file `no-such-command` not found in \$PATH/);
});

test("an unknown image and a bad --memory are refused before a VM starts", async () => {
  const unknown = await moat(["run", "nginx"]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /image nginx: not found; the built-in images are: busybox/);
  const memory = await moat(["run", "--memory", "lots", "busybox", "true"]);
  assert.equal(memory.code, 1);
  assert.match(memory.stderr, /--memory: must be a size from 128m to 1024g/);
});

test("--cpus and --memory size the VM", async () => {
  const result = await moat(["run", "--cpus", "2", "--memory", "256m", "busybox", "sh", "-c", "nproc; grep MemTotal /proc/meminfo"]);
  assert.equal(result.code, 0, result.stderr);
  const [cpus, memory] = result.stdout.trim().split("\n");
  assert.equal(cpus, "2");
  const kib = Number(/(\d+) kB/.exec(memory ?? "")?.[1]);
  assert.ok(kib > 200 * 1024 && kib <= 256 * 1024, memory);
});

test("--bundle runs a bundle's process; its root and a directory bind mount are the host's", async () => {
  const data = `${workspace.dir}/data`;
  const bundle = busyboxBundle(`${workspace.dir}/bundle-rw`, ["sh", "-c", "cat /data/in; echo out > /data/out; echo root > /on-root; hostname"], (spec) => {
    spec.hostname = "from-bundle";
    spec.mounts = [...(spec.mounts ?? []), { destination: "/data", type: "bind", source: data, options: ["rbind", "rw"] }];
  });
  mkdirSync(data);
  writeFileSync(`${data}/in`, "from the host\n");
  const result = await moat(["run", "--bundle", bundle]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "from the host\nfrom-bundle\n");
  assert.equal(readFileSync(`${data}/out`, "utf8"), "out\n");
  assert.equal(readFileSync(`${bundle}/rootfs/on-root`, "utf8"), "root\n");
});

test("--bundle with linux.cgroupsPath: the VM's QEMU is in that cgroup on the host, the container in it in the guest; both go at exit", async () => {
  const cgroupsPath = "/moattest-run/cg-run";
  const hierarchies = readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((line) => / - cgroup2? /.test(line)).map((line) => line.split(" ")[4] ?? "");
  const bundle = busyboxBundle(`${workspace.dir}/bundle-cg`, ["sh", "-c", "cat /proc/self/cgroup; read line"], (spec) => {
    // Without a cgroup namespace, the container sees its cgroup's whole path in the guest.
    const linux = spec.linux as { namespaces: Array<{ type: string }> }; // the harness's spec has them
    spec.linux = { ...linux, namespaces: linux.namespaces.filter((namespace) => namespace.type !== "cgroup"), cgroupsPath };
  });
  const child = spawn(moatBinary, ["--root", workspace.stateRoot, "run", "-i", "--bundle", bundle, "cg-run"], { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const printed = new Promise<void>((resolve) =>
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      if (stdout.includes("\n")) resolve();
    }),
  );
  const closed = once(child, "close");
  await Promise.race([printed, closed]);
  // The container waits for a line on its stdin: the VM runs while we look.
  const qemu = Number(readFileSync(`${workspace.stateRoot}/cg-run/qemu.pid`, "utf8"));
  const membership = readFileSync(`/proc/${qemu}/cgroup`, "utf8");
  for (const line of membership.trim().split("\n")) assert.ok(line.endsWith(`:${cgroupsPath}`), `QEMU ${qemu} in ${cgroupsPath} in every hierarchy:\n${membership}`);
  child.stdin.end("go\n");
  const [code] = (await closed) as [number | null];
  assert.equal(code, 0, stderr);
  assert.equal(stdout, `0::${cgroupsPath}\n`);
  for (const hierarchy of hierarchies) assert.equal(existsSync(`${hierarchy}/moattest-run`), false, `${hierarchy}/moattest-run removed`);
});

test("a read-only root and a read-only bind mount refuse writes", async () => {
  const data = `${workspace.dir}/data-ro`;
  mkdirSync(data);
  const bundle = busyboxBundle(`${workspace.dir}/bundle-ro`, ["sh", "-c", "touch /x 2>/dev/null && echo root-writable; touch /data/x 2>/dev/null && echo data-writable; echo done"], (spec) => {
    spec.root.readonly = true;
    spec.mounts = [...(spec.mounts ?? []), { destination: "/data", type: "bind", source: data, options: ["rbind", "ro"] }];
  });
  const result = await moat(["run", "--bundle", bundle]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "done\n");
});

test("a read-only root is read-only on the host: a container that remounts it writable writes only into guest memory (issue 10, item 10)", async () => {
  const rootfs = `${workspace.dir}/bundle-ro-host/rootfs`;
  const bundle = busyboxBundle(`${workspace.dir}/bundle-ro-host`, ["sh", "-c", "mount -o remount,rw / && echo inside > /escaped && cat /escaped"], (spec) => {
    spec.root.readonly = true;
    const capabilities = spec.process.capabilities as Record<string, string[]>; // defaultSpec gives runc's default sets, each a list
    for (const set of Object.values(capabilities)) set.push("CAP_SYS_ADMIN");
  });
  const result = await moat(["run", "--bundle", bundle]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "inside\n", "the container could make its root writable and write to it");
  assert.equal(existsSync(`${rootfs}/escaped`), false, "the write did not reach the host");
});

test("a malformed config.json is one line naming the file and field, and starts nothing", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/bundle-bad`, ["sh"], (spec) => (spec.process.cwd = "relative"));
  const result = await moat(["run", "--bundle", bundle]);
  assert.equal(result.code, 1);
  assert.equal(result.stderr, `moat: ${bundle}/config.json: process.cwd: must be an absolute path, got "relative"\n`);
  const missing = await moat(["run", "--bundle", `${workspace.dir}/no-such-bundle`]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no-such-bundle\/config.json: cannot read: ENOENT/);
});

test("a bind mount of a single file shows the file's content (a copy taken at create)", async () => {
  const hosts = `${workspace.dir}/hosts`;
  writeFileSync(hosts, "10.1.2.3 from-the-host\n");
  const bundle = busyboxBundle(`${workspace.dir}/bundle-file`, ["cat", "/etc/hosts"], (spec) => {
    spec.mounts = [...(spec.mounts ?? []), { destination: "/etc/hosts", type: "bind", source: hosts, options: ["rbind", "ro"] }];
  });
  const result = await moat(["run", "--bundle", bundle]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "10.1.2.3 from-the-host\n");
});
