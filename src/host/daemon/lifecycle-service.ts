// ContainerLifecycleService: moatd's ttrpc API, mapped onto the Daemon.
import type { ContainerLifecycleService } from "../../shared/protocol/index.js";
import type { ServiceImplementation } from "../../shared/ttrpc/index.js";
import type { ContainerState, Daemon } from "./daemon.js";

const OCI_VERSION = "1.0.2";

function toWire(state: ContainerState) {
  return { ociVersion: OCI_VERSION, id: state.id, status: state.status, pid: state.pid, bundle: state.bundle, created: state.created, annotations: {}, exitStatus: state.exitStatus };
}

export function lifecycleService(daemon: Daemon): ServiceImplementation<typeof ContainerLifecycleService> {
  return {
    async create(request) {
      return { stdioSocket: await daemon.create(request.containerId, request.bundle) };
    },
    async exec(request) {
      return { stdioSocket: await daemon.exec(request.containerId, request.execId, request.processJson) };
    },
    async start(request) {
      await daemon.start(request.containerId);
      return {};
    },
    async state(request) {
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
    async takePooledVm(request) {
      const result = await daemon.takePooledVm(request.sandboxId, request.templateKey);
      return result.taken ? { taken: true, reason: "" } : result;
    },
  };
}
