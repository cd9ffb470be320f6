import type { Daemon, FrontEnd } from "../daemon/index.js";
import { taskService } from "./task-service.js";
import { containerdTask } from "../../shared/protocol/index.js";
import type { CallContext, ServiceImplementation } from "../../shared/ttrpc/index.js";

/** The socket under the state root where moatd serves containerd; containerd-shim-moat-v2.c names it too. */
export const TASK_SOCKET = "containerd-task.sock";

/** containerd's Task service, as moatd serves it for containerd-shim-moat-v2. */
export const containerdTaskFrontEnd: FrontEnd = {
  socketName: TASK_SOCKET,
  register(server, daemon, log) {
    server.register(containerdTask.Task, afterAdoption(daemon, taskService(daemon, log)));
  },
};

/**
 * Each request waits until the daemon has adopted its task's sandbox, if it is adopting it
 * (a restarted moatd answers before it has adopted everything; its adopter fills the task
 * service's tasks). Every Task request names its task in `id`.
 */
function afterAdoption(daemon: Pick<Daemon, "adopted">, service: ServiceImplementation<typeof containerdTask.Task>): ServiceImplementation<typeof containerdTask.Task> {
  const wrapped: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(service)) {
    const call = method as (request: { id: string }, context: CallContext) => Promise<unknown>; // every Task request names its task in `id`
    wrapped[name] = async (request: { id: string }, context: CallContext) => {
      await daemon.adopted(request.id);
      return call.call(service, request, context);
    };
  }
  return wrapped as ServiceImplementation<typeof containerdTask.Task>; // the same methods, each waiting first
}

