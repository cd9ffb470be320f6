// `moat install [--prefix DIR] [--kata-compat]`: puts moat's containerd shim on the PATH under
// the names containerd derives from a runtime type: io.containerd.moat.v2 →
// containerd-shim-moat-v2, and with --kata-compat io.containerd.kata.v2 →
// containerd-shim-kata-v2, so that configurations written for Kata run on moat. Symlinks to
// the built shim: it finds moatd beside itself through /proc/self/exe, which resolves them.
import { existsSync } from "node:fs";
import { lstat, mkdir, readlink, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { packageRoot } from "../config/index.js";

export interface InstallOptions {
  prefix: string;
  kataCompat?: boolean;
}

export const SHIM_NAME = "containerd-shim-moat-v2";
export const KATA_SHIM_NAME = "containerd-shim-kata-v2";

export async function installCommand(options: InstallOptions): Promise<void> {
  const shim = join(packageRoot(), "dist", "bin", SHIM_NAME);
  if (!existsSync(shim)) {
    throw new MoatError("MOAT_CLI_INSTALL", `moat install: ${shim} does not exist`, { hint: "build it with `make build`", status: Code.FAILED_PRECONDITION });
  }
  await mkdir(options.prefix, { recursive: true });
  for (const name of options.kataCompat ? [SHIM_NAME, KATA_SHIM_NAME] : [SHIM_NAME]) {
    const link = join(options.prefix, name);
    const existing = await lstat(link).catch(() => undefined);
    if (existing) {
      // Replacing our own link is an upgrade; replacing anything else (Kata's real shim) is not ours to do.
      const target = existing.isSymbolicLink() ? await readlink(link) : undefined;
      if (target !== shim) {
        throw new MoatError("MOAT_CLI_INSTALL", `moat install: ${link} exists and is not moat's shim`, { hint: "remove it first if moat should take its place", status: Code.ALREADY_EXISTS });
      }
      await rm(link);
    }
    await symlink(shim, link);
    process.stdout.write(`${link} -> ${shim}\n`);
  }
}
