// How big a sandbox's VM is: the configured default plus what its container's
// linux.resources ask for, as Kata sizes its VMs (vCPUs = default_vcpus + ceil(quota/period),
// or the cpuset's count; memory = default_memory + the memory limit), up to default_maxvcpus
// and default_maxmemory. Without this the guest, not the container's cgroup, would be the
// limit: `podman run --memory 2g` in a 512 MiB VM is OOM-killed by the guest kernel long
// before its own limit. A container that asks for more than the host has, or than the
// configuration allows, is refused by name, before anything starts.
import { availableParallelism, totalmem } from "node:os";
import { MoatError } from "../../shared/errors.js";
import { isPlainObject } from "../../shared/json-object.js";
import { Code } from "../../shared/ttrpc/index.js";
import type { Config } from "../config/index.js";
import type { OciSpec } from "../oci/index.js";

const MIB = 1024 * 1024;

export interface HostSize {
  cpus: number;
  memoryMiB: number;
}

/** This host's CPUs (those this process may run on) and MemTotal. */
export function hostSize(): HostSize {
  return { cpus: availableParallelism(), memoryMiB: Math.floor(totalmem() / MIB) };
}

export interface VmSize {
  vcpus: number;
  memoryMiB: number;
}

/** The most a sandbox VM may have: default_maxvcpus/default_maxmemory, 0 or more than the host has meaning the host's. */
export function vmCeiling(config: Config, host: HostSize = hostSize()): VmSize & { vcpusFrom: string; memoryFrom: string } {
  const file = config.source ?? "the built-in configuration";
  const configuredVcpus = config.qemu.defaultMaxVcpus;
  const configuredMemory = config.qemu.defaultMaxMemoryMiB;
  const vcpusByConfig = configuredVcpus > 0 && configuredVcpus < host.cpus;
  const memoryByConfig = configuredMemory > 0 && configuredMemory < host.memoryMiB;
  return {
    vcpus: vcpusByConfig ? configuredVcpus : host.cpus,
    vcpusFrom: vcpusByConfig ? `[hypervisor.qemu] default_maxvcpus in ${file}` : "the host's CPU count",
    memoryMiB: memoryByConfig ? configuredMemory : host.memoryMiB,
    memoryFrom: memoryByConfig ? `[hypervisor.qemu] default_maxmemory in ${file}` : "the host's MemTotal",
  };
}

/**
 * The VM for a container with `spec` (checked by the OCI spec's rules already); `where` names
 * the spec in errors. Throws MOAT_RESOURCES_TOO_LARGE naming the limit that cannot be met.
 */
export function vmSizeFor(config: Config, spec: OciSpec, where: string, host: HostSize = hostSize()): VmSize {
  const resources = isPlainObject(spec.linux) && isPlainObject(spec.linux.resources) ? spec.linux.resources : {};
  return vmSizeForResources(config, resources, where, host, (field) => `linux.resources.${field}`);
}

/**
 * The VM for a workload of `resources` (linux.resources' shape); `name` says where each field
 * came from in errors: a pod's VM is sized from its sandbox container's annotations (pod.ts,
 * sandboxResources), the sum of its containers' limits, plus the configured default.
 */
export function vmSizeForResources(config: Config, resources: Record<string, unknown>, where: string, host: HostSize = hostSize(), name: (field: string) => string = (field) => field): VmSize {
  const ceiling = vmCeiling(config, host);
  const cpu = isPlainObject(resources.cpu) ? resources.cpu : {};
  const memory = isPlainObject(resources.memory) ? resources.memory : {};
  const tooLarge = (field: string, what: string) =>
    new MoatError("MOAT_RESOURCES_TOO_LARGE", `${where}: ${name(field)}: ${what}`, {
      hint: "lower the container's limit, or raise default_maxvcpus/default_maxmemory in [hypervisor.qemu] (at most the host's size)",
      status: Code.FAILED_PRECONDITION,
    });

  // CPUs: the quota's share of its period, rounded up; without a quota, the cpuset's count.
  let vcpus = config.qemu.defaultVcpus;
  const quota = typeof cpu.quota === "number" ? cpu.quota : 0;
  const period = typeof cpu.period === "number" && cpu.period > 0 ? cpu.period : 100_000; // the kernel's default CFS period
  const cpuset = typeof cpu.cpus === "string" ? cpusetNumbers(cpu.cpus) : [];
  if (quota > 0) {
    const asked = Math.ceil(quota / period);
    if (asked > ceiling.vcpus) throw tooLarge("cpu.quota", `${quota} µs per ${period} µs asks for ${asked} CPUs; a sandbox VM may have at most ${ceiling.vcpus} (${ceiling.vcpusFrom})`);
    vcpus += asked;
  } else if (cpuset.length > 0) {
    if (cpuset.length > ceiling.vcpus) throw tooLarge("cpu.cpus", `"${String(cpu.cpus)}" asks for ${cpuset.length} CPUs; a sandbox VM may have at most ${ceiling.vcpus} (${ceiling.vcpusFrom})`);
    vcpus += cpuset.length;
  }
  // The guest numbers its CPUs from 0: a cpuset naming CPU n needs n + 1 of them.
  const highest = Math.max(-1, ...cpuset);
  if (highest + 1 > ceiling.vcpus) throw tooLarge("cpu.cpus", `"${String(cpu.cpus)}" names CPU ${highest}; a sandbox VM may have at most ${ceiling.vcpus}, CPUs 0-${ceiling.vcpus - 1} (${ceiling.vcpusFrom})`);
  // Only what the container adds is capped: a default above the ceiling stays the default.
  vcpus = Math.max(config.qemu.defaultVcpus, Math.min(vcpus, ceiling.vcpus), highest + 1);

  let memoryMiB = config.qemu.defaultMemoryMiB;
  const limit = typeof memory.limit === "number" ? memory.limit : 0;
  if (limit > 0) {
    const asked = Math.ceil(limit / MIB);
    if (asked > ceiling.memoryMiB) throw tooLarge("memory.limit", `${limit} bytes asks for ${asked} MiB; a sandbox VM may have at most ${ceiling.memoryMiB} MiB (${ceiling.memoryFrom})`);
    memoryMiB = Math.max(memoryMiB, Math.min(memoryMiB + asked, ceiling.memoryMiB));
  }
  return { vcpus, memoryMiB };
}

/** The CPU numbers of a cpuset list ("0-3,5"), as the spec's check accepted it. */
function cpusetNumbers(list: string): number[] {
  const numbers = new Set<number>();
  for (const part of list.split(",")) {
    if (part.trim() === "") continue; // "" is an unset cpuset
    const [first, last = first] = part.trim().split("-").map(Number);
    if (first === undefined || !Number.isInteger(first) || !Number.isInteger(last)) continue; // checked by the spec's rules
    for (let number = first; number <= last; number++) numbers.add(number);
  }
  return [...numbers];
}
