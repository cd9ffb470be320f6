// ContainerService: create, start, signal, wait for and remove containers (containers.ts).
import type { ContainerService } from "../../shared/protocol/index.js";
import type { ServiceImplementation } from "../../shared/ttrpc/index.js";
import type { Containers } from "./containers.js";

export function containerService(containers: Containers): ServiceImplementation<typeof ContainerService> {
  return {
    async createContainer(request) {
      return containers.create(request);
    },
    async startContainer(request) {
      return { steps: await containers.start(request.containerId) };
    },
    async execProcess(request) {
      return { pid: await containers.exec(request.containerId, request.execId, request.processJson, request.stdin) };
    },
    async signalProcess(request) {
      await containers.signal(request.containerId, request.execId, request.signal, request.all);
      return {};
    },
    async waitProcess(request) {
      return containers.wait(request.containerId, request.execId);
    },
    async pauseContainer(request) {
      await containers.freeze(request.containerId, "pause");
      return {};
    },
    async resumeContainer(request) {
      await containers.freeze(request.containerId, "resume");
      return {};
    },
    async stateContainer(request) {
      return containers.status(request.containerId);
    },
    async listProcesses(request) {
      return { processes: await containers.processes(request.containerId) };
    },
    async updateContainer(request) {
      await containers.update(request.containerId, request.resourcesJson);
      return {};
    },
    async removeContainer(request) {
      await containers.remove(request.containerId);
      return {};
    },
  };
}
