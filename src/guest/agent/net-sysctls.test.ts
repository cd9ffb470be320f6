import assert from "node:assert/strict";
import { test } from "node:test";
import { splitNetSysctls } from "./net-sysctls.js";

test("without a network namespace entry, net.* sysctls are the agent's and the rest stay for crun", () => {
  const spec = { linux: { namespaces: [{ type: "pid" }], sysctl: { "net.ipv4.ip_unprivileged_port_start": "0", "kernel.msgmax": "8192" } } };
  const { spec: forCrun, sysctls } = splitNetSysctls(spec, "c");
  assert.deepEqual(sysctls, [["net.ipv4.ip_unprivileged_port_start", "0"]]);
  assert.deepEqual((forCrun.linux as { sysctl: object }).sysctl, { "kernel.msgmax": "8192" });
});

test("with its own network namespace, or without net.* sysctls, the spec is left alone", () => {
  const own = { linux: { namespaces: [{ type: "network" }], sysctl: { "net.ipv4.ip_forward": "1" } } };
  assert.deepEqual(splitNetSysctls(own, "c"), { spec: own, sysctls: [] });
  const none = { linux: { namespaces: [], sysctl: { "kernel.msgmax": "1" } } };
  assert.deepEqual(splitNetSysctls(none, "c"), { spec: none, sysctls: [] });
});

test("a name that could leave /proc/sys/net, or a value that is not a string, is refused by name", () => {
  for (const [key, value] of [["net.ipv4..x", "1"], ["net./../kernel/x", "1"], ["net.ipv4.x/y", "1"], ["net.ipv4.ip_forward", 1]] as const) {
    assert.throws(() => splitNetSysctls({ linux: { sysctl: { [key]: value } } }, "container c"), /^MoatError: container c: linux\.sysctl: /);
  }
});
