// Missed-webhook recovery. GitHub loses deliveries and never retries by itself, so on start and on
// every sweep: (1) failed deliveries since the last pass are redelivered (same GUID: the inbox
// deduplicates), and (2) jobs GitHub still holds as queued in repositories seen recently, that the
// inbox has never heard of, are fed into demand through the inbox like any delivery; (3) jobs held
// as queued or waiting for long, or disputed, are checked against GitHub's job API.
import type { Logger } from "pino";
import type { GitHubAdapter } from "../listener/adapters/github/github.js";
import type { Store } from "../listener/store/store.js";
import { checkJobAtGitHub } from "../listener/lifecycle/job-status.js";

export interface RecoveryDeps {
  store: Store;
  github: GitHubAdapter;
  logger: Logger;
  /** Hands a recorded delivery to the pipeline, as the webhook route does. */
  onDelivery: (guid: string) => Promise<void>;
  /** Re-counts demand after corrections. */
  reconcile?: () => Promise<void>;
}

export interface RecoveryReport {
  deliveriesSeen: number;
  redelivered: number;
  reposChecked: number;
  queuedSeen: number;
  jobsFed: number;
  staleFixed: number;
  errors: string[];
}

const ok = (code: number) => code >= 200 && code < 300;

/**
 * Redelivers workflow_job deliveries that failed since `sinceMs` and that we never recorded.
 * A GUID some attempt of which succeeded, or that the inbox holds, is left alone; each GUID is
 * redelivered at most once per pass.
 */
export async function redeliverFailed(d: RecoveryDeps, sinceMs: number, report: RecoveryReport): Promise<void> {
  const attempts = await d.github.deliveriesSince(sinceMs);
  report.deliveriesSeen += attempts.length;
  const byGuid = new Map<string, typeof attempts>();
  for (const a of attempts.filter((x) => x.event === "workflow_job")) byGuid.set(a.guid, [...(byGuid.get(a.guid) ?? []), a]);
  for (const [guid, tries] of byGuid) {
    if (tries.some((t) => ok(t.statusCode)) || d.store.hasDelivery(guid)) continue;
    const newest = tries[0]; // newest first
    try {
      await d.github.redeliver(newest.id);
      report.redelivered++;
      d.logger.info({ delivery: guid, action: newest.action, status: newest.statusCode }, "failed delivery redelivered");
    } catch (err) {
      report.errors.push(`redeliver ${guid}: ${(err as Error).message}`);
    }
  }
}

/** Feeds queued jobs the inbox has never seen, for the given repositories, into demand. */
export async function feedUnseenQueuedJobs(d: RecoveryDeps, repos: Array<{ repo: string; installationId: number | null }>, report: RecoveryReport): Promise<void> {
  for (const { repo, installationId } of repos) {
    let queued;
    try {
      queued = await d.github.queuedJobs(repo, installationId);
    } catch (err) {
      report.errors.push(`queued jobs of ${repo}: ${(err as Error).message}`);
      continue;
    }
    report.reposChecked++;
    report.queuedSeen += queued.length;
    for (const j of queued) {
      if (d.store.getJob(j.id)) continue;
      const [owner] = repo.split("/", 1);
      // Recorded in the inbox like a delivery, so it is durable and goes through the same checks
      // (allowlist, label sets); a real `queued` delivery arriving later changes nothing.
      const guid = `reconciled-${j.id}`;
      const payload = {
        action: "queued",
        workflow_job: { id: j.id, run_id: j.runId, run_attempt: j.runAttempt, status: "queued", labels: j.labels, runner_name: null, conclusion: null },
        repository: { full_name: repo, owner: { login: owner } },
        ...(installationId ? { installation: { id: installationId } } : {}),
      };
      if (!d.store.recordDelivery({ guid, event: "workflow_job", action: "queued", jobId: j.id, payload: JSON.stringify(payload) })) continue;
      report.jobsFed++;
      d.logger.info({ job: j.id, repo, labels: j.labels }, "queued job the webhooks never told us of: fed into demand");
      await d.onDelivery(guid);
    }
  }
}

/**
 * Jobs we hold as queued or waiting for longer than `staleMs`, and every disputed one, are asked
 * about: a lost `completed` (a job cancelled while queued) would otherwise count as demand for ever
 * and keep making runners, and a lost (or overtaken) approval would leave a job waiting for ever.
 */
export async function refreshStaleQueued(d: RecoveryDeps, staleMs: number, report: RecoveryReport, now = Date.now()): Promise<void> {
  for (const j of d.store.unstartedJobs()) {
    if (j.disputedAt === null && now - j.updatedAt < staleMs) continue;
    const r = await checkJobAtGitHub(d, j.jobId);
    if (r.changed) report.staleFixed++;
    if (r.error) report.errors.push(`status of job ${j.jobId}: ${r.error}`);
  }
}

/** Repositories with a job seen within `windowMs`: where a lost `queued` is likely to be. */
export function recentRepos(store: Store, windowMs: number, now = Date.now()): Array<{ repo: string; installationId: number | null }> {
  const out = new Map<string, number | null>();
  for (const j of store.jobsUpdatedSince(now - windowMs)) if (!out.has(j.repo)) out.set(j.repo, j.installationId);
  return [...out].map(([repo, installationId]) => ({ repo, installationId }));
}

export class Recovery {
  private lastPass: number | null = null;
  constructor(
    private readonly d: RecoveryDeps,
    private readonly o: { lookbackMs: number; repoWindowMs: number; staleQueuedMs: number; alwaysRepos?: () => string[] },
  ) {}

  /** One pass; the first looks back `lookbackMs`, later ones to the previous pass (with overlap). */
  async run(): Promise<RecoveryReport> {
    const started = Date.now();
    const report: RecoveryReport = { deliveriesSeen: 0, redelivered: 0, reposChecked: 0, queuedSeen: 0, jobsFed: 0, staleFixed: 0, errors: [] };
    const since = this.lastPass === null ? started - this.o.lookbackMs : this.lastPass - 60_000;
    try {
      await redeliverFailed(this.d, since, report);
    } catch (err) {
      report.errors.push(`list deliveries: ${(err as Error).message}`);
    }
    const repos = recentRepos(this.d.store, this.o.repoWindowMs);
    for (const repo of this.o.alwaysRepos?.() ?? []) if (!repos.some((r) => r.repo.toLowerCase() === repo.toLowerCase())) repos.push({ repo, installationId: null });
    await feedUnseenQueuedJobs(this.d, repos, report);
    await refreshStaleQueued(this.d, this.o.staleQueuedMs, report);
    if (report.staleFixed) await this.d.reconcile?.();
    if (report.errors.length === 0) this.lastPass = started;
    this.d.logger.info({ ...report, errors: report.errors.length }, "missed-webhook recovery pass");
    return report;
  }
}
