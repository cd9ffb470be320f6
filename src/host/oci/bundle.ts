// An OCI bundle (a directory with config.json and a root file system), read and checked
// before anything starts. Each error names the file and the field:
//   /b/config.json: process.args: must be a non-empty array of strings
// Only what moat relies on is checked here; crun in the guest checks the rest of the spec.
import { readFileSync, statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { isPlainObject } from "../../shared/json-object.js";

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
}

export function loadBundle(bundleDir: string): Bundle {
  if (!isAbsolute(bundleDir)) bundleDir = resolve(bundleDir);
  const file = join(bundleDir, "config.json");
  const invalid = (what: string) => new MoatError("MOAT_BUNDLE_INVALID", `${file}: ${what}`, { status: Code.INVALID_ARGUMENT });
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new MoatError("MOAT_BUNDLE_INVALID", `${file}: cannot read`, { cause: error, status: Code.INVALID_ARGUMENT });
  }
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (error) {
    throw invalid(`not valid JSON: ${(error as Error).message}`);
  }
  if (!isPlainObject(spec)) throw invalid("must be a JSON object");
  if (typeof spec.ociVersion !== "string") throw invalid("ociVersion: must be a string");

  const process = spec.process;
  if (!isPlainObject(process)) throw invalid("process: must be an object");
  if (!isStringArray(process.args) || process.args.length === 0) throw invalid("process.args: must be a non-empty array of strings");
  if (typeof process.cwd !== "string" || !isAbsolute(process.cwd)) throw invalid(`process.cwd: must be an absolute path, got ${JSON.stringify(process.cwd)}`);
  if (process.env !== undefined && !isStringArray(process.env)) throw invalid("process.env: must be an array of strings");
  if (process.terminal !== undefined && typeof process.terminal !== "boolean") throw invalid("process.terminal: must be true or false");

  const root = spec.root;
  if (!isPlainObject(root) || typeof root.path !== "string" || root.path.length === 0) throw invalid("root.path: must be a non-empty string");
  if (root.readonly !== undefined && typeof root.readonly !== "boolean") throw invalid("root.readonly: must be true or false");
  const rootfs = resolve(bundleDir, root.path);
  if (!isDirectory(rootfs)) throw invalid(`root.path: ${rootfs} is not a directory`);

  if (spec.hostname !== undefined && typeof spec.hostname !== "string") throw invalid("hostname: must be a string");
  if (spec.mounts !== undefined) {
    if (!Array.isArray(spec.mounts)) throw invalid("mounts: must be an array");
    spec.mounts.forEach((mount: unknown, index) => {
      const where = `mounts[${index}]`;
      if (!isPlainObject(mount)) throw invalid(`${where}: must be an object`);
      if (typeof mount.destination !== "string" || !isAbsolute(mount.destination)) throw invalid(`${where}.destination: must be an absolute path, got ${JSON.stringify(mount.destination)}`);
      for (const key of ["type", "source"] as const) {
        if (mount[key] !== undefined && typeof mount[key] !== "string") throw invalid(`${where}.${key}: must be a string`);
      }
      if (mount.options !== undefined && !isStringArray(mount.options)) throw invalid(`${where}.options: must be an array of strings`);
    });
  }
  return { dir: bundleDir, spec: spec as OciSpec, rootfs }; // every field moat reads was checked above
}

/** True for a bind mount: type "bind", or "bind"/"rbind" among the options (runc accepts both). */
export function isBindMount(mount: OciMount): boolean {
  return mount.type === "bind" || (mount.options ?? []).some((option) => option === "bind" || option === "rbind");
}


function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
