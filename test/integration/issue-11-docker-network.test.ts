// Issue 11, item 3: Docker 20.10 with moat as a runtime, on Docker's own networks. A private
// dockerd (harness/docker.ts, `{ network: true }`) runs in a network namespace of its own with
// iptables on, its default bridge on 198.18.x.1/24 and user-defined networks from
// 198.19.0.0/16: everything it makes (bridges, veths, iptables rules, docker-proxy) stays in
// that namespace. Docker's libnetwork-setkey prestart hook moves each container's veth into the
// namespace of the stand-in (the pid moat gives it), which moat then carries into the VM.
// Only addresses in that namespace and its bridges are contacted.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, afterEach, before, test } from "node:test";
import { BUSYBOX_TAG, Docker, MOAT_RUNTIME_NAME } from "./harness/docker.js";
import { TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
const docker = new Docker(workspace, { network: true });
const NETWORK = "moatnet";
const MTU = 1400;

before(async () => {
  await docker.start();
  await docker.loadBusybox();
});
afterEach(async () => {
  await docker.assertNothingLeft();
  assert.deepEqual(standIns(), [], "stand-ins left");
  // dockerd's namespace holds only what Docker keeps: lo and its bridges (no veth, no tap).
  const links = JSON.parse(execFileSync("ip", ["-n", docker.netns ?? "", "-j", "link", "show"], { encoding: "utf8" })) as Array<{ ifname: string; link_type?: string; linkinfo?: { info_kind?: string } }>;
  const kinds = JSON.parse(execFileSync("ip", ["-n", docker.netns ?? "", "-j", "-d", "link", "show"], { encoding: "utf8" })) as Array<{ ifname: string; linkinfo?: { info_kind?: string } }>;
  assert.deepEqual(kinds.filter((link) => link.ifname !== "lo" && link.linkinfo?.info_kind !== "bridge").map((link) => link.ifname), [], `links left in ${docker.netns}: ${links.map((link) => link.ifname).join(" ")}`);
});
after(async () => {
  try {
    await docker.finish([NETWORK]);
  } finally {
    workspace.remove();
  }
});

const run = ["run", "--runtime", MOAT_RUNTIME_NAME];

/** moat's stand-ins for Docker's containers (their moatd socket is under the workspace). */
function standIns(): string[] {
  try {
    return execFileSync("pgrep", ["-a", "-f", "moat-standin"], { encoding: "utf8" })
      .split("\n")
      .filter((line) => line && readNetnsOf(line) !== undefined && isOurs(line));
  } catch {
    return [];
  }
}

function readNetnsOf(line: string): string | undefined {
  try {
    return execFileSync("readlink", [`/proc/${line.split(" ")[0]}/ns/net`], { encoding: "utf8" }).trim();
  } catch {
    return undefined;
  }
}

/** A stand-in started by this Docker's containerd: its parent is one of this Docker's shims. */
function isOurs(line: string): boolean {
  try {
    const stat = execFileSync("cat", [`/proc/${line.split(" ")[0]}/stat`], { encoding: "utf8" });
    const parent = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1];
    return execFileSync("cat", [`/proc/${parent}/cmdline`], { encoding: "utf8" }).includes(docker.execRoot);
  } catch {
    return false;
  }
}

/** Says what Docker and moat logged, for an assertion that failed. */
function context(result: { stderr: string; stdout?: string }): string {
  return `${result.stdout ?? ""}\n${result.stderr}\n--- moat runtime logs:\n${docker.runtimeLogs()}\n--- dockerd log (tail):\n${docker.log().slice(-3000)}`;
}

const escaped = (text: string) => text.replace(/\./g, "\\.");

