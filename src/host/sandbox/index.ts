export { runSpec, type ForegroundRun } from "./run-spec.js";
export { AgentClient, type GuestDetails, type GuestProcess } from "./agent-client.js";
export { StartTimeline, type TimedStep } from "./start-timeline.js";
export {
  adoptSandboxVm,
  addContainerShares,
  removeContainerShares,
  describeStart,
  discardSandbox,
  guestArtifacts,
  isSandboxId,
  isSandboxStateDir,
  sandboxFilesDir,
  startSandboxVm,
  validateSandboxId,
  vmBase,
  type BootTimings,
  type SandboxOptions,
  type SandboxVm,
  type StartPath,
  type WarmPool,
} from "./sandbox-vm.js";
// The logs of a sandbox VM are the hypervisor's; moatd trims them while it owns the sandbox.
export { trimLogs } from "../hypervisor/index.js";
export { hostSize, vmCeiling, vmSizeFor, vmSizeForResources, type HostSize, type VmSize } from "./vm-size.js";
// What a sandbox on CNI networks is asked with (`moat run --network`, -p), checked at moatd's edge.
export { DEFAULT_CNI_CONF_DIR, parsePortMapping, type CniRequest } from "../network/index.js";
// A pod member's own directories (daemon/pod.ts): a socket directory named as a VM's, and a
// state directory that may hold bind mounts, removed only once they are unmounted.
export { makeSocketDir, removeSocketDir, socketDirFor } from "../hypervisor/index.js";
export { removeMountedDir } from "../storage/index.js";
