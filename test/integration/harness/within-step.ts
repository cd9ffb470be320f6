// Striking inside one step of a container's life (issue-13-faults.test.ts): moatd runs with
// MOAT_TRACE=sandbox, which logs "step: <call> <id>" as each container call goes to the guest.
// The sandbox's QEMU is stopped (SIGSTOP) first, so the call cannot be answered; once the line
// is in moatd's log the call is in flight, and the fault strikes there, every time. No sleep
// decides anything: the wait is for the line.
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";

/** How long a step may take to show in moatd's log before the wait fails with the log (not at the file's timeout). */
const STEP_WAIT_MS = 120_000;

/** Waits until `log()`, from offset `from` on, holds `line`. */
export async function logged(line: string, from: number, log: () => string): Promise<void> {
  const deadline = Date.now() + STEP_WAIT_MS;
  while (!log().slice(from).includes(line)) {
    assert.ok(Date.now() < deadline, `no "${line}" in moatd's log within ${STEP_WAIT_MS / 1000} s:\n${log().slice(from).slice(-4000)}`);
    await sleep(50);
  }
}

export interface StepTarget {
  /** The sandbox's QEMU, stopped so that the step's call to the guest stays in flight. */
  qemuPid: number;
  /** moatd's log (of the workspace whose moatd serves the sandbox). */
  log: () => string;
}

/**
 * Stops the sandbox's QEMU, starts `operation`, waits until moatd logs `step` (its call to the
 * guest is out and cannot be answered), then runs `strike` (the fault); resolves with what the
 * operation ended with. `strike` decides whether QEMU is killed, continued, or left stopped.
 */
export async function withinStep<T>(target: StepTarget, step: string, operation: () => Promise<T>, strike: () => void | Promise<void>): Promise<T> {
  process.kill(target.qemuPid, "SIGSTOP");
  const from = target.log().length;
  const pending = operation();
  // Awaited below; an operation that fails before the step shows is reported by that await, not as unhandled.
  pending.catch(() => undefined);
  await logged(step, from, target.log);
  await strike();
  return pending;
}
