// `moat version`: moat's version, QEMU's, and the guest kernel's.
import { loadConfig } from "../config/index.js";
import { qemuVersion } from "../hypervisor/index.js";
import { MOAT_VERSION } from "../../shared/version.js";
import { guestKernelRelease } from "./guest-kernel-release.js";
import type { GlobalOptions } from "./global-options.js";

export async function versionCommand(global: GlobalOptions): Promise<void> {
  const config = loadConfig(global.config);
  const qemu = await qemuVersion(config.qemu.path).catch(() => `not found at ${config.qemu.path}`);
  const kernel = (await guestKernelRelease(config.qemu.kernel)) ?? `not built (${config.qemu.kernel})`;
  process.stdout.write(
    [`moat version ${MOAT_VERSION}`, "spec: 1.0.2", `qemu: ${qemu}`, `guest kernel: ${kernel}`, `node: ${process.version}`].join("\n") + "\n",
  );
}
