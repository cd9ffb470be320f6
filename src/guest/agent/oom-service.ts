// OomService: the containers' OOM kills, one numbered event per answer (oom-events.ts).
import type { OomService } from "../../shared/protocol/index.js";
import type { ServiceImplementation } from "../../shared/ttrpc/index.js";
import type { OomEvents } from "./oom-events.js";

export function oomService(events: OomEvents): ServiceImplementation<typeof OomService> {
  return {
    async nextOomEvent(request, context) {
      return events.next(request.afterSequence, context.signal);
    },
  };
}
