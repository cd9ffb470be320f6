// JSON that must be an object (an OCI spec or process, LinuxResources, a QMP answer, a TOML
// table): one check for host and guest, one error shape.
import { MoatError } from "./errors.js";
import { Code } from "./ttrpc/status.js";

/** A plain object: not null, not an array. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Parses `text` as a JSON object; otherwise a MoatError with `code` whose message starts with `where`. */
export function parseJsonObject(text: string, where: string, code: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new MoatError(code, `${where}: not valid JSON`, { cause: error, status: Code.INVALID_ARGUMENT });
  }
  if (!isPlainObject(value)) throw new MoatError(code, `${where}: must be a JSON object`, { status: Code.INVALID_ARGUMENT });
  return value;
}
