// An OCI bundle (a directory with config.json and a root file system), read and checked
// before anything starts. Each error names the file and the field:
//   /b/config.json: process.args: must be a non-empty array of strings
// The whole spec is checked (spec-check.ts) before anything starts, by the CLI and by moatd.
import { existsSync, readFileSync, statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { checkSpec } from "./spec-check.js";

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciSpec {
  ociVersion: string;
  process: { args: string[]; cwd: string; env?: string[]; terminal?: boolean; [key: string]: unknown };
  root: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: OciMount[];
  [key: string]: unknown;
}

export interface Bundle {
  dir: string;
  spec: OciSpec;
  /** root.path made absolute. */
  rootfs: string;
  /** What the spec says to log as a warning and go on (an unknown capability), one line each naming file and field. */
  warnings: string[];
}

/**
 * `checkHost: false` skips what the spec says of the host (root and bind sources exist): for
 * an exec, which takes only the bundle's process, and must not fail because a share's source
 * was removed under the running container (issue 13 item 5).
 */
export function loadBundle(bundleDir: string, checkHost = true): Bundle {
  if (!isAbsolute(bundleDir)) bundleDir = resolve(bundleDir);
  const file = join(bundleDir, "config.json");
  const invalid = (what: string) => new MoatError("MOAT_BUNDLE_INVALID", `${file}: ${what}`, { status: Code.INVALID_ARGUMENT });
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new MoatError("MOAT_BUNDLE_INVALID", `${file}: cannot read`, { cause: error, status: Code.INVALID_ARGUMENT });
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw invalid(`not valid JSON: ${(error as Error).message}`); // JSON.parse throws SyntaxError
  }
  const { warnings } = checkSpec(document, file);
  const spec = document as OciSpec; // checkSpec checked every field OciSpec declares

  // What the spec says of the host: the root is a directory, and a bind mount's source
  // (absolute, or relative to the bundle) exists.
  const rootfs = resolve(bundleDir, spec.root.path);
  if (!checkHost) return { dir: bundleDir, spec, rootfs, warnings };
  if (!isDirectory(rootfs)) throw invalid(`root.path: ${rootfs} is not a directory`);
  const mounts = spec.mounts?.map((mount, index) => {
    if (!isBindMount(mount)) return mount;
    if (mount.source === undefined || mount.source === "") throw invalid(`mounts[${index}].source: a bind mount needs a source`);
    const source = resolve(bundleDir, mount.source);
    if (!existsSync(source)) throw invalid(`mounts[${index}].source: ${source} does not exist`);
    return { ...mount, source };
  });
  return { dir: bundleDir, spec: mounts ? { ...spec, mounts } : spec, rootfs, warnings };
}

/** True for a bind mount: type "bind", or "bind"/"rbind" among the options (runc accepts both). */
export function isBindMount(mount: OciMount): boolean {
  return mount.type === "bind" || (mount.options ?? []).some((option) => option === "bind" || option === "rbind");
}


function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
