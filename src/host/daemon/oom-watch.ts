// A sandbox's OOM events, taken from its agent one at a time (OomService.NextOomEvent, a long
// poll) for as long as the agent connection lives, and handed to the daemon as they come.
// What the guest says is hostile: the daemon ignores ids that are not its containers in that
// sandbox; at most OOM_BURST events are taken per OOM_WINDOW_MS: once a window has had its
// share, the next event is not asked for until the window has passed (the agent keeps at most
// 64 unacknowledged events and skips the rest), so a guest that answers as fast as it can
// costs moatd OOM_BURST round trips a second, not a spinning loop; an answer that does not move
// forward ends the loop (the agent client refuses it); and the loop ends, traced, with the
// agent connection (the sandbox shut down or died). The poll never blocks another call: ttrpc
// multiplexes.
import { setTimeout as sleep } from "node:timers/promises";
import { settleWithin } from "../../shared/deadline.js";
import { tracer } from "../../shared/trace.js";

const trace = tracer("daemon");

/** Events taken per window, per sandbox: a guest can raise no more /tasks/oom than this. */
export const OOM_BURST = 10;
export const OOM_WINDOW_MS = 1_000;
/** How long an exit waits for the OOM events the agent queued before it (see caughtUp). */
const CATCH_UP_MS = 5_000;

/** Where the events come from: the sandbox's agent client. */
export interface OomSource {
  nextOomEvent(afterSequence: bigint): Promise<{ containerId: string; sequence: bigint }>;
}

export class OomWatch {
  private received = 0n;
  private ended = false;
  private readonly waiters = new Set<() => void>();
  private windowStartMs = Number.NEGATIVE_INFINITY;
  private inWindow = 0;

  /**
   * Starts taking events at once; `deliver` hears each container id, synchronously on arrival.
   * `nowMs` and `wait` are the clock and the timer (tests give their own).
   */
  constructor(
    source: OomSource,
    private readonly where: string,
    private readonly deliver: (containerId: string) => void,
    private readonly nowMs: () => number = Date.now,
    private readonly wait: (ms: number) => Promise<unknown> = (ms) => sleep(ms),
  ) {
    void this.loop(source);
  }

  /**
   * Resolves once the events up to `sequence` (WaitProcess's oom_sequence for an exit) have
   * been received and handed on, so that the exit is reported after them; or at once if the
   * loop has ended; or after `withinMs`, traced, if the guest named a sequence it never sends.
   */
  async caughtUp(sequence: bigint, withinMs = CATCH_UP_MS): Promise<void> {
    let check = () => undefined as void;
    const reached = new Promise<void>((resolve) => {
      check = () => {
        if (this.received < sequence && !this.ended) return;
        this.waiters.delete(check);
        resolve();
      };
    });
    this.waiters.add(check);
    check();
    if ((await settleWithin(reached.then(() => true), withinMs)) === undefined) {
      this.waiters.delete(check);
      trace(this.where, `OOM event ${sequence} not received within ${withinMs} ms (last ${this.received}); the exit goes on`);
    }
  }

  private async loop(source: OomSource): Promise<void> {
    try {
      for (;;) {
        await this.pace();
        const event = await source.nextOomEvent(this.received);
        this.received = event.sequence;
        this.inWindow++;
        try {
          this.deliver(event.containerId);
        } catch (error) {
          trace(this.where, `OOM event for ${event.containerId}: ${String(error)}`);
        }
        this.wakeWaiters();
      }
    } catch (error) {
      trace(this.where, `OOM events end: ${String(error)}`);
    } finally {
      this.ended = true;
      this.wakeWaiters();
    }
  }

  /** Returns when one more event may be taken: at once while the window has room, else once it has passed. */
  private async pace(): Promise<void> {
    let now = this.nowMs();
    if (now - this.windowStartMs < OOM_WINDOW_MS && this.inWindow >= OOM_BURST) {
      const waitMs = this.windowStartMs + OOM_WINDOW_MS - now;
      trace(this.where, `${OOM_BURST} OOM events within ${OOM_WINDOW_MS} ms: the next is asked for in ${waitMs} ms`);
      await this.wait(waitMs);
      now = this.nowMs();
    }
    if (now - this.windowStartMs >= OOM_WINDOW_MS) {
      this.windowStartMs = now;
      this.inWindow = 0;
    }
  }

  private wakeWaiters(): void {
    for (const check of [...this.waiters]) check();
  }
}
