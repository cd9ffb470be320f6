import assert from "node:assert/strict";
import { test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import { guestNetworkSysctls } from "./network-sysctls.js";

// What podman 4.3 puts in every spec, with the network entry the host dropped.
const podmanLinux = { sysctl: { "net.ipv4.ping_group_range": "0 0", "kernel.shm_rmid_forced": "1" }, namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }] };

test("net.* sysctls of a container on the guest's network namespace are the agent's; the rest stay crun's", () => {
  const { spec, sysctls } = guestNetworkSysctls({ ociVersion: "1.0.2", linux: podmanLinux }, "c");
  assert.deepEqual(sysctls, [{ name: "net.ipv4.ping_group_range", path: "/proc/sys/net/ipv4/ping_group_range", value: "0 0" }]);
  assert.deepEqual(spec, { ociVersion: "1.0.2", linux: { ...podmanLinux, sysctl: { "kernel.shm_rmid_forced": "1" } } });
});

test("a container with a network namespace entry of its own keeps its sysctls for crun", () => {
  const input = { linux: { ...podmanLinux, namespaces: [...podmanLinux.namespaces, { type: "network" }] } };
  const { spec, sysctls } = guestNetworkSysctls(input, "c");
  assert.equal(spec, input);
  assert.deepEqual(sysctls, []);
  assert.deepEqual(guestNetworkSysctls({ linux: {} }, "c").sysctls, []);
  assert.deepEqual(guestNetworkSysctls({}, "c").sysctls, []);
});

test("a name that is not a net sysctl's path, or a value that is not a string, is refused naming it", () => {
  for (const [name, value] of [["net.ipv4/../../kernel.x", "1"], ["net..x", "1"], ["net.ipv4.ip_forward", 1]] as const) {
    assert.throws(() => guestNetworkSysctls({ linux: { sysctl: { [name]: value } } }, "container c"), (error: unknown) => error instanceof MoatError && error.code === "MOAT_CONTAINER_SPEC" && error.message.startsWith("container c: linux.sysctl"));
  }
});
