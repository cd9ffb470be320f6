// `moat update`: the resources to apply, from --resources (a LinuxResources JSON file, "-" for
// stdin, as containerd's runc shim sends it) or from runc's single-value flags, which are laid
// over the file's values.
import { readFileSync } from "node:fs";
import { MoatError } from "../../shared/errors.js";
import { parseJsonObject } from "../../shared/json-object.js";
import { Code } from "../../shared/ttrpc/index.js";

export interface UpdateOptions {
  resources?: string;
  memory?: string;
  memoryReservation?: string;
  memorySwap?: string;
  cpuShare?: string;
  cpuQuota?: string;
  cpuPeriod?: string;
  cpusetCpus?: string;
  cpusetMems?: string;
  pidsLimit?: string;
  blkioWeight?: string;
}

type Flag = Exclude<keyof UpdateOptions, "resources">;

/** Where each flag lands in LinuxResources, and whether its value is a byte size. */
const FLAGS: Record<Flag, { section: "memory" | "cpu" | "pids" | "blockIO"; key: string; kind: "bytes" | "integer" | "text" }> = {
  memory: { section: "memory", key: "limit", kind: "bytes" },
  memoryReservation: { section: "memory", key: "reservation", kind: "bytes" },
  memorySwap: { section: "memory", key: "swap", kind: "bytes" },
  cpuShare: { section: "cpu", key: "shares", kind: "integer" },
  cpuQuota: { section: "cpu", key: "quota", kind: "integer" },
  cpuPeriod: { section: "cpu", key: "period", kind: "integer" },
  cpusetCpus: { section: "cpu", key: "cpus", kind: "text" },
  cpusetMems: { section: "cpu", key: "mems", kind: "text" },
  pidsLimit: { section: "pids", key: "limit", kind: "integer" },
  blkioWeight: { section: "blockIO", key: "weight", kind: "integer" },
};

/** The LinuxResources object the options describe; `readStdin` serves --resources -. */
export function updateResources(id: string, options: UpdateOptions, readStdin: () => string = () => readFileSync(0, "utf8")): Record<string, Record<string, unknown>> {
  const resources = options.resources === undefined ? {} : resourcesFile(options.resources, readStdin);
  for (const flag of Object.keys(FLAGS) as Flag[]) { // the record's own keys
    const text = options[flag];
    if (text === undefined) continue;
    const { section, key, kind } = FLAGS[flag];
    resources[section] = { ...resources[section], [key]: flagValue(id, flag, text, kind) };
  }
  if (Object.keys(resources).length === 0) {
    throw new MoatError("MOAT_CLI_UPDATE", `container ${id}: update: give --resources FILE or at least one resource flag`, { status: Code.INVALID_ARGUMENT });
  }
  return resources;
}

function resourcesFile(path: string, readStdin: () => string): Record<string, Record<string, unknown>> {
  const where = path === "-" ? "--resources from stdin" : path;
  let text: string;
  try {
    text = path === "-" ? readStdin() : readFileSync(path, "utf8");
  } catch (error) {
    throw new MoatError("MOAT_CLI_UPDATE", `${where}: cannot read the resources`, { cause: error, status: Code.INVALID_ARGUMENT });
  }
  return parseJsonObject(text, where, "MOAT_CLI_UPDATE") as Record<string, Record<string, unknown>>; // the OCI LinuxResources: the guest's crun checks each section
}

function flagValue(id: string, flag: Flag, text: string, kind: "bytes" | "integer" | "text"): number | string {
  if (kind === "text") return text;
  const match = kind === "bytes" ? /^(-?\d+)([kmg]?)b?$/i.exec(text.trim()) : /^(-?\d+)()$/.exec(text.trim());
  const scale: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
  const value = match ? Number(match[1]) * scale[match[2]!.toLowerCase()]! : Number.NaN; // both groups exist when matched
  if (!Number.isSafeInteger(value) || value < -1) {
    const expected = kind === "bytes" ? "a size such as 512m or 1g, or -1 for no limit" : "a whole number (-1 for no limit)";
    const option = `--${flag.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;
    throw new MoatError("MOAT_CLI_UPDATE", `container ${id}: update: ${option}: must be ${expected}, got "${text}"`, { status: Code.INVALID_ARGUMENT });
  }
  return value;
}
