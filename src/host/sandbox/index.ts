export { AgentClient, type GuestDetails } from "./agent-client.js";
export { guestArtifacts, startSandboxVm, validateSandboxId, type BootTimings, type SandboxVm } from "./sandbox-vm.js";
