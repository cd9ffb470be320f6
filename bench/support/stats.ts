// Summary statistics of a benchmark's samples.

export interface Summary {
  runs: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** 90th and 95th percentiles, nearest-rank. */
  p90Ms: number;
  p95Ms: number;
  samplesMs: number[];
}

export function percentile(sorted: number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[rank]!; // rank is clamped to the array's bounds
}

export function summarize(samplesMs: number[]): Summary {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const middle = sorted.length / 2;
  const median = sorted.length % 2 === 1 ? sorted[Math.floor(middle)]! : (sorted[middle - 1]! + sorted[middle]!) / 2; // non-empty: callers pass ≥ 1 sample
  const round = (value: number) => Math.round(value * 10) / 10;
  return {
    runs: sorted.length,
    medianMs: round(median),
    minMs: round(sorted[0]!),
    maxMs: round(sorted[sorted.length - 1]!),
    p90Ms: round(percentile(sorted, 0.9)),
    p95Ms: round(percentile(sorted, 0.95)),
    samplesMs: samplesMs.map(round),
  };
}
