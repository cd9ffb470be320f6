// `moat boot`: boots a sandbox VM with no container, shows the guest beside the host, and
// shuts it down. It is the smallest end-to-end proof that this host runs moat's guests.
import { randomBytes } from "node:crypto";
import { release } from "node:os";
import { loadConfig } from "../config/index.js";
import { describeStart, startSandboxVm } from "../sandbox/index.js";
import { withOverrides, type GlobalOptions } from "./global-options.js";

export interface BootOptions {
  id?: string;
  json?: boolean;
}

export async function bootCommand(options: BootOptions, global: GlobalOptions): Promise<void> {
  const config = withOverrides(loadConfig(global.config), global);
  const id = options.id ?? `boot-${randomBytes(4).toString("hex")}`;
  const sandbox = await startSandboxVm(config, id);
  try {
    const details = await sandbox.agent.details();
    const version = await sandbox.agent.version();
    const result = {
      sandbox: id,
      accelerator: sandbox.accelerator.accelerator,
      acceleratorReason: sandbox.accelerator.reason,
      hostKernel: release(),
      guestKernel: details.kernelRelease,
      guestCpus: details.onlineCpus,
      guestMemoryMiB: Number(details.memoryTotalBytes / 1024n / 1024n),
      agentVersion: version.agentVersion,
      start: describeStart(sandbox.timings.start),
      qemuReadyMs: Math.round(sandbox.timings.qemuReadyMs),
      agentReadyMs: Math.round(sandbox.timings.agentReadyMs),
      guestUptimeAtReadyMs: Math.round(sandbox.timings.guestUptimeMs),
    };
    if (options.json) {
      process.stdout.write(JSON.stringify(result) + "\n");
    } else {
      if (result.accelerator === "tcg") process.stderr.write(`note: ${result.acceleratorReason}\n`);
      process.stdout.write(
        [
          `host kernel:   ${result.hostKernel}`,
          `guest kernel:  ${result.guestKernel}  (${result.guestCpus} vCPU, ${result.guestMemoryMiB} MiB, agent ${result.agentVersion})`,
          `start:         agent ready ${result.agentReadyMs} ms after QEMU started, ${result.start} (QEMU up in ${result.qemuReadyMs} ms, ${result.accelerator})`,
        ].join("\n") + "\n",
      );
    }
  } finally {
    await sandbox.shutdown();
  }
}
