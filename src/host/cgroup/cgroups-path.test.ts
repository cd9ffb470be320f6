import assert from "node:assert/strict";
import { test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import { hostCgroupTarget, isSystemdCgroupsPath } from "./cgroups-path.js";

const where = "/b/config.json";

test("systemd's slice:prefix:name becomes a scope nested by the slice's dashes", () => {
  assert.deepEqual(hostCgroupTarget("kubepods-burstable-pod1.slice:cri-containerd:abc", where), {
    path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope",
    systemd: { slice: "kubepods-burstable-pod1.slice", unit: "cri-containerd-abc.scope" },
  });
  assert.deepEqual(hostCgroupTarget(":libpod:c1", where), { path: "/system.slice/libpod-c1.scope", systemd: { slice: "system.slice", unit: "libpod-c1.scope" } });
  assert.deepEqual(hostCgroupTarget("-.slice::c1", where), { path: "/c1.scope", systemd: { slice: "-.slice", unit: "c1.scope" } });
});

test("a cgroupfs path is taken below the root, relative or absolute", () => {
  assert.deepEqual(hostCgroupTarget("/kubepods/burstable/pod1/c1", where), { path: "/kubepods/burstable/pod1/c1" });
  assert.deepEqual(hostCgroupTarget("libpod_parent//libpod-c1/", where), { path: "/libpod_parent/libpod-c1" });
});

test("the form is told by its shape", () => {
  assert.equal(isSystemdCgroupsPath("a.slice:p:n"), true);
  assert.equal(isSystemdCgroupsPath("/a.slice:p:n"), false);
  assert.equal(isSystemdCgroupsPath("/kubepods/pod"), false);
});

test("bad paths are refused with the spec and the reason", () => {
  const refuses = (path: string, pattern: RegExp) =>
    assert.throws(() => hostCgroupTarget(path, where), (error: unknown) => error instanceof MoatError && error.code === "MOAT_BUNDLE_INVALID" && error.message.startsWith(`${where}: linux.cgroupsPath`) && pattern.test(error.message));
  refuses("/", /names no cgroup/);
  refuses("/a/../b", /\.\. components/);
  refuses("kube--pods.slice:p:n", /empty part between dashes/);
  refuses("kubepods:p:n", /must end in \.slice/);
  refuses("a.slice:p:b.slice", /must be a scope/);
  refuses("a.slice:p q:n", /not a systemd unit name part/);
});
