// Assertions shared by unit tests.
import assert from "node:assert/strict";
import { MoatError } from "../../src/shared/errors.js";

/** Awaits `promise`, which must reject with a MoatError of `code` (and a message matching `message`). */
export async function rejectsWithCode(promise: Promise<unknown>, code: string, message?: RegExp): Promise<MoatError> {
  const error = await promise.then(
    () => assert.fail(`expected ${code}`),
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof MoatError, String(error));
  assert.equal(error.code, code, error.message);
  if (message) assert.match(error.message, message);
  return error;
}
