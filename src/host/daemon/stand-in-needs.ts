// What the host process that stands for a container must be, read from its bundle's spec, for
// a front end that starts that process itself before daemon.create (the containerd shim's
// task pid holder; `moat create` reads the same for its stand-in).
import { asksNewNetworkNamespace, hostHooks, loadBundle, networkNamespacePath } from "../oci/index.js";

export interface StandInNeeds {
  /** The spec has host hooks: they need the process's pid, so it must be given to create. */
  hooks: boolean;
  /** It must start in a new network namespace of its own (the spec asks for one without a path). */
  newNetns: boolean;
  /** The network namespace the spec names by path, which the process must be in (runc's container process would be). */
  netnsPath?: string;
}

/**
 * The needs of the bundle in `bundleDir`; none when its spec cannot be loaded, which
 * daemon.create then refuses with the error that says why.
 */
export function standInNeeds(bundleDir: string): StandInNeeds {
  let spec;
  try {
    spec = loadBundle(bundleDir).spec;
  } catch {
    return { hooks: false, newNetns: false };
  }
  const netnsPath = networkNamespacePath(spec);
  return { hooks: Object.keys(hostHooks(spec)).length > 0, newNetns: asksNewNetworkNamespace(spec), ...(netnsPath ? { netnsPath } : {}) };
}
