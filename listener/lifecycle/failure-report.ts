// A runner given up for good leaves the job it was made for waiting, through no fault of its
// author. That is said on the commit (a check run), once per job; a log line alone reaches nobody.
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { GitHubAdapter } from "../adapters/github/github.js";
import type { RunnerRow, Store } from "../store/store.js";
import { errMessage } from "./abortable.js";

export class FailureReport {
  /** Jobs already reported (in memory: a restart may report a job once more, harmlessly). */
  private readonly reportedJobs = new Set<number>();

  constructor(private readonly o: { store: Store; github: GitHubAdapter }) {}

  async report(r: RunnerRow, log: Logger): Promise<void> {
    const { store, github } = this.o;
    const job = r.madeForJob ? store.getJob(r.madeForJob) : undefined;
    if (!job || job.status !== "queued" || this.reportedJobs.has(job.jobId)) return;
    const sha = store.jobHeadSha(job.jobId);
    if (!sha) return;
    this.reportedJobs.add(job.jobId);
    // The error stays in our log: it names host paths, nodes and privileges, and a check run on a
    // public repository is readable by anyone. The commit gets a reference to find that log line.
    const ref = `${r.name}/${randomBytes(4).toString("hex")}`;
    log.error({ job: job.jobId, ref, attempts: r.attempts, lastError: r.lastError }, "runner given up: reporting an infrastructure failure on the commit");
    try {
      await github.reportInfraFailure(
        job.repo,
        sha,
        {
          jobId: job.jobId,
          title: `No runner yet for job ${job.jobId}: the CI infrastructure failed, not your code`,
          summary: [
            `pve-runners could not make a runner for job ${job.jobId} (labels: ${job.labels.join(", ")}) after ${r.attempts} attempts.`,
            "It keeps trying with backoff; the job stays queued until a runner takes it.",
            `Your operators have the details in the pve-runners log under reference \`${ref}\`.`,
          ].join("\n\n"),
        },
        job.installationId,
      );
      log.info({ job: job.jobId, ref }, "infrastructure failure reported on the commit (check run)");
    } catch (err) {
      log.warn({ job: job.jobId, ref, err: errMessage(err) }, "could not report the failure as a check run (App needs Checks: write)");
    }
  }
}
