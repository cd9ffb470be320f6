import assert from "node:assert/strict";
import { test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import type { OciSpec } from "./bundle.js";
import { memberNamespaces, podRole, sandboxResources } from "./pod.js";

const base: OciSpec = { ociVersion: "1.0.2", process: { args: ["sh"], cwd: "/" }, root: { path: "rootfs" } };
const annotated = (annotations: Record<string, string>): OciSpec => ({ ...base, annotations });
const refused = (fn: () => unknown, annotation: string) =>
  assert.throws(fn, (error: unknown) => error instanceof MoatError && error.code === "MOAT_BUNDLE_INVALID" && error.message.includes(`annotations["${annotation}"]`) && error.message.startsWith("/b/config.json: "));

test("no CRI annotations: a container of its own", () => {
  assert.deepEqual(podRole("c1", base, "/b/config.json"), { kind: "single" });
  assert.deepEqual(podRole("c1", annotated({ "io.kubernetes.cri.sandbox-name": "x" }), "/b/config.json"), { kind: "single" });
});

test("containerd's CRI: the sandbox container is its pod, a container joins it", () => {
  assert.deepEqual(podRole("p1", annotated({ "io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": "p1" }), "/b/config.json"), { kind: "sandbox", podId: "p1" });
  assert.deepEqual(podRole("c1", annotated({ "io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "p1" }), "/b/config.json"), { kind: "member", podId: "p1" });
});

test("CRI-O's annotations mean the same", () => {
  assert.deepEqual(podRole("p1", annotated({ "io.kubernetes.cri-o.ContainerType": "sandbox", "io.kubernetes.cri-o.SandboxID": "p1" }), "/b/config.json"), { kind: "sandbox", podId: "p1" });
  assert.deepEqual(podRole("c1", annotated({ "io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": "p1" }), "/b/config.json"), { kind: "member", podId: "p1" });
});

test("bad values are refused naming the annotation", () => {
  refused(() => podRole("c1", annotated({ "io.kubernetes.cri.container-type": "pause", "io.kubernetes.cri.sandbox-id": "p1" }), "/b/config.json"), "io.kubernetes.cri.container-type");
  refused(() => podRole("c1", annotated({ "io.kubernetes.cri.container-type": "container" }), "/b/config.json"), "io.kubernetes.cri.sandbox-id");
  refused(() => podRole("c1", annotated({ "io.kubernetes.cri-o.SandboxID": "p1" }), "/b/config.json"), "io.kubernetes.cri-o.ContainerType");
  refused(() => podRole("c1", annotated({ "io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "../p1" }), "/b/config.json"), "io.kubernetes.cri.sandbox-id");
  refused(() => podRole("p1", annotated({ "io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": "p2" }), "/b/config.json"), "io.kubernetes.cri.sandbox-id");
  refused(() => podRole("p1", annotated({ "io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "p1" }), "/b/config.json"), "io.kubernetes.cri.sandbox-id");
  refused(() => podRole("p1", annotated({ "io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": "p1", "io.kubernetes.cri-o.ContainerType": "sandbox" }), "/b/config.json"), "io.kubernetes.cri.container-type");
});

test("a member's namespaces by host path: shared ones are joined in the guest, mount and cgroup are its own", () => {
  const spec: OciSpec = {
    ...base,
    linux: {
      namespaces: [{ type: "pid" }, { type: "ipc", path: "/proc/4242/ns/ipc" }, { type: "uts", path: "/proc/4242/ns/uts" }, { type: "mount" }, { type: "network", path: "/var/run/netns/cni-1" }, { type: "cgroup", path: "/proc/4242/ns/cgroup" }],
      cgroupsPath: "/kubepods/x",
    },
  };
  const { spec: rewritten, join } = memberNamespaces(spec, "/b/config.json");
  assert.deepEqual(join, ["ipc", "uts", "network"]);
  assert.deepEqual((rewritten.linux as { namespaces: unknown[] }).namespaces, [{ type: "pid" }, { type: "mount" }, { type: "cgroup" }]);
  assert.equal((rewritten.linux as { cgroupsPath: string }).cgroupsPath, "/kubepods/x");
  assert.ok(!JSON.stringify(rewritten).includes("/proc/4242"), "no host path reaches the guest");
  // shareProcessNamespace: the pid namespace by path is joined too.
  assert.deepEqual(memberNamespaces({ ...base, linux: { namespaces: [{ type: "pid", path: "/proc/1/ns/pid" }] } }, "/b/config.json").join, ["pid"]);
  assert.deepEqual(memberNamespaces(base, "/b/config.json"), { spec: base, join: [] });
});

test("a member cannot join a user namespace by path", () => {
  assert.throws(
    () => memberNamespaces({ ...base, linux: { namespaces: [{ type: "user", path: "/proc/1/ns/user" }] } }, "/b/config.json"),
    (error: unknown) => error instanceof MoatError && error.code === "MOAT_BUNDLE_INVALID" && error.message.includes("linux.namespaces[0]"),
  );
});

test("the pod's size from containerd's sandbox annotations; 0 is not set; a bad value names its annotation", () => {
  assert.equal(sandboxResources(base, "/b/config.json"), undefined);
  assert.deepEqual(
    sandboxResources(annotated({ "io.kubernetes.cri.sandbox-cpu-quota": "150000", "io.kubernetes.cri.sandbox-cpu-period": "100000", "io.kubernetes.cri.sandbox-cpu-shares": "1536", "io.kubernetes.cri.sandbox-memory": "268435456" }), "/b/config.json"),
    { cpu: { quota: 150000, period: 100000, shares: 1536 }, memory: { limit: 268435456 } },
  );
  assert.equal(sandboxResources(annotated({ "io.kubernetes.cri.sandbox-cpu-quota": "0", "io.kubernetes.cri.sandbox-cpu-period": "100000", "io.kubernetes.cri.sandbox-memory": "0" }), "/b/config.json"), undefined);
  refused(() => sandboxResources(annotated({ "io.kubernetes.cri.sandbox-memory": "-5" }), "/b/config.json"), "io.kubernetes.cri.sandbox-memory");
  refused(() => sandboxResources(annotated({ "io.kubernetes.cri.sandbox-cpu-quota": "1e9" }), "/b/config.json"), "io.kubernetes.cri.sandbox-cpu-quota");
  refused(() => sandboxResources(annotated({ "io.kubernetes.cri.sandbox-cpu-quota": "5000", "io.kubernetes.cri.sandbox-cpu-period": "10" }), "/b/config.json"), "io.kubernetes.cri.sandbox-cpu-period");
});
