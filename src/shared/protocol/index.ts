// Messages and service descriptors generated from proto/ by `npm run generate`.
export * from "./gen/ttrpc/ttrpc_pb.js";
export * from "./gen/moat/agent/v1/agent_pb.js";
export * from "./gen/moat/daemon/v1/daemon_pb.js";
// containerd's API under namespaces: its message names (StateRequest, KillRequest, …) are
// moatd's too.
export * as containerdTask from "./gen/containerd/task/v2/shim_pb.js";
export * as containerdTypes from "./gen/containerd/types/task_pb.js";
export * as containerdMount from "./gen/containerd/types/mount_pb.js";
export * as containerdEvents from "./gen/containerd/events/task_pb.js";
export * as containerdEventService from "./gen/containerd/services/events/ttrpc/v1/events_pb.js";
export * as runtimeOptions from "./gen/runtimeoptions/v1/api_pb.js";
export * as runcOptions from "./gen/containerd/runc/v1/options_pb.js";
export * as cgroupsV2 from "./gen/containerd/cgroups/v2/metrics_pb.js";

/** The agent protocol version; bumped when a change to agent.proto is not backward compatible. */
export const AGENT_PROTOCOL_VERSION = 1;
export { containerGuestDir, shareGuestPath, shareSubpath, SHARES_9P_GUEST_ROOT, SHARES_9P_LIVE_GUEST_ROOT, SHARES_9P_LIVE_TAG, SHARES_9P_TAG, tmpfsGuestPath, WARM_UP_KERNEL_PARAM } from "./guest-paths.js";
