export { AgentClient, type GuestDetails, type GuestProcess } from "./agent-client.js";
export {
  adoptSandboxVm,
  describeStart,
  discardSandbox,
  guestArtifacts,
  isSandboxId,
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
export { runContainer, type RunningProcess, type RunOptions, type RunResult } from "./run-container.js";
// The logs of a sandbox VM are the hypervisor's; moatd trims them while it owns the sandbox.
export { trimLogs } from "../hypervisor/index.js";
