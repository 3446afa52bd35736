// Small statistics helpers for the benches (figures, never pass/fail).

/** Nearest-rank percentile (p in 0..100) of an already sorted ascending array; NaN when empty. */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Nearest-rank percentile (p in 0..100); NaN when empty. Does not modify `xs`. */
export function percentile(xs: ArrayLike<number>, p: number): number {
  return percentileSorted(Float64Array.from(xs).sort(), p);
}

export interface Summary {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export function summarize(xs: ArrayLike<number>): Summary {
  const s = Float64Array.from(xs).sort();
  let sum = 0;
  for (const x of s) sum += x;
  return {
    n: s.length,
    min: s.length ? s[0] : NaN,
    p50: percentileSorted(s, 50),
    p90: percentileSorted(s, 90),
    p95: percentileSorted(s, 95),
    p99: percentileSorted(s, 99),
    p999: percentileSorted(s, 99.9),
    max: s.length ? s[s.length - 1] : NaN,
    mean: s.length ? sum / s.length : NaN,
  };
}

/** ours / baseline, NaN-safe (a zero or missing baseline gives NaN, printed as "n/a"). */
export function ratio(ours: number, baseline: number): number {
  return Number.isFinite(ours) && Number.isFinite(baseline) && baseline > 0 ? ours / baseline : NaN;
}

export const fmtMs = (ms: number, digits = 2): string => (Number.isFinite(ms) ? `${ms.toFixed(digits)} ms` : "n/a");
export const fmtX = (x: number, digits = 2): string => (Number.isFinite(x) ? `${x.toFixed(digits)}x` : "n/a");
export const fmtMB = (bytes: number, digits = 2): string => `${(bytes / 1024 / 1024).toFixed(digits)} MB`;
