// What a job's status means for demand, and how a disputed one is settled by asking GitHub.
//
// Status follows `workflow_job.status`, not the delivery's action: a `queued` delivery can carry
// status `waiting` (a job held for a deployment approval; @octokit/webhooks-examples has the real
// one). `waiting` and `queued` rank the same, so when deliveries disagree about them (reordered, or
// an old one redelivered after the approval) only GitHub's job API can say which is current.
import type { Logger } from "pino";
import type { JobState } from "../adapters/github/github.js";
import type { JobStatus, Store } from "../store/store.js";

/**
 * How we hold a job GitHub reports in `status`. Only `queued` is demand. The job API's `requested`
 * and `pending` (https://docs.github.com/rest/actions/workflow-jobs#get-a-job-for-a-workflow-run)
 * are not runnable yet either: held as waiting, GitHub sends `queued` when they are.
 */
export function heldStatus(status: string | undefined): JobStatus | undefined {
  switch (status) {
    case "queued":
    case "in_progress":
    case "completed":
      return status;
    case "waiting":
    case "requested":
    case "pending":
      return "waiting";
    default:
      return undefined;
  }
}

export interface JobStatusCheckDeps {
  store: Store;
  github: { jobStatus(repo: string, jobId: number, installationId?: number | null): Promise<JobState | undefined> };
  logger: Logger;
}

/**
 * Asks GitHub for a job's status and holds what it says; a dispute is settled by the answer.
 * `changed`: the job's status moved (demand may differ). `error`: GitHub could not be asked; a
 * disputed job is then held as queued (a spare runner is cheaper than a stranded job) and stays
 * disputed, so recovery asks again.
 */
export async function checkJobAtGitHub(d: JobStatusCheckDeps, jobId: number): Promise<{ changed: boolean; error?: string }> {
  const job = d.store.getJob(jobId);
  if (!job) return { changed: false };
  let live: JobState | undefined;
  try {
    live = await d.github.jobStatus(job.repo, job.jobId, job.installationId);
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    const now = d.store.getJob(jobId)!;
    if (now.disputedAt !== null && now.status === "waiting") {
      d.store.setJobStatus(jobId, "queued");
      d.logger.warn({ job: jobId, repo: job.repo, err: error }, "job status disputed (queued or waiting) and GitHub cannot be asked: held as queued until recovery asks again");
      return { changed: true, error };
    }
    d.logger.warn({ job: jobId, repo: job.repo, err: error, disputed: now.disputedAt !== null }, "could not ask GitHub for a job's status: recovery asks again");
    return { changed: false, error };
  }
  const before = d.store.getJob(jobId)!;
  // Unknown to GitHub (404): no runner will ever be asked for it.
  const held = live === undefined ? "completed" : (heldStatus(live) ?? before.status);
  const after = d.store.settleJobStatus(jobId, held, live === undefined ? "unknown" : null) ?? before;
  const log = { job: jobId, repo: job.repo, was: before.status, status: after.status, github: live ?? "not found", disputed: before.disputedAt !== null };
  if (after.status === before.status) {
    if (before.disputedAt !== null) d.logger.info(log, "job status dispute settled by GitHub: unchanged");
    return { changed: false };
  }
  d.logger.info(log, "job status corrected from GitHub");
  return { changed: true };
}
