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

/**
 * Pairs of sets where one's labels include all of the other's. GitHub may then give the smaller
 * set's jobs to the larger set's runners (a bigger container than needed, and the job that runner
 * was made for waits for a new one). Legal, but worth telling the operator at start.
 */
export function overlappingLabelSets(sets: readonly LabelSetLike[]): Array<{ small: string; large: string }> {
  const out: Array<{ small: string; large: string }> = [];
  for (const a of sets)
    for (const b of sets) {
      if (a === b) continue;
      const have = new Set(b.labels.map((l) => l.toLowerCase()));
      if (a.labels.every((l) => have.has(l.toLowerCase())) && (a.labels.length < b.labels.length || a.name < b.name)) out.push({ small: a.name, large: b.name });
    }
  return out;
}
