// A cgroup v2 memory.events file: "<event> <count>" lines (low, high, max, oom, oom_kill,
// oom_group_kill), each count only ever rising (Documentation/admin-guide/cgroup-v2.rst).
// oom_kill counts the processes the OOM killer killed in the cgroup or below it.

/** The oom_kill count in a memory.events text; undefined if it has none (no memory controller). */
export function oomKillCount(text: string): number | undefined {
  const match = /^oom_kill (\d+)$/m.exec(text);
  if (!match) return undefined;
  const count = Number(match[1]); // group 1 exists when matched
  return Number.isSafeInteger(count) ? count : undefined;
}
