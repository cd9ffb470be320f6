// Where the agent's time goes on a request (issue 14): each step on the guest's monotonic
// clock (Node's hrtime is CLOCK_MONOTONIC), returned to the host in the response as GuestStep
// messages. Two clock reads per step: cheap enough to stay on for every container.

export interface GuestStep {
  name: string;
  startNs: bigint;
  endNs: bigint;
}

/** The guest's monotonic clock, in nanoseconds. */
export function nowNs(): bigint {
  return process.hrtime.bigint();
}

/** Runs `work` and appends how long it took to `steps` as `name`, also when it fails (a failed request's steps are not sent). */
export async function timed<T>(steps: GuestStep[], name: string, work: () => Promise<T> | T): Promise<T> {
  const startNs = nowNs();
  try {
    return await work();
  } finally {
    steps.push({ name, startNs, endNs: nowNs() });
  }
}
