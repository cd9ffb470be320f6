// <bundle>/moat-shim: what containerd told the shim's `start` (its flags and TTRPC_ADDRESS),
// written there by containerd-shim-moat-v2.c for moatd, which serves the task and never sees
// those flags. One `key=value` line each.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

export const BOOTSTRAP_FILE = "moat-shim";

export interface ShimBootstrap {
  id: string;
  /** The containerd namespace of the task. */
  namespace: string;
  /** containerd's gRPC address. */
  address: string;
  /** Where task events go (Events/Forward). */
  ttrpcAddress: string;
}

export async function readBootstrap(bundle: string, where: string): Promise<ShimBootstrap> {
  const path = join(bundle, BOOTSTRAP_FILE);
  const text = await readFile(path, "utf8").catch((error: unknown) => {
    throw new MoatError("MOAT_SHIM_BOOTSTRAP", `${where}: cannot read ${path}`, {
      cause: error,
      hint: "tasks are created through containerd-shim-moat-v2 start, which writes it",
      status: Code.FAILED_PRECONDITION,
    });
  });
  const values = new Map(text.split("\n").flatMap((line) => {
    const at = line.indexOf("=");
    return at > 0 ? [[line.slice(0, at), line.slice(at + 1)] as const] : [];
  }));
  const namespace = values.get("namespace") ?? "";
  const ttrpcAddress = values.get("ttrpc_address") ?? "";
  if (!namespace || !ttrpcAddress) {
    throw new MoatError("MOAT_SHIM_BOOTSTRAP", `${path}: namespace and ttrpc_address must be set`, { status: Code.FAILED_PRECONDITION });
  }
  return { id: values.get("id") ?? "", namespace, address: values.get("address") ?? "", ttrpcAddress };
}
