// ContainerLifecycleService: moatd's ttrpc API, mapped onto the Daemon.
import { MoatError } from "../../shared/errors.js";
import type { ContainerLifecycleService } from "../../shared/protocol/index.js";
import { Code, type ServiceImplementation } from "../../shared/ttrpc/index.js";
import { DEFAULT_CNI_CONF_DIR, parsePortMapping, type CniRequest } from "../sandbox/index.js";
import type { ContainerState, Daemon } from "./daemon.js";

const OCI_VERSION = "1.0.2";
/** How a hint rides in a status message (ttrpc's Status has a code and a message); DaemonClient takes it out again. */
export const HINT_SEPARATOR = "\nHint: ";

function toWire(state: ContainerState) {
  return { ociVersion: OCI_VERSION, id: state.id, status: state.status, pid: state.pid, bundle: state.bundle, created: state.created, annotations: {}, exitStatus: state.exitStatus };
}

export function lifecycleService(daemon: Daemon): ServiceImplementation<typeof ContainerLifecycleService> {
  return withHints({
    async create(request, context) {
      // A client that goes away before the answer (moat create killed) gets its create undone.
      const cni = cniOf(request);
      return { stdioSocket: await daemon.create(request.containerId, request.bundle, undefined, undefined, undefined, context.signal, request.standInPid, cni) };
    },
    async run(request, context) {
      const { containerId: id, bundle, image, args, rows, columns } = request;
      const cni = cniOf(request);
      return daemon.run(
        {
          id,
          what: bundle ? { bundleDir: bundle } : { image, args },
          terminal: request.terminal ? { size: rows > 0 && columns > 0 ? { rows, columns } : undefined } : undefined,
          stdin: request.stdin,
          vcpus: request.vcpus || undefined,
          memoryMiB: request.memoryMib || undefined,
          configPath: request.configPath || undefined,
          cni,
          standInPid: request.standInPid,
        },
        context.signal,
      );
    },
    async boot(request, context) {
      return daemon.boot(request.sandboxId, request.configPath || undefined, context.signal);
    },
    async exec(request) {
      return { stdioSocket: await daemon.exec(request.containerId, request.execId, request.processJson) };
    },
    async start(request) {
      await daemon.start(request.containerId);
      return {};
    },
    async state(request) {
      await daemon.adopted(request.containerId);
      return toWire(daemon.state(request.containerId));
    },
    async kill(request) {
      await daemon.kill(request.containerId, request.signal, request.all);
      return {};
    },
    async pause(request) {
      await daemon.freeze(request.containerId, "pause");
      return {};
    },
    async resume(request) {
      await daemon.freeze(request.containerId, "resume");
      return {};
    },
    async delete(request) {
      await daemon.delete(request.containerId, request.force);
      return {};
    },
    async list() {
      return { containers: daemon.list().map(toWire) };
    },
    async ps(request) {
      return { processes: await daemon.ps(request.containerId) };
    },
    async update(request) {
      await daemon.update(request.containerId, request.resourcesJson);
      return {};
    },
  });
}

/** A Run's or Create's CNI networks and ports, if any; the ports checked here (the networks when the sandbox is made). */
function cniOf(request: { containerId: string; networks: string[]; cniConfDir: string; publish: string[] }): CniRequest | undefined {
  const { containerId: id, networks, cniConfDir, publish } = request;
  if (networks.length === 0 && publish.length > 0) {
    throw new MoatError("MOAT_RUN_ARGS", `container ${id}: -p publishes a port of a CNI network: name one with --network`, { status: Code.INVALID_ARGUMENT });
  }
  return networks.length > 0 ? { confDir: cniConfDir || DEFAULT_CNI_CONF_DIR, networks, portMappings: publish.map(parsePortMapping) } : undefined;
}

/** The same methods, each error's hint (the fix, when known) sent along in its message for moat's CLI to show. */
function withHints<S extends Record<string, (request: never, context: never) => Promise<unknown>>>(service: S): S {
  const wrapped: Record<string, (request: never, context: never) => Promise<unknown>> = {};
  for (const [name, method] of Object.entries(service)) {
    wrapped[name] = (request, context) =>
      method(request, context).catch((error: unknown) => {
        if (!(error instanceof MoatError) || !error.hint) throw error;
        throw new MoatError(error.code, `${error.message}${HINT_SEPARATOR}${error.hint}`, { status: error.status });
      });
  }
  return wrapped as S; // the same keys, each method with its own signature
}
