// Which sandbox the code running now works for, carried across awaits (AsyncLocalStorage), and
// moatd's last-resort guard that uses it: a promise rejected with nobody to handle it (a moat
// bug on some sandbox's path: the real paths handle their errors) is logged as that sandbox's
// fault, stack and all, instead of ending moatd and with it every other sandbox's control
// plane. Node runs 'unhandledRejection' listeners in the async context of the promise that
// was rejected, so the sandbox is known there. The log lines are rate-limited: a guest that
// found a way to trigger one must not fill moatd's log.
import { AsyncLocalStorage } from "node:async_hooks";

const scope = new AsyncLocalStorage<string>();

/** At most this many guard lines per window; the rest are counted and reported with the next window's first. */
const GUARD_LINES = 10;
const GUARD_WINDOW_MS = 60_000;

/** Runs `work` (and everything it starts, awaited or not) as sandbox `id`'s. */
export function inSandbox<T>(id: string, work: () => T): T {
  return scope.run(id, work);
}

/** The sandbox the running code works for, if any. */
export function currentSandbox(): string | undefined {
  return scope.getStore();
}

/**
 * Installs the guard for the whole process (moatd's entry point calls it once): unhandled
 * rejections are logged with the sandbox they belong to and do not end the process.
 */
export function containUnhandledRejections(log: (line: string) => void, nowMs: () => number = Date.now): (reason: unknown) => void {
  let windowStartMs = Number.NEGATIVE_INFINITY;
  let lines = 0;
  let suppressed = 0;
  const guard = (reason: unknown) => {
    const now = nowMs();
    if (now - windowStartMs >= GUARD_WINDOW_MS) {
      if (suppressed > 0) log(`moatd: ${suppressed} more unhandled rejections in the last ${GUARD_WINDOW_MS / 1000} s were not logged`);
      windowStartMs = now;
      lines = 0;
      suppressed = 0;
    }
    if (lines >= GUARD_LINES) {
      suppressed++;
      return;
    }
    lines++;
    const sandbox = currentSandbox();
    const what = reason instanceof Error ? (reason.stack ?? reason.message) : String(reason);
    log(`${sandbox ? `sandbox ${sandbox}` : "moatd"}: unhandled rejection (a moat bug; moatd goes on${sandbox ? ", the other sandboxes are not affected" : ""}): ${what}`);
  };
  process.on("unhandledRejection", guard);
  return guard;
}
