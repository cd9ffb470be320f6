// Waiting with a limit, without leaving a timer behind that keeps the process alive.

/** Resolves with the promise's value, or with undefined once `ms` have passed. */
export async function settleWithin<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs `attempt` until it succeeds. A failure that `transient` accepts (a busy mount, a cgroup
 * whose last thread is still going) is tried again after `pollMs`, for up to `limitMs` in
 * all; any other failure, or the last one, is thrown.
 */
export async function retryWhile<T>(attempt: () => Promise<T>, transient: (error: unknown) => boolean, limitMs: number, pollMs: number): Promise<T> {
  const deadline = performance.now() + limitMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (!transient(error) || performance.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }
}
