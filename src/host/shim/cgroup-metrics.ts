// containerd's cgroup v2 Metrics from the text of a container's cgroup files in the guest.
// The text comes from the guest, so it is parsed defensively: a line that does not fit is
// skipped, a number that does not parse counts as absent, "max" is no limit (0).
import type { MessageInitShape } from "@bufbuild/protobuf";
import { cgroupsV2 } from "../../shared/protocol/index.js";

/** The files Task.Stats asks the guest for. */
export const METRICS_FILES = ["cpu.stat", "memory.current", "memory.max", "memory.stat", "memory.events", "memory.swap.current", "memory.swap.max", "pids.current", "pids.max", "io.stat"];

type Metrics = MessageInitShape<typeof cgroupsV2.MetricsSchema>;

const UINT64 = /^\d{1,20}$/;

function number(text: string | undefined): bigint | undefined {
  const trimmed = text?.trim();
  if (!trimmed || !UINT64.test(trimmed)) return undefined;
  const value = BigInt(trimmed);
  return value < 1n << 64n ? value : undefined;
}

/** "max" (no limit) is 0 in containerd's metrics, as its own cgroup v2 reader reports it. */
function limit(text: string | undefined): bigint | undefined {
  return text?.trim() === "max" ? 0n : number(text);
}

/** A flat-keyed file ("usage_usec 1234" per line) as a map. */
function keyed(text: string | undefined): Map<string, bigint> {
  const entries = new Map<string, bigint>();
  for (const line of (text ?? "").split("\n")) {
    const [key, value, extra] = line.trim().split(/\s+/);
    const parsed = number(value);
    if (key && parsed !== undefined && extra === undefined) entries.set(key, parsed);
  }
  return entries;
}

/** The fields of `schema` whose names are keys of `entries` (memory.stat's keys are MemoryStat's field names). */
function fieldsFrom(fields: readonly { name: string; localName: string }[], entries: Map<string, bigint>): Record<string, bigint> {
  return Object.fromEntries(fields.flatMap((field) => (entries.has(field.name) ? [[field.localName, entries.get(field.name)!]] : []))); // has() checked
}

/** io.stat: "MAJ:MIN rbytes=… wbytes=… rios=… wios=… …" per device. */
function ioEntries(text: string | undefined): MessageInitShape<typeof cgroupsV2.IOEntrySchema>[] {
  return (text ?? "").split("\n").flatMap((line) => {
    const [device, ...pairs] = line.trim().split(/\s+/);
    const match = /^(\d+):(\d+)$/.exec(device ?? "");
    if (!match) return [];
    const values = new Map(pairs.map((pair) => pair.split("=", 2) as [string, string])); // split yields at least the key
    const field = (key: string) => number(values.get(key)) ?? 0n;
    return [{ major: BigInt(match[1]!), minor: BigInt(match[2]!), rbytes: field("rbytes"), wbytes: field("wbytes"), rios: field("rios"), wios: field("wios") }]; // both groups matched
  });
}

export function metricsFromCgroupFiles(files: Record<string, string>): Metrics {
  const memory = {
    ...fieldsFrom(cgroupsV2.MemoryStatSchema.fields, keyed(files["memory.stat"])),
    usage: number(files["memory.current"]),
    usageLimit: limit(files["memory.max"]),
    swapUsage: number(files["memory.swap.current"]),
    swapLimit: limit(files["memory.swap.max"]),
  };
  return {
    pids: { current: number(files["pids.current"]), limit: limit(files["pids.max"]) },
    cpu: fieldsFrom(cgroupsV2.CPUStatSchema.fields, keyed(files["cpu.stat"])),
    memory,
    memoryEvents: fieldsFrom(cgroupsV2.MemoryEventsSchema.fields, keyed(files["memory.events"])),
    io: { usage: ioEntries(files["io.stat"]) },
  };
}
