/** One figure in bench/results.json. */
export interface BenchRow {
  /** What was measured, as a reader would say it. */
  name: string;
  value: number;
  /** `ms`, `ratio`, … */
  unit: string;
  /** The figure the project aims for; see `met` for which side of it is good. */
  target: number;
  /** Whether `value` is on the good side of `target`. */
  met: boolean;
}

/** The value at quantile `q` (0..1) of `values`, nearest-rank. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) throw new Error('quantile of no values');
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}
