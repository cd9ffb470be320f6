// One error type for all of moat. `code` is stable (documented in docs/errors.md, matched on
// by callers and tests), `status` is the gRPC code the ttrpc edge sends, and the message
// reads `<where>: <what is wrong>[: <cause>]`. `hint` holds the fix when it is known.

import { Code } from "./ttrpc/status.js";

export interface MoatErrorOptions {
  status?: Code;
  hint?: string;
  cause?: unknown;
  /** The CLI's exit status for it, when not 1 (a command stopped by a signal: 128 + N). */
  exitStatus?: number;
}

export class MoatError extends Error {
  readonly code: string;
  readonly status: Code;
  readonly hint: string | undefined;
  readonly exitStatus: number;

  constructor(code: string, message: string, options: MoatErrorOptions = {}) {
    const causeText = options.cause === undefined ? "" : `: ${describeCause(options.cause)}`;
    super(message + causeText, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "MoatError";
    this.code = code;
    this.status = options.status ?? Code.UNKNOWN;
    this.hint = options.hint ?? (options.cause instanceof MoatError ? options.cause.hint : undefined);
    this.exitStatus = options.exitStatus ?? 1;
  }
}

/** The message of an error-like value, without a stack. */
export function describeCause(cause: unknown): string {
  if (cause instanceof Error) return cause.message;
  return String(cause);
}

/** True for the errno codes that mean "it is already gone", which cleanup counts as done. */
export function isGone(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOENT" || code === "ESRCH";
}

/** Formats an error for one-line CLI output, with its hint on a second line. */
export function formatForUser(error: unknown): string {
  if (error instanceof MoatError) {
    return error.hint ? `${error.message}\nHint: ${error.hint}` : error.message;
  }
  return describeCause(error);
}
