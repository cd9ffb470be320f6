export { AgentClient, type GuestDetails, type GuestProcess } from "./agent-client.js";
export { adoptSandboxVm, discardSandbox, guestArtifacts, isSandboxId, sandboxFilesDir, startSandboxVm, validateSandboxId, vmBase, type BootTimings, type SandboxOptions, type SandboxVm } from "./sandbox-vm.js";
export { runContainer, type RunOptions, type RunResult } from "./run-container.js";
