// What the admin API and the status page show: one snapshot of the listener's state.
import type { JobRow, RunnerRow } from "../store/store.js";
import type { RunnerFreshnessSnapshot } from "../templates/runner-freshness.js";

export interface SweepActionRecord {
  at: number;
  kind: string;
  /** Runner name, vmid or directory the action was about. */
  target: string;
  reason: string;
  dryRun: boolean;
}

export interface ErrorRecord {
  at: number;
  runner?: string;
  job?: number;
  message: string;
}

export interface StatusSnapshot {
  version: string;
  startedAt: number;
  now: number;
  /** Draining: no new runners are made; running ones finish. */
  draining: boolean;
  githubBaseUrl: string;
  /** "github.com" links: https://github.com/<repo>/actions/runs/<runId>/job/<jobId>. */
  webBaseUrl: string;
  counts: { queuedJobs: number; liveRunners: number; runnersByState: Record<string, number> };
  /** Live runners first (newest first), then the most recent finished ones. */
  runners: RunnerRow[];
  /** Clone lanes by template key ("node/vmid"). */
  lanes: Record<string, { running: number; waiting: number }>;
  /** The most recent jobs of ours, newest first. */
  jobs: JobRow[];
  sweeps: SweepActionRecord[];
  errors: ErrorRecord[];
  /** Each template copy's runner against actions/runner's releases; null when runnerFreshness is off. */
  runnerFreshness?: RunnerFreshnessSnapshot | null;
}

/** Where a job's page is on GitHub's web UI, from the API base URL (github.com or GHES). */
export function webBaseUrlOf(apiBaseUrl: string): string {
  const u = new URL(apiBaseUrl);
  if (u.hostname === "api.github.com") return "https://github.com";
  // GHES: https://HOST/api/v3 → https://HOST
  return `${u.protocol}//${u.host}`;
}

export function jobUrl(s: Pick<StatusSnapshot, "webBaseUrl">, j: Pick<JobRow, "repo" | "runId" | "jobId">): string {
  return `${s.webBaseUrl}/${j.repo}/actions/runs/${j.runId}/job/${j.jobId}`;
}

/** A fixed keep-the-last-N list for sweep actions and errors. */
export class Recent<T> {
  private readonly items: T[] = [];
  constructor(private readonly max: number) {}
  push(item: T): void {
    this.items.unshift(item);
    if (this.items.length > this.max) this.items.length = this.max;
  }
  list(): T[] {
    return [...this.items];
  }
}
