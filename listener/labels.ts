// Which of our label sets serves a job. GitHub gives a job to any idle runner whose labels include
// ALL of the job's labels (case-insensitive), so a set serves a job when the job's labels are a
// subset of the set's. Among several, the smallest set wins: the most specific fit.

export interface LabelSetLike {
  readonly name: string;
  readonly labels: readonly string[];
}

export function matchLabelSet<T extends LabelSetLike>(jobLabels: readonly string[], sets: readonly T[]): T | undefined {
  if (jobLabels.length === 0) return undefined;
  const wanted = jobLabels.map((l) => l.toLowerCase());
  let best: T | undefined;
  for (const set of sets) {
    const have = new Set(set.labels.map((l) => l.toLowerCase()));
    if (wanted.every((l) => have.has(l)) && (!best || set.labels.length < best.labels.length)) best = set;
  }
  return best;
}
