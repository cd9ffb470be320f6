// Pod membership: which container of a Kubernetes pod a bundle is, read from the annotations
// a CRI implementation puts in its spec (containerd's CRI plugin and CRI-O each have a pair).
// The pod's sandbox (pause) container makes the pod's VM; its other containers join that VM.
// A spec with neither pair is a container of its own, in a VM of its own, as before pods.
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import type { OciSpec } from "./bundle.js";
import { specAnnotations } from "./hooks.js";

/** The annotation pairs: the container's type (`sandbox` or `container`) and its pod's sandbox id. */
const CRI_KEYS = [
  { type: "io.kubernetes.cri.container-type", sandboxId: "io.kubernetes.cri.sandbox-id" }, // containerd
  { type: "io.kubernetes.cri-o.ContainerType", sandboxId: "io.kubernetes.cri-o.SandboxID" }, // CRI-O
] as const;

/** Same rule as a sandbox id (sandbox-vm.ts): the pod's VM is named by its sandbox container's id. */
const VALID_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/**
 * `single`: no pod (a VM of its own). `sandbox`: the pod's sandbox container, which makes the
 * pod's VM (its id is the pod's). `member`: a container that runs in the VM of pod `podId`.
 */
export type PodRole = { kind: "single" } | { kind: "sandbox"; podId: string } | { kind: "member"; podId: string };

/**
 * The role of container `id` from its spec's annotations; `where` names the spec in errors.
 * A type without a sandbox id, an unknown type, a bad sandbox id, a sandbox container whose
 * sandbox id is not its own, or a member naming itself as its pod: MOAT_BUNDLE_INVALID naming
 * the annotation.
 */
export function podRole(id: string, spec: OciSpec, where: string): PodRole {
  const annotations = specAnnotations(spec);
  const found = CRI_KEYS.filter((keys) => annotations[keys.type] !== undefined || annotations[keys.sandboxId] !== undefined);
  if (found.length === 0) return { kind: "single" };
  // Both pairs at once would be two CRI implementations claiming one container: believe neither.
  if (found.length > 1) throw invalid(where, CRI_KEYS[0].type, `set together with ${CRI_KEYS[1].type}: a spec carries one CRI implementation's annotations, not both`);
  const keys = found[0]!; // length 1, checked above
  const type = annotations[keys.type];
  const podId = annotations[keys.sandboxId];
  if (type === undefined) throw invalid(where, keys.type, `missing, while ${keys.sandboxId} is set`);
  if (podId === undefined || podId === "") throw invalid(where, keys.sandboxId, `missing, while ${keys.type} is ${JSON.stringify(type)}`);
  if (!VALID_ID.test(podId)) throw invalid(where, keys.sandboxId, `${JSON.stringify(podId)} is not a sandbox id (1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit)`);
  if (type === "sandbox") {
    if (podId !== id) throw invalid(where, keys.sandboxId, `a pod's sandbox container is its pod: the sandbox id must be its own id ${id}, got ${podId}`);
    return { kind: "sandbox", podId };
  }
  if (type === "container") {
    if (podId === id) throw invalid(where, keys.sandboxId, `container ${id} names itself as its pod's sandbox, but its type is "container"`);
    return { kind: "member", podId };
  }
  throw invalid(where, keys.type, `must be "sandbox" or "container", got ${JSON.stringify(type)}`);
}

function invalid(where: string, annotation: string, what: string): MoatError {
  return new MoatError("MOAT_BUNDLE_INVALID", `${where}: annotations["${annotation}"]: ${what}`, { status: Code.INVALID_ARGUMENT });
}

/** The namespaces a pod member shares with its pod's sandbox container in the guest. */
export type JoinedNamespace = "network" | "ipc" | "uts" | "pid";
const JOINED: readonly string[] = ["network", "ipc", "uts", "pid"] satisfies JoinedNamespace[];
/** Made new for each container, whatever path the spec gives (Kata's rule). */
const OWN = ["mount", "cgroup"];

