import assert from "node:assert/strict";
import { test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import { joinPodNamespaces } from "./pod-namespaces.js";

test("a member gets the sandbox container's namespaces by its guest pid", () => {
  const spec = { process: {}, linux: { namespaces: [{ type: "pid" }, { type: "mount" }, { type: "ipc" }], cgroupsPath: "/x" } };
  const joined = joinPodNamespaces(spec, ["ipc", "uts", "network"], 57, "container c1");
  assert.deepEqual(joined.linux, {
    cgroupsPath: "/x",
    namespaces: [{ type: "pid" }, { type: "mount" }, { type: "ipc", path: "/proc/57/ns/ipc" }, { type: "uts", path: "/proc/57/ns/uts" }, { type: "network", path: "/proc/57/ns/net" }],
  });
  assert.equal(joinPodNamespaces(spec, [], 57, "container c1"), spec);
});

test("an unknown or repeated type is refused", () => {
  const isSpecError = (error: unknown) => error instanceof MoatError && error.code === "MOAT_CONTAINER_SPEC";
  assert.throws(() => joinPodNamespaces({}, ["user"], 57, "container c1"), isSpecError);
  assert.throws(() => joinPodNamespaces({}, ["ipc", "ipc"], 57, "container c1"), isSpecError);
  assert.throws(() => joinPodNamespaces({}, ["__proto__"], 57, "container c1"), isSpecError);
});
