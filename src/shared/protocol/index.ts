// Messages and service descriptors generated from proto/ by `npm run generate`.
export * from "./gen/ttrpc/ttrpc_pb.js";
export * from "./gen/moat/agent/v1/agent_pb.js";
export * from "./gen/moat/daemon/v1/daemon_pb.js";

/** The agent protocol version; bumped when a change to agent.proto is not backward compatible. */
export const AGENT_PROTOCOL_VERSION = 1;
export { containerGuestDir, shareGuestPath } from "./guest-paths.js";
