// PortForwardService: TCP connections from the host's port-forward relay to the guest's
// loopback (port-forward.ts holds them).
import type { PortForwardService } from "../../shared/protocol/index.js";
import { MoatError } from "../../shared/errors.js";
import { Code, type CallContext, type ServiceImplementation } from "../../shared/ttrpc/index.js";
import { PortForwards, type Session } from "./port-forward.js";

export function portForwardService(forwards = new PortForwards()): ServiceImplementation<typeof PortForwardService> {
  return {
    async dial(request, context) {
      return forwards.dial(request.port, session(context), context.signal);
    },
    async read(request, context) {
      return forwards.read(request.connectionId, request.maxBytes, session(context), context.signal);
    },
    async write(request, context) {
      await forwards.write(request.connectionId, request.data, session(context));
      return {};
    },
    async closeWrite(request, context) {
      forwards.closeWrite(request.connectionId, session(context));
      return {};
    },
    async close(request, context) {
      forwards.close(request.connectionId, session(context));
      return {};
    },
  };
}

/** The host session of a call: the ttrpc server always says which. */
function session(context: CallContext): Session {
  if (!context.session) throw new MoatError("MOAT_GUEST_PORT_FORWARD", "guest: a port-forward call outside a host session", { status: Code.INTERNAL });
  return context.session;
}
