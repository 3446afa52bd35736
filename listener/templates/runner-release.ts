// How fresh the runner baked into a template is, against GitHub's releases of actions/runner.
//
// GitHub's rule (docs "Self-hosted runners reference" → "Runner software updates on self-hosted
// runners", github/docs content/actions/reference/runners/self-hosted-runners.md and its warning
// data/reusables/actions/self-hosted-runner-update-warning.md): "you will be
// required to update your runner version within 30 days of a new version being made available";
// "Any updates released for the software, including major, minor, or patch releases, are considered
// as an available update. If you do not perform a software update within 30 days, the GitHub
// Actions service will not queue jobs to your runner." So the 30 days run from the publication of
// the first release newer than the template's runner (the one that superseded it), not from the
// latest one. A critical security release can stop queueing at once; no clock predicts that.
//
// Days here are 24-hour periods counted from the release's instant (published_at is UTC, whole
// seconds); no calendar or time zone enters.

export const CUTOFF_DAYS = 30;
/** Warnings start this many days before the cutoff. */
export const WARN_DAYS = 14;
export const DAY_MS = 86_400_000;

/** The tag a template carries for the runner it baked in: a valid PVE tag ([a-z0-9_][a-z0-9_+.-]*). */
export const RUNNER_TAG_PREFIX = "runner-";
const VERSION = /^v?(\d+)\.(\d+)\.(\d+)$/;

export function runnerVersionTag(version: string): string {
  if (!parseRunnerVersion(version)) throw new Error(`not a runner version: ${version}`);
  return `${RUNNER_TAG_PREFIX}${version.replace(/^v/, "")}`;
}

/** [major, minor, patch] of "2.336.0" or "v2.336.0"; null for anything else. */
export function parseRunnerVersion(v: string): [number, number, number] | null {
  const m = VERSION.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

/** <0, 0, >0 like a comparator; both must parse. */
export function compareRunnerVersions(a: string, b: string): number {
  const x = parseRunnerVersion(a);
  const y = parseRunnerVersion(b);
  if (!x || !y) throw new Error(`not a runner version: ${!x ? a : b}`);
  return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
}

/** The runner version a template's tags name (PVE lists them ';'-joined), or null. */
export function runnerVersionOfTags(tags: string | undefined): string | null {
  for (const t of (tags ?? "").split(/[;,\s]+/)) {
    if (!t.toLowerCase().startsWith(RUNNER_TAG_PREFIX)) continue;
    const v = t.slice(RUNNER_TAG_PREFIX.length);
    if (parseRunnerVersion(v)) return v.replace(/^v/i, "");
  }
  return null;
}

/** One published release of actions/runner, as the releases API gives it. */
export interface RunnerRelease {
  version: string;
  /** published_at, ms since the epoch. */
  publishedAt: number;
}

/**
 * A release from the API's JSON, or null when it is a draft, a prerelease (not an update GitHub
 * offers), unpublished, or its tag is not a version.
 */
export function releaseOf(r: { tag_name?: unknown; published_at?: unknown; draft?: unknown; prerelease?: unknown }): RunnerRelease | null {
  if (r.draft === true || r.prerelease === true) return null;
  if (typeof r.tag_name !== "string" || !parseRunnerVersion(r.tag_name)) return null;
  if (typeof r.published_at !== "string") return null;
  const at = Date.parse(r.published_at);
  if (!Number.isFinite(at)) return null;
  return { version: r.tag_name.trim().replace(/^v/, ""), publishedAt: at };
}

/** The first release (by publication) newer than `version`: the day it came out starts the 30 days. */
export function supersedingRelease(version: string, releases: readonly RunnerRelease[]): RunnerRelease | null {
  let first: RunnerRelease | null = null;
  for (const r of releases) if (compareRunnerVersions(r.version, version) > 0 && (!first || r.publishedAt < first.publishedAt)) first = r;
  return first;
}

export type FreshnessLevel = "current" | "behind" | "warning" | "expired" | "unknown";

export interface Freshness {
  level: FreshnessLevel;
  /** The release that superseded the template's runner, if any. */
  supersededBy: RunnerRelease | null;
  /** ms since supersededBy came out (0 while current). */
  behindMs: number;
  /** When GitHub stops queueing jobs to this runner (supersededBy + 30 days), or null while current. */
  cutoffAt: number | null;
  /** ms until cutoffAt (negative past it); the whole window (30 days) while current. */
  leftMs: number;
}

/**
 * Where a template's runner stands at `now`. `releases` are the known published releases (the
 * latest among them). A runner newer than every known release (a release GitHub has not listed yet)
 * is current. Unknown when the template's version is not known.
 */
export function assessFreshness(version: string | null, releases: readonly RunnerRelease[], now: number): Freshness {
  if (!version || !parseRunnerVersion(version)) return { level: "unknown", supersededBy: null, behindMs: 0, cutoffAt: null, leftMs: CUTOFF_DAYS * DAY_MS };
  const by = supersedingRelease(version, releases);
  if (!by) return { level: "current", supersededBy: null, behindMs: 0, cutoffAt: null, leftMs: CUTOFF_DAYS * DAY_MS };
  const cutoffAt = by.publishedAt + CUTOFF_DAYS * DAY_MS;
  const leftMs = cutoffAt - now;
  // "more than 30 days behind": at the cutoff instant itself GitHub still queues.
  const level: FreshnessLevel = leftMs < 0 ? "expired" : leftMs <= WARN_DAYS * DAY_MS ? "warning" : "behind";
  return { level, supersededBy: by, behindMs: Math.max(0, now - by.publishedAt), cutoffAt, leftMs };
}

/** Whole days in ms, rounded toward zero: 29 d 23 h is 29 days (so "days left" never overstates). */
export function wholeDays(ms: number): number {
  return Math.trunc(ms / DAY_MS);
}
