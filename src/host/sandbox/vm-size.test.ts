import assert from "node:assert/strict";
import { test } from "node:test";
import { defaultConfig, type Config } from "../config/index.js";
import { defaultSpec, type OciSpec } from "../oci/index.js";
import { MoatError } from "../../shared/errors.js";
import { vmSizeFor, vmSizeForResources, type HostSize } from "./vm-size.js";

const HOST: HostSize = { cpus: 2, memoryMiB: 24_000 };
const GIB = 1024 * 1024 * 1024;

function config(qemu: Partial<Config["qemu"]> = {}): Config {
  const base = defaultConfig();
  return { ...base, source: "/etc/moat/configuration.toml", qemu: { ...base.qemu, ...qemu } };
}

function withResources(resources: Record<string, unknown>): OciSpec {
  const spec = defaultSpec({ args: ["sh"], env: [], cwd: "/", hostname: "h" });
  return { ...spec, linux: { ...(spec.linux as object), resources } };
}

const size = (resources: Record<string, unknown>, qemu: Partial<Config["qemu"]> = {}, host = HOST) => vmSizeFor(config(qemu), withResources(resources), "b/config.json", host);

test("no limits: the configured default size", () => {
  assert.deepEqual(size({}), { vcpus: 1, memoryMiB: 512 });
  assert.deepEqual(size({ memory: { limit: -1 }, cpu: { quota: -1, cpus: "" } }), { vcpus: 1, memoryMiB: 512 });
});

test("the memory limit is added to the default, as Kata does", () => {
  assert.deepEqual(size({ memory: { limit: 2 * GIB } }), { vcpus: 1, memoryMiB: 512 + 2048 });
  assert.deepEqual(size({ memory: { limit: 100 * 1024 * 1024 + 1 } }), { vcpus: 1, memoryMiB: 512 + 101 }, "rounded up to whole MiB");
});

test("CPUs: default_vcpus + ceil(quota/period), else the cpuset's count; capped at the ceiling", () => {
  assert.deepEqual(size({ cpu: { quota: 50_000, period: 100_000 } }), { vcpus: 2, memoryMiB: 512 });
  assert.deepEqual(size({ cpu: { quota: 150_000 } }, {}, { cpus: 8, memoryMiB: 24_000 }), { vcpus: 3, memoryMiB: 512 }, "the kernel's default period");
  assert.deepEqual(size({ cpu: { quota: 200_000, period: 100_000 } }), { vcpus: 2, memoryMiB: 512 }, "1 + 2 capped at the host's 2");
  assert.deepEqual(size({ cpu: { cpus: "0-1" } }, {}, { cpus: 4, memoryMiB: 24_000 }), { vcpus: 3, memoryMiB: 512 });
  assert.deepEqual(size({ cpu: { cpus: "1" } }), { vcpus: 2, memoryMiB: 512 }, "a cpuset naming CPU 1 needs two");
});

test("the configured ceilings cap what limits add, and a default above them stays", () => {
  assert.deepEqual(size({ memory: { limit: GIB } }, { defaultMaxMemoryMiB: 1024 }, HOST).memoryMiB, 1024, "512 + 1024 capped at 1024");
  assert.deepEqual(size({ cpu: { quota: 100_000 } }, { defaultVcpus: 4 }).vcpus, 4);
});

function refused(resources: Record<string, unknown>, qemu: Partial<Config["qemu"]>, message: string): void {
  assert.throws(
    () => size(resources, qemu),
    (error: unknown) => error instanceof MoatError && error.code === "MOAT_RESOURCES_TOO_LARGE" && error.message === message,
  );
}

test("a limit over the host's size or the configured maximum is refused, saying which and why", () => {
  refused({ memory: { limit: 30 * GIB } }, {}, "b/config.json: linux.resources.memory.limit: 32212254720 bytes asks for 30720 MiB; a sandbox VM may have at most 24000 MiB (the host's MemTotal)");
  refused(
    { memory: { limit: 2 * GIB } },
    { defaultMaxMemoryMiB: 1024 },
    "b/config.json: linux.resources.memory.limit: 2147483648 bytes asks for 2048 MiB; a sandbox VM may have at most 1024 MiB ([hypervisor.qemu] default_maxmemory in /etc/moat/configuration.toml)",
  );
  refused({ cpu: { quota: 300_000, period: 100_000 } }, {}, "b/config.json: linux.resources.cpu.quota: 300000 µs per 100000 µs asks for 3 CPUs; a sandbox VM may have at most 2 (the host's CPU count)");
  refused({ cpu: { quota: 200_000, period: 100_000 } }, { defaultMaxVcpus: 1 }, "b/config.json: linux.resources.cpu.quota: 200000 µs per 100000 µs asks for 2 CPUs; a sandbox VM may have at most 1 ([hypervisor.qemu] default_maxvcpus in /etc/moat/configuration.toml)");
  refused({ cpu: { cpus: "0-2" } }, {}, 'b/config.json: linux.resources.cpu.cpus: "0-2" asks for 3 CPUs; a sandbox VM may have at most 2 (the host\'s CPU count)');
  refused({ cpu: { cpus: "5" } }, {}, 'b/config.json: linux.resources.cpu.cpus: "5" names CPU 5; a sandbox VM may have at most 2, CPUs 0-1 (the host\'s CPU count)');
});

test("a configured maximum above the host's size is the host's", () => {
  refused({ memory: { limit: 30 * GIB } }, { defaultMaxMemoryMiB: 64 * 1024 }, "b/config.json: linux.resources.memory.limit: 32212254720 bytes asks for 30720 MiB; a sandbox VM may have at most 24000 MiB (the host's MemTotal)");
});

test("a pod's workload sizes its VM as a container's limits do, and a pod too large is refused naming where its size came from", () => {
  const name = (field: string) => `the pod's ${field === "memory.limit" ? "annotation io.kubernetes.cri.sandbox-memory" : field}`;
  assert.deepEqual(vmSizeForResources(config(), { cpu: { quota: 150000, period: 100000 }, memory: { limit: 256 * 1024 * 1024 } }, "pod p", HOST, name), { vcpus: 2, memoryMiB: 768 });
  assert.throws(
    () => vmSizeForResources(config(), { memory: { limit: 64 * GIB } }, "pod p", HOST, name),
    (error: unknown) => error instanceof MoatError && error.code === "MOAT_RESOURCES_TOO_LARGE" && error.message.startsWith("pod p: the pod's annotation io.kubernetes.cri.sandbox-memory: "),
  );
});