test("docker run on the default bridge: the container has Docker's address, MTU, default route, /etc/hosts and /etc/hostname", async () => {
  const result = await docker.docker([...run, "--rm", BUSYBOX_TAG, "sh", "-c", "ip addr show eth0; ip route; echo hostname=$(hostname); echo file=$(cat /etc/hostname); cat /etc/hosts"]);
  assert.equal(result.code, 0, context(result));
  const subnet = docker.bridgeSubnet ?? "";
  assert.match(result.stdout, /eth0: <[^>]*\bUP\b[^>]*> mtu 1500 /, context(result));
  const address = new RegExp(`inet (${escaped(subnet)}\\.\\d+)/24 `).exec(result.stdout)?.[1];
  assert.ok(address, context(result));
  assert.match(result.stdout, new RegExp(`^default via ${escaped(subnet)}\\.1 dev eth0`, "m"), context(result));
  const hostname = /^hostname=([0-9a-f]{12})$/m.exec(result.stdout)?.[1];
  assert.ok(hostname, context(result));
  assert.match(result.stdout, new RegExp(`^file=${hostname}$`, "m"), "/etc/hostname is Docker's");
  assert.match(result.stdout, new RegExp(`^${escaped(address)}\\s+${hostname}$`, "m"), "/etc/hosts names the container's own address");
});

test("a user-defined network with MTU 1400: eth0's MTU; two containers reach each other by IP and by name; -p answers from the host; names resolve after a moatd restart", async () => {
  const created = await docker.docker(["network", "create", "-o", `com.docker.network.driver.mtu=${MTU}`, NETWORK]);
  assert.equal(created.code, 0, context(created));
  const server = await docker.docker([
    ...run, "--detach", "--name", "moat-web", "--network", NETWORK, "-p", "127.0.0.1:18080:8080", BUSYBOX_TAG,
    "sh", "-c", "mkdir -p /www && echo hello-from-moat-web > /www/index.html && exec httpd -f -p 8080 -h /www",
  ]);
  assert.equal(server.code, 0, context(server));
  try {
    const inspected = await docker.docker(["inspect", "--format", `{{(index .NetworkSettings.Networks "${NETWORK}").IPAddress}}`, "moat-web"]);
    const address = inspected.stdout.trim();
    assert.match(address, /^198\.19\.\d+\.\d+$/, context(inspected));

    const client = await docker.docker([...run, "--rm", "--network", NETWORK, BUSYBOX_TAG, "sh", "-c", `cat /sys/class/net/eth0/mtu; ip route; cat /etc/resolv.conf; timeout 60 wget -q -O - http://${address}:8080/; timeout 60 wget -q -O - http://moat-web:8080/`]);
    assert.equal(client.code, 0, context(client));
    const lines = client.stdout.split("\n");
    assert.equal(lines[0], String(MTU), context(client));
    assert.match(client.stdout, /^default via 198\.19\.\d+\.1 dev eth0/m, context(client));
    // Docker's embedded DNS is the resolver on a user-defined network: by IP, then by name.
    assert.match(client.stdout, /^nameserver 127\.0\.0\.11$/m, context(client));
    assert.equal(client.stdout.split("\n").filter((line) => line === "hello-from-moat-web").length, 2, context(client));

    // Published on 127.0.0.1 of Docker's host, which is dockerd's namespace here.
    const published = await docker.inNetns(["timeout", "60", "busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:18080/"]);
    assert.equal(published.stdout, "hello-from-moat-web\n", context(published));

    // moatd restarted under the running container: the next moatd adopts it and relays its
    // queries again (the name is the container's own, resolved by Docker's embedded DNS).
    await docker.stopMoatd();
    const adopted = await docker.docker(["exec", "moat-web", "sh", "-c", "timeout 60 wget -q -O - http://moat-web:8080/"]);
    assert.equal(adopted.stdout, "hello-from-moat-web\n", context(adopted));
  } finally {
    const removed = await docker.docker(["rm", "--force", "moat-web"]);
    assert.equal(removed.code, 0, context(removed));
    await docker.docker(["network", "rm", NETWORK]);
  }
});
