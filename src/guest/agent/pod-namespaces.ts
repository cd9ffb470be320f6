// A pod member's namespaces in the guest: the host names only which of the pod's sandbox
// container's namespaces it shares (CreateContainerRequest.join_namespaces), never a path;
// the agent, which knows that container's pid, puts in /proc/<pid>/ns/<name> for crun to join.
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

/** The namespace types a member may share, and their file names under /proc/<pid>/ns. */
const NS_FILES: Record<string, string> = { network: "net", ipc: "ipc", uts: "uts", pid: "pid" };

/**
 * `spec` with its entries of the `types` named replaced by the paths of process `pid`'s
 * namespaces (the pod's sandbox container's init). An unknown type, or one named twice, is
 * refused: the host sends each at most once.
 */
export function joinPodNamespaces(spec: Record<string, unknown>, types: string[], pid: number, where: string): Record<string, unknown> {
  const seen = new Set<string>();
  for (const type of types) {
    if (!Object.hasOwn(NS_FILES, type)) throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: join_namespaces: ${JSON.stringify(type)} is not one a pod member shares (network, ipc, uts, pid)`, { status: Code.INVALID_ARGUMENT });
    if (seen.has(type)) throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: join_namespaces: ${type} named twice`, { status: Code.INVALID_ARGUMENT });
    seen.add(type);
  }
  if (types.length === 0) return spec;
  const linux = typeof spec.linux === "object" && spec.linux !== null && !Array.isArray(spec.linux) ? (spec.linux as Record<string, unknown>) : {}; // a plain object, checked just before
  const namespaces = Array.isArray(linux.namespaces) ? linux.namespaces : [];
  const kept = namespaces.filter((entry: unknown) => !(typeof entry === "object" && entry !== null && seen.has(String((entry as { type?: unknown }).type)))); // an object, checked in the same expression
  const joined = types.map((type) => ({ type, path: `/proc/${pid}/ns/${NS_FILES[type]}` }));
  return { ...spec, linux: { ...linux, namespaces: [...kept, ...joined] } };
}
