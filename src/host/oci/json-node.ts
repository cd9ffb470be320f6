// A value read from a JSON document, with the path it was read at, for checks whose errors
// name the file and the field as runc's do:
//   /b/config.json: process.args: must be a non-empty array of strings
// Each read either returns the value typed or throws MOAT_BUNDLE_INVALID; nothing else is
// thrown whatever the document holds (property tests feed it garbage: spec-check.test.ts).
import { MoatError } from "../../shared/errors.js";
import { isPlainObject } from "../../shared/json-object.js";
import { Code } from "../../shared/ttrpc/index.js";

/** How much of an offending value an error quotes: enough to recognise it, never a whole document. */
const QUOTE_MAX_CHARS = 60;

/** Enumerations longer than this are named, not listed, in errors. */
const ENUM_LISTED_MAX = 10;

/** Integer kinds of the spec, with the range each allows. uint64/int64 bounds are those of a double. */
export const INTEGER = {
  uint8: [0, 255],
  uint16: [0, 0xffff],
  uint32: [0, 0xffff_ffff],
  int32: [-0x8000_0000, 0x7fff_ffff],
  uint64: [0, 2 ** 64],
  int64: [-(2 ** 63), 2 ** 63],
} as const satisfies Record<string, readonly [number, number]>;

export class JsonNode {
  constructor(
    readonly value: unknown,
    /** "process.args[0]"; empty for the document itself. */
    readonly path: string,
    /** The file the document came from, first in every message. */
    readonly file: string,
  ) {}

  get present(): boolean {
    return this.value !== undefined;
  }

  /** An error about this value: `<file>: <path>: <what>`. */
  error(what: string): MoatError {
    return new MoatError("MOAT_BUNDLE_INVALID", `${this.file}: ${this.path ? `${this.path}: ` : ""}${what}`, { status: Code.INVALID_ARGUMENT });
  }

  /** The member `key` of this object (which must be one); absent members read as undefined. */
  at(key: string): JsonNode {
    const object = this.object();
    return new JsonNode(Object.hasOwn(object, key) ? object[key] : undefined, this.path ? `${this.path}.${key}` : key, this.file);
  }

  object(): Record<string, unknown> {
    if (!isPlainObject(this.value)) throw this.error(`must be an object, got ${describe(this.value)}`);
    return this.value;
  }

  /** An object's members as nodes, for maps whose keys are data (annotations, sysctl). */
  entries(): Array<[string, JsonNode]> {
    return Object.entries(this.object()).map(([key, value]) => [key, new JsonNode(value, `${this.path}[${quote(key)}]`, this.file)]);
  }

  array(): JsonNode[] {
    if (!Array.isArray(this.value)) throw this.error(`must be an array, got ${describe(this.value)}`);
    return this.value.map((item, index) => new JsonNode(item, `${this.path}[${index}]`, this.file));
  }

  string(): string {
    if (typeof this.value !== "string") throw this.error(`must be a string, got ${describe(this.value)}`);
    return this.value;
  }

  boolean(): boolean {
    if (typeof this.value !== "boolean") throw this.error(`must be true or false, got ${describe(this.value)}`);
    return this.value;
  }

  /** An integer of one of the spec's kinds, optionally narrowed to [min, max]. */
  integer(kind: keyof typeof INTEGER, range: { min?: number; max?: number } = {}): number {
    const [kindMin, kindMax] = INTEGER[kind];
    const min = range.min ?? kindMin;
    const max = range.max ?? kindMax;
    if (typeof this.value !== "number" || !Number.isInteger(this.value) || this.value < min || this.value > max) {
      const bounds = range.min === undefined && range.max === undefined ? `a ${kind}` : `an integer`;
      throw this.error(`must be ${bounds} from ${min} to ${max === 2 ** 64 ? "18446744073709551615" : max === 2 ** 63 ? "9223372036854775807" : max}, got ${describe(this.value)}`);
    }
    return this.value;
  }

  /** One of `values`; a long list is named by `listName` and its first entries, not in full. */
  oneOf<T extends string>(values: readonly T[], listName?: string): T {
    const value = this.string();
    if (!(values as readonly string[]).includes(value)) {
      const valid = values.length <= ENUM_LISTED_MAX || listName === undefined ? values.join(", ") : `${listName} (${values.slice(0, 3).join(", ")}, …)`;
      throw this.error(`must be one of ${valid}, got ${describe(value)}`);
    }
    return value as T; // one of values: checked just above
  }

  /** A string that is an absolute path. */
  absolutePath(): string {
    const value = this.string();
    if (!value.startsWith("/")) throw this.error(`must be an absolute path, got ${describe(value)}`);
    if (value.includes("\0")) throw this.error("must not contain a NUL byte");
    return value;
  }

  /** Runs `read` on this value if it is present. */
  optional<T>(read: (node: JsonNode) => T): T | undefined {
    return this.present ? read(this) : undefined;
  }
}

/** A value as an error quotes it: JSON, bounded, control characters escaped. */
export function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "an array";
  if (isPlainObject(value)) return "an object";
  return quote(String(typeof value === "string" ? value : JSON.stringify(value)), typeof value === "string");
}

function quote(text: string, asString = true): string {
  const bounded = text.length > QUOTE_MAX_CHARS ? `${text.slice(0, QUOTE_MAX_CHARS)}…` : text;
  // JSON.stringify escapes C0 controls; DEL, C1 and the bidi controls are escaped here too.
  const escaped = JSON.stringify(bounded).replace(/[\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return asString ? escaped : escaped.slice(1, -1);
}