/**
 * A pod member's spec for the guest: its namespaces that name a path name the pause
 * container's on the host (`/proc/<host pid>/ns/ipc`, or the pod's netns file), which mean
 * nothing in the guest and must not reach it. Those of type network, ipc, uts and pid become
 * `join` (the agent puts in the paths of the pod's sandbox container in the guest); mount and
 * cgroup become new ones; any other type with a path (user, time) is refused: a pod's pause
 * container has none to share. Entries without a path stay as they are.
 */
export function memberNamespaces(spec: OciSpec, where: string): { spec: OciSpec; join: JoinedNamespace[] } {
  const linux = spec.linux;
  if (typeof linux !== "object" || linux === null) return { spec, join: [] };
  const namespaces = (linux as { namespaces?: unknown }).namespaces;
  if (!Array.isArray(namespaces)) return { spec, join: [] };
  const join: JoinedNamespace[] = [];
  const kept: unknown[] = [];
  namespaces.forEach((entry: unknown, index) => {
    if (typeof entry !== "object" || entry === null) return void kept.push(entry); // checkSpec refuses it
    const { type, path } = entry as { type?: unknown; path?: unknown }; // an object, checked just above
    if (path === undefined || path === "") return void kept.push(entry);
    if (typeof type === "string" && JOINED.includes(type)) {
      join.push(type as JoinedNamespace); // one of JOINED, checked just above
      // The network namespace is the pod's in the guest: the agent names it too.
      return;
    }
    if (typeof type === "string" && OWN.includes(type)) return void kept.push({ type });
    throw new MoatError("MOAT_BUNDLE_INVALID", `${where}: linux.namespaces[${index}]: a pod member cannot join a ${JSON.stringify(type)} namespace by path (${String(path)}): only network, ipc, uts and pid are shared with the pod's sandbox container in its VM`, { status: Code.INVALID_ARGUMENT });
  });
  return { spec: { ...spec, linux: { ...linux, namespaces: kept } }, join };
}

/** containerd's CRI plugin (1.6.20+) puts the pod's summed limits (PodSandboxConfig.linux.resources) on its sandbox container. */
const SANDBOX_SIZE_KEYS = {
  quota: "io.kubernetes.cri.sandbox-cpu-quota",
  period: "io.kubernetes.cri.sandbox-cpu-period",
  shares: "io.kubernetes.cri.sandbox-cpu-shares",
  memory: "io.kubernetes.cri.sandbox-memory",
} as const;

/**
 * The pod's workload as the sandbox container's annotations give it, as linux.resources (for
 * vmSizeFor, which sizes the VM from it as Kata's static_sandbox_resource_mgmt does), or
 * undefined when none is set. A value that is not a whole number of the kernel interface's
 * range is MOAT_BUNDLE_INVALID naming the annotation; 0 means not set, as containerd writes it.
 */
export function sandboxResources(spec: OciSpec, where: string): { cpu?: { quota?: number; period?: number; shares?: number }; memory?: { limit: number } } | undefined {
  const annotations = specAnnotations(spec);
  const read = (key: string): number | undefined => {
    const text = annotations[key];
    if (text === undefined || text === "") return undefined;
    // Whole, non-negative numbers within what a double holds exactly (cgroup values are 64-bit).
    if (!/^[0-9]{1,15}$/.test(text)) throw invalid(where, key, `must be a whole number of at most 15 digits, got ${JSON.stringify(text)}`);
    const value = Number(text);
    return value === 0 ? undefined : value;
  };
  const quota = read(SANDBOX_SIZE_KEYS.quota);
  const period = read(SANDBOX_SIZE_KEYS.period);
  const shares = read(SANDBOX_SIZE_KEYS.shares);
  const memory = read(SANDBOX_SIZE_KEYS.memory);
  if (period !== undefined && (period < 1000 || period > 1_000_000)) throw invalid(where, SANDBOX_SIZE_KEYS.period, `must be 1000 to 1000000 µs (the kernel's CFS period range), got ${period}`);
  if (quota === undefined && shares === undefined && memory === undefined) return undefined;
  const cpu = quota !== undefined || shares !== undefined ? { ...(quota !== undefined ? { quota } : {}), ...(period !== undefined ? { period } : {}), ...(shares !== undefined ? { shares } : {}) } : undefined;
  return { ...(cpu ? { cpu } : {}), ...(memory !== undefined ? { memory: { limit: memory } } : {}) };
}
