import type { FrontEnd } from "../daemon/index.js";
import { taskService } from "./task-service.js";
import { containerdTask } from "../../shared/protocol/index.js";

/** The socket under the state root where moatd serves containerd; containerd-shim-moat-v2.c names it too. */
export const TASK_SOCKET = "containerd-task.sock";

/** containerd's Task service, as moatd serves it for containerd-shim-moat-v2. */
export const containerdTaskFrontEnd: FrontEnd = {
  socketName: TASK_SOCKET,
  register(server, daemon, log) {
    server.register(containerdTask.Task, taskService(daemon, log));
  },
};
