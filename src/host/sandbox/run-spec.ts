// What a foreground run (`moat run`, moatd's Run) runs, as the guest sees it: a built-in
// image's root file system shared read-only under a writable overlay in guest memory, so that
// nothing is written to the host's image; or an OCI bundle's, shared as it is, like its
// directory bind mounts. Nothing is mounted on the host.
import { builtinImage } from "../images/index.js";
import { isPlainObject } from "../../shared/json-object.js";
import type { CniRequest } from "../network/index.js";
import { consoleSize, defaultSpec, guestSpec, loadBundle, type OciSpec, type WindowSize } from "../oci/index.js";

export interface ForegroundRun {
  id: string;
  /** A bundle's directory, or a built-in image with its command (empty: the image's own). */
  what: { bundleDir: string } | { image: string; args: string[] };
  /** Give the process a terminal in the guest, of this size if known. */
  terminal: { size: WindowSize | undefined } | undefined;
  /** Relay the client's stdin; otherwise the process's stdin is empty. */
  stdin: boolean;
  vcpus?: number;
  memoryMiB?: number;
  /** The client's configuration file, for this sandbox instead of moatd's own. */
  configPath?: string;
  /** CNI networks to put the sandbox on (`--network`, `-p`); none: loopback only, or the bundle's namespace. */
  cni?: CniRequest;
  /** The host process that stands for a bundle's container, whose pid its host hooks get (0 or none: no hooks run). */
  standInPid?: number;
}

/** The guest spec and shares for a run, and the bundle directory its state reports ("" for an image). */
export function runSpec(run: ForegroundRun, filesDir: string): ReturnType<typeof guestSpec> & { bundleDir: string } {
  const containerId = run.id;
  if ("bundleDir" in run.what) {
    const bundle = loadBundle(run.what.bundleDir);
    const guest = guestSpec({ containerId, spec: onCni(withTerminal(bundle.spec, run.terminal), run.cni), rootfs: bundle.rootfs, overlay: false, where: `${bundle.dir}/config.json`, filesDir });
    return { ...guest, bundleDir: bundle.dir };
  }
  const image = builtinImage(run.what.image);
  const { args } = run.what;
  const spec = defaultSpec({ args: args.length > 0 ? args : image.cmd, env: image.env, cwd: image.cwd, hostname: containerId.slice(0, 63) });
  return { ...guestSpec({ containerId, spec: onCni(withTerminal(spec, run.terminal), run.cni), rootfs: image.rootfs, overlay: true, where: `image ${image.name}`, filesDir }), bundleDir: "" };
}

/** The spec with process.terminal set, and process.consoleSize when the size is known. */
function withTerminal(spec: OciSpec, terminal: ForegroundRun["terminal"]): OciSpec {
  return terminal ? { ...spec, process: { ...spec.process, terminal: true, ...consoleSize(terminal.size) } } : spec;
}

/**
 * On CNI networks, the container shares the guest's network namespace, which the agent sets
 * up as the sandbox's namespace on the host is: an entry asking for a new, empty one goes.
 * An entry with a path stays, and startSandboxVm refuses it beside --network.
 */
function onCni(spec: OciSpec, cni: CniRequest | undefined): OciSpec {
  const linux = spec.linux;
  if (cni === undefined || !isPlainObject(linux) || !Array.isArray(linux.namespaces)) return spec;
  const asksNew = (entry: unknown) => isPlainObject(entry) && entry.type === "network" && (entry.path === undefined || entry.path === "");
  return { ...spec, linux: { ...linux, namespaces: linux.namespaces.filter((entry: unknown) => !asksNew(entry)) } };
}
