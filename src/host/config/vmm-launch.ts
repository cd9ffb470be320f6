// How moatd starts a QEMU under this configuration: the jail that confines every one
// (src/host/hypervisor/moat-jail.c, built into dist/bin) and the user it may run as.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import type { VmmUser } from "../hypervisor/index.js";
import type { Config } from "./config.js";
import { packageRoot } from "./package-root.js";

export interface VmmLaunch {
  jailPath: string;
  vmmUser?: VmmUser;
}

export function vmmLaunch(config: Config): VmmLaunch {
  const jailPath = join(packageRoot(), "dist", "bin", "moat-jail");
  if (!existsSync(jailPath)) {
    throw new MoatError("MOAT_JAIL_MISSING", `${jailPath}: the VMM jail does not exist; no QEMU runs unconfined`, { hint: "make build", status: Code.FAILED_PRECONDITION });
  }
  return config.qemu.vmmUser ? { jailPath, vmmUser: config.qemu.vmmUser } : { jailPath };
}
