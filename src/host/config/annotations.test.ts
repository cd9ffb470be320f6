import assert from "node:assert/strict";
import { test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import { configForAnnotations } from "./annotations.js";
import { defaultConfig } from "./load.js";

const allowing = (patterns: string[]) => {
  const config = defaultConfig();
  return { ...config, source: "/etc/moat/configuration.toml", qemu: { ...config.qemu, enableAnnotations: patterns } };
};
const refused = (error: unknown, key: string) => error instanceof MoatError && error.code === "MOAT_ANNOTATION_REFUSED" && error.message.includes(`annotations["${key}"]: refused: `) && error.message.includes("enable_annotations in /etc/moat/configuration.toml");

test("annotations outside the prefixes are not this rule's", () => {
  const config = allowing([]);
  assert.equal(configForAnnotations(config, { "io.kubernetes.cri.sandbox-id": "p", "io.katacontainers.pkg.oci.bundle_path": "/x" }, "p/config.json"), config);
});

test("default_vcpus and default_memory override the configuration where enable_annotations allows them, under either prefix", () => {
  const config = allowing(["default_vcpus", "default_mem.*"]);
  const overridden = configForAnnotations(config, { "io.katacontainers.config.hypervisor.default_vcpus": "2", "io.moat.config.hypervisor.default_memory": "1024" }, "p/config.json");
  assert.equal(overridden.qemu.defaultVcpus, 2);
  assert.equal(overridden.qemu.defaultMemoryMiB, 1024);
  assert.equal(config.qemu.defaultVcpus, 1, "the configuration itself is not changed");
});

test("anything else under the prefixes, or an override the configuration does not allow, is refused naming it and the rule", () => {
  assert.throws(() => configForAnnotations(allowing([".*"]), { "io.katacontainers.config.hypervisor.kernel_params": "init=/bin/sh" }, "p/config.json"), (error) => refused(error, "io.katacontainers.config.hypervisor.kernel_params"));
  assert.throws(() => configForAnnotations(allowing([]), { "io.katacontainers.config.hypervisor.default_vcpus": "2" }, "p/config.json"), (error) => refused(error, "io.katacontainers.config.hypervisor.default_vcpus"));
  // Matched whole: "default_vcpu" does not allow "default_vcpus".
  assert.throws(() => configForAnnotations(allowing(["default_vcpu"]), { "io.moat.config.hypervisor.default_vcpus": "2" }, "p/config.json"), (error) => refused(error, "io.moat.config.hypervisor.default_vcpus"));
  assert.throws(() => configForAnnotations(allowing([".*"]), { "io.moat.config.runtime.state_root": "/tmp" }, "p/config.json"), (error) => refused(error, "io.moat.config.runtime.state_root"));
});

test("an allowed override's value must be in the key's range", () => {
  for (const value of ["0", "65", "-1", "2.5", "", "1e3"]) {
    assert.throws(() => configForAnnotations(allowing(["default_vcpus"]), { "io.katacontainers.config.hypervisor.default_vcpus": value }, "p/config.json"), (error: unknown) => error instanceof MoatError && error.code === "MOAT_BUNDLE_INVALID");
  }
});
