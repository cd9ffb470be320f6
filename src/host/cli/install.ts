// `moat install [--prefix DIR] [--kata-compat] [--systemd [--unit-dir DIR]]`: puts moat's
// containerd shim on the PATH under the names containerd derives from a runtime type:
// io.containerd.moat.v2 → containerd-shim-moat-v2, and with --kata-compat io.containerd.kata.v2
// → containerd-shim-kata-v2, so that configurations written for Kata run on moat. Symlinks to
// the built shim: it finds moatd beside itself through /proc/self/exe, which resolves them.
// It reads containerd's configuration and says what in it cannot work with a shim v2 runtime.
// With --systemd it writes a unit that keeps moatd running (otherwise it starts on demand).
import { existsSync } from "node:fs";
import { lstat, mkdir, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { loadConfig, packageRoot } from "../config/index.js";
import { containerdConfigFindings } from "./containerd-config.js";
import { withOverrides, type GlobalOptions } from "./global-options.js";
import { moatdUnit } from "./systemd-unit.js";

export interface InstallOptions {
  prefix: string;
  kataCompat?: boolean;
  /** containerd's configuration to check. */
  containerdConfig: string;
  systemd?: boolean;
  unitDir: string;
}

export const SHIM_NAME = "containerd-shim-moat-v2";
export const KATA_SHIM_NAME = "containerd-shim-kata-v2";

export async function installCommand(options: InstallOptions, global: GlobalOptions): Promise<void> {
  await installShim(options);
  await checkContainerdConfig(options.containerdConfig);
  if (options.systemd) await installUnit(options.unitDir, global);
}

async function installShim(options: InstallOptions): Promise<void> {
  const shim = join(packageRoot(), "dist", "bin", SHIM_NAME);
  if (!existsSync(shim)) {
    throw new MoatError("MOAT_CLI_INSTALL", `moat install: ${shim} does not exist`, { hint: "build it with `make build`", status: Code.FAILED_PRECONDITION });
  }
  await linkShim(shim, options.prefix, options.kataCompat ? [SHIM_NAME, KATA_SHIM_NAME] : [SHIM_NAME]);
}

/**
 * Links each of `names` in `prefix` to `shim`; returns the links it made (a link already
 * pointing there is left alone and not returned: `moat node uninstall` removes only its own).
 */
export async function linkShim(shim: string, prefix: string, names: readonly string[]): Promise<string[]> {
  await mkdir(prefix, { recursive: true });
  const made: string[] = [];
  for (const name of names) {
    const link = join(prefix, name);
    const existing = await lstat(link).catch(() => undefined);
    if (existing) {
      // Our own link is already in place; anything else (Kata's real shim) is not ours to replace.
      const target = existing.isSymbolicLink() ? await readlink(link) : undefined;
      if (target !== shim) {
        await Promise.all(made.map((link) => rm(link, { force: true }))); // a failed install leaves no link behind
        throw new MoatError("MOAT_CLI_INSTALL", `moat install: ${link} exists and is not moat's shim${target === undefined ? "" : ` (it points to ${target})`}`, { hint: "remove it first if moat should take its place", status: Code.ALREADY_EXISTS });
      }
    } else {
      await symlink(shim, link);
      made.push(link);
    }
    process.stdout.write(`${link} -> ${shim}\n`);
  }
  return made;
}

/** Says, line by line, what in containerd's configuration stands in moat's way. */
async function checkContainerdConfig(path: string): Promise<void> {
  const text = await readFile(path, "utf8").catch(() => undefined);
  if (text === undefined) return; // no configuration: containerd's defaults have no runtime of ours
  for (const finding of containerdConfigFindings(text)) {
    process.stdout.write(`warning: ${path}: ${finding.key}: ${finding.problem}\n  fix: ${finding.fix}\n`);
  }
}

/** Writes moatd.service for this installation's moatd, state root and configuration. */
async function installUnit(unitDir: string, global: GlobalOptions): Promise<void> {
  const config = withOverrides(loadConfig(global.config), global);
  const moatd = join(packageRoot(), "dist", "bundle", "moatd.mjs");
  const unit = join(unitDir, "moatd.service");
  await mkdir(unitDir, { recursive: true });
  await writeFile(unit, moatdUnit({ node: process.execPath, moatd, stateRoot: config.runtime.stateRoot, config: config.source }));
  process.stdout.write(`${unit} written; start it with: systemctl daemon-reload && systemctl enable --now moatd\n`);
}
