// `moat boot`: boots a sandbox VM with no container, shows the guest beside the host, and
// shuts it down. It is the smallest end-to-end proof that this host runs moat's guests. moatd
// boots it (Boot), as it makes every sandbox: a sandbox made behind its back would be removed
// by the next moatd that starts.
import { randomBytes } from "node:crypto";
import { release } from "node:os";
import { loadConfig } from "../config/index.js";
import { DaemonClient } from "../daemon/index.js";
import { guestArtifacts } from "../sandbox/index.js";
import { withOverrides, type GlobalOptions } from "./global-options.js";

export interface BootOptions {
  id?: string;
  json?: boolean;
}

export async function bootCommand(options: BootOptions, global: GlobalOptions): Promise<void> {
  const config = withOverrides(loadConfig(global.config), global);
  const id = options.id ?? `boot-${randomBytes(4).toString("hex")}`;
  guestArtifacts(config); // a missing kernel or image is told before moatd is asked
  const booted = await bootThroughDaemon(config.runtime.stateRoot, id, global);
  {
    const result = {
      sandbox: id,
      accelerator: booted.accelerator,
      acceleratorReason: booted.acceleratorReason,
      hostKernel: release(),
      guestKernel: booted.guestKernel,
      guestCpus: booted.guestCpus,
      guestMemoryMiB: Number(booted.guestMemoryMib),
      agentVersion: booted.agentVersion,
      start: booted.start,
      qemuReadyMs: Math.round(booted.qemuReadyMs),
      agentReadyMs: Math.round(booted.agentReadyMs),
      guestUptimeAtReadyMs: Math.round(booted.guestUptimeMs),
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
  }
}

/** moatd boots the sandbox, reports it and shuts it down; the configuration is this command's. */
export async function bootThroughDaemon(stateRoot: string, id: string, global: GlobalOptions) {
  const configPath = global.config ?? process.env.MOAT_CONFIG;
  const client = await DaemonClient.connect({ stateRoot, configPath });
  try {
    return await client.boot(id, configPath);
  } finally {
    client.close();
  }
}
