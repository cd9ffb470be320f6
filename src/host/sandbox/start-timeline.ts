// Where a container's start goes (issue 14, docs/PERFORMANCE.md "Where a start's time goes"):
// the host's steps on moatd's clock (QEMU up, the agent answering, its identity, each agent
// call as the host waits for it) and the guest's steps as the agent reports them in its
// answers (GuestStep: mounts, the bundle, each crun call, the container's process), on the
// guest's monotonic clock. The two clocks are not compared: each list is placed from its own
// first step. moatd's `timing` tracer prints one container's timeline when its process has
// exited (bench/start-breakdown.ts reads it).
//
// The guest's steps are the guest's word, and only diagnostics: a list that does not make
// sense (too many steps, a name that is not short printable text, an end before its start, a
// step longer than an hour) is dropped whole and said in the timeline, never believed.

/** A step on a timeline: its start from the timeline's origin and its length, in ms. */
export interface TimedStep {
  name: string;
  atMs: number;
  ms: number;
}

/** A GuestStep as the agent sends it. */
export interface GuestStepMessage {
  name: string;
  startNs: bigint;
  endNs: bigint;
}

/** More steps than any request of the agent takes (create has six). */
const MAX_GUEST_STEPS = 16;
const MAX_NAME_BYTES = 64;
const PRINTABLE = /^[\x20-\x7e]+$/;
const MAX_STEP_NS = 3_600_000_000_000n;

export class StartTimeline {
  readonly host: TimedStep[] = [];
  readonly guest: TimedStep[] = [];
  /** Guest lists refused, with why. */
  readonly refused: string[] = [];
  private guestOriginNs: bigint | undefined;

  /** `originMs` is performance.now() when the start began (the request reached moatd). */
  constructor(readonly originMs: number = performance.now()) {}

  /** A host step that ran from `startMs` to `endMs` (performance.now() values). */
  hostStep(name: string, startMs: number, endMs: number): void {
    this.host.push({ name, atMs: round(startMs - this.originMs), ms: round(endMs - startMs) });
  }

  /** A sandbox VM's start (BootTimings.steps), after what came before QEMU started (directories, shares, the template's lookup). */
  bootSteps(steps: readonly { name: string; startMs: number; endMs: number }[]): void {
    if (steps.length === 0) return;
    this.hostStep("vm: before QEMU (state, shares, template)", this.originMs, steps[0]!.startMs); // length checked above
    for (const step of steps) this.hostStep(step.name, step.startMs, step.endMs);
  }

  /** A host step from the end of the last one (or the origin) to `endMs` (now by default; never before that end). */
  hostStepSinceLast(name: string, endMs = performance.now()): void {
    const last = this.host.at(-1);
    const startMs = last ? this.originMs + last.atMs + last.ms : this.originMs;
    this.hostStep(name, startMs, Math.max(startMs, endMs));
  }

  /** Runs `work` as a host step named `name`. */
  async timed<T>(name: string, work: () => Promise<T>): Promise<T> {
    const startMs = performance.now();
    try {
      return await work();
    } finally {
      this.hostStep(name, startMs, performance.now());
    }
  }

  /** Adds the steps the agent reported for `request` (CreateContainer, …), prefixed with it; refuses a list out of bounds. */
  guestSteps(request: string, steps: readonly GuestStepMessage[]): void {
    const wrong = outOfBounds(steps);
    if (wrong) {
      this.refused.push(`${request}: ${wrong}`);
      return;
    }
    for (const step of steps) {
      this.guestOriginNs ??= step.startNs;
      // A step before the first one seen (another request's clock was ahead): placed at 0.
      const atNs = step.startNs > this.guestOriginNs ? step.startNs - this.guestOriginNs : 0n;
      this.guest.push({ name: `${request}: ${step.name}`, atMs: nsToMs(atNs), ms: nsToMs(step.endNs - step.startNs) });
    }
  }

  /** The timeline as one JSON line, for the `timing` tracer. */
  toJson(): string {
    return JSON.stringify({ host: this.host, guest: this.guest, ...(this.refused.length > 0 ? { refused: this.refused } : {}) });
  }
}

/** Why a list of guest steps cannot be believed, or undefined if it can. */
export function outOfBounds(steps: readonly GuestStepMessage[]): string | undefined {
  if (steps.length > MAX_GUEST_STEPS) return `${steps.length} steps, more than ${MAX_GUEST_STEPS}`;
  for (const step of steps) {
    if (step.name.length > MAX_NAME_BYTES || !PRINTABLE.test(step.name)) return `a step name that is not 1 to ${MAX_NAME_BYTES} printable ASCII characters`;
    if (step.endNs < step.startNs) return `step "${step.name}" ends before it starts`;
    if (step.endNs - step.startNs > MAX_STEP_NS) return `step "${step.name}" is longer than an hour`;
  }
  return undefined;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function nsToMs(ns: bigint): number {
  return Number(ns / 100_000n) / 10;
}
