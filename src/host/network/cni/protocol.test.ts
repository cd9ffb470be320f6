import assert from "node:assert/strict";
import { test } from "node:test";
import { MoatError } from "../../../shared/errors.js";
import { checkConflist } from "./conflist.js";
import { checkAttachment, parsePortMapping, parseResult, pluginConfig, pluginEnv, pluginFailure, type CniAttachment } from "./protocol.js";

const list = checkConflist(
  {
    cniVersion: "1.0.0",
    name: "moat",
    plugins: [
      { type: "bridge", bridge: "moat0", ipam: { type: "host-local" }, prevResult: { stale: true } },
      { type: "portmap", capabilities: { portMappings: true, bandwidth: false } },
      { type: "firewall", capabilities: { ips: true } },
    ],
  },
  "f",
);
const attachment: CniAttachment = {
  containerId: "c0ffee",
  netns: "/run/netns/moat-c0ffee",
  ifName: "eth0",
  args: [["IgnoreUnknown", "1"], ["K8S_POD_NAME", "web"]],
  cniPath: ["/usr/lib/cni", "/opt/cni/bin"],
  capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp", hostIP: "127.0.0.1" }] },
};
// What bridge 1.1.1 printed for ADD on a 198.18.x network (trimmed).
const bridgeResult = {
  cniVersion: "1.0.0",
  interfaces: [{ name: "moat0", mac: "6a:1f:4e:0b:3d:01" }, { name: "veth1", mac: "6a:1f:4e:0b:3d:02" }, { name: "eth0", mac: "6a:1f:4e:0b:3d:03", sandbox: "/run/netns/moat-c0ffee" }],
  ips: [{ interface: 2, address: "198.18.10.2/24", gateway: "198.18.10.1" }],
  routes: [{ dst: "0.0.0.0/0" }],
  dns: {},
};

test("the environment carries the spec's six variables", () => {
  assert.deepEqual(pluginEnv("ADD", attachment), {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "c0ffee",
    CNI_NETNS: "/run/netns/moat-c0ffee",
    CNI_IFNAME: "eth0",
    CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=web",
    CNI_PATH: "/usr/lib/cni:/opt/cni/bin",
  });
  assert.equal(pluginEnv("DEL", { ...attachment, args: [] }).CNI_ARGS, "");
});

test("each plugin gets the list's name and version, the previous result, and only the capability args it declares", () => {
  const first = pluginConfig(list, 0, "ADD", undefined, attachment.capabilityArgs);
  assert.deepEqual(first, { type: "bridge", bridge: "moat0", ipam: { type: "host-local" }, cniVersion: "1.0.0", name: "moat" }, "no prevResult for the first (a stale one in the file is dropped), no runtimeConfig without capabilities");
  const second = pluginConfig(list, 1, "ADD", bridgeResult, attachment.capabilityArgs);
  assert.deepEqual(second.prevResult, bridgeResult);
  assert.deepEqual(second.runtimeConfig, { portMappings: attachment.capabilityArgs.portMappings });
  const third = pluginConfig(list, 2, "ADD", bridgeResult, attachment.capabilityArgs);
  assert.equal(third.runtimeConfig, undefined, "firewall declares ips, which moat does not give: no runtimeConfig");
  assert.deepEqual(pluginConfig(list, 1, "DEL", bridgeResult, attachment.capabilityArgs).prevResult, bridgeResult, "1.0.0's DEL gets prevResult");
  const old = checkConflist({ cniVersion: "0.3.1", name: "old", plugins: [{ type: "bridge" }] }, "f");
  assert.equal(pluginConfig(old, 0, "DEL", bridgeResult, {}).prevResult, undefined, "0.3.x's DEL has no prevResult");
  assert.throws(() => pluginConfig(list, 3, "ADD", undefined, {}), RangeError);
});

test("the attachment's fields are checked as the spec restricts them", () => {
  checkAttachment(attachment, "w");
  const refused = (change: Partial<CniAttachment>, field: string) =>
    assert.throws(() => checkAttachment({ ...attachment, ...change }, "w"), (error: unknown) => error instanceof MoatError && error.code === "MOAT_CNI_CONFIG" && error.message.startsWith(`w: ${field}: `));
  refused({ containerId: "-x" }, "CNI_CONTAINERID");
  refused({ containerId: "a/b" }, "CNI_CONTAINERID");
  refused({ netns: "run/netns/x" }, "CNI_NETNS");
  refused({ ifName: "eth0-with-a-long-name" }, "CNI_IFNAME");
  refused({ ifName: "a/b" }, "CNI_IFNAME");
  refused({ args: [["A", "b;c=d"]] }, "CNI_ARGS");
  refused({ cniPath: [] }, "CNI_PATH");
  refused({ cniPath: ["relative"] }, "CNI_PATH");
});

test("a result is checked and kept whole", () => {
  assert.deepEqual(parseResult(JSON.stringify(bridgeResult), "w"), bridgeResult);
  assert.deepEqual(parseResult('{"cniVersion":"0.4.0"}', "w"), { cniVersion: "0.4.0" });
  const refused = (stdout: string, what: RegExp) => assert.throws(() => parseResult(stdout, "w"), (error: unknown) => error instanceof MoatError && error.code === "MOAT_CNI_RESULT" && what.test(error.message));
  refused("", /^w: printed no JSON result/);
  refused("[]", /not a JSON object/);
  refused('{"ips":[{"address":"198.18.10.2"}]}', /result's ips/);
  refused('{"ips":[{"address":"198.18.10.2/24","interface":"eth0"}]}', /result's ips/);
  refused('{"interfaces":[{}]}', /result's interfaces/);
  refused('{"routes":{}}', /result's routes/);
});

test("a plugin's failure reads as its error JSON, else its stderr, else its exit", () => {
  assert.equal(pluginFailure('{"cniVersion":"1.0.0","code":7,"msg":"failed to allocate for range 0","details":"no IP addresses available in range set: 198.18.10.1-198.18.10.3"}', "", "exit status 1"), "failed to allocate for range 0: no IP addresses available in range set: 198.18.10.1-198.18.10.3 (CNI error 7)");
  assert.equal(pluginFailure('{"code":4,"msg":"bad"}', "", "exit status 1"), "bad (CNI error 4)");
  assert.equal(pluginFailure("", "panic: oops\n", "exit status 2"), "panic: oops (exit status 2)");
  assert.equal(pluginFailure("", "", "killed by SIGKILL"), "killed by SIGKILL");
});

test("-p values become port mappings", () => {
  assert.deepEqual(parsePortMapping("8080:80"), { hostPort: 8080, containerPort: 80, protocol: "tcp" });
  assert.deepEqual(parsePortMapping("127.0.0.1:8080:80/udp"), { hostPort: 8080, containerPort: 80, protocol: "udp", hostIP: "127.0.0.1" });
  assert.deepEqual(parsePortMapping("[::1]:8080:80/tcp"), { hostPort: 8080, containerPort: 80, protocol: "tcp", hostIP: "::1" });
  for (const bad of ["80", "0:80", "8080:70000", "1.2.3:8080:80", "300.1.1.1:1:2", "8080:80/sctp", "host:8080:80", ""]) {
    assert.throws(() => parsePortMapping(bad), (error: unknown) => error instanceof MoatError && error.code === "MOAT_CNI_PORT" && error.message.startsWith(`-p ${JSON.stringify(bad)}: `), bad);
  }
});
