// Deliveries become job events. Each recorded `workflow_job` delivery is applied once (its
// "processed" mark is in the same commit): the job's row changes, and a delivery that names a
// runner of ours moves that runner (busy, done). Which runner ran a job is what GitHub names in
// the delivery, never the job the runner was made for: GitHub gives a job to ANY idle runner whose
// labels match. The name counts only from a delivery of the runner's own scope, of an allowed
// repository, naming its registration id (runner-match.ts).
import type { Logger } from "pino";
import { WorkflowJobPayload } from "../http/webhook.js";
import { GroupCommit } from "../store/group-commit.js";
import { repoAllowed } from "./allowlist.js";
import { checkJobAtGitHub, heldStatus } from "./job-status.js";
import { matchLabelSet } from "./labels.js";
import { whyNotThisRunner } from "./runner-match.js";
import { errMessage } from "./abortable.js";
import type { PipelineDeps } from "./pipeline-deps.js";

/** What applying events needs from the rest of the lifecycle. */
export interface JobEventsHooks {
  /** Demand may have changed: count it again. */
  reconcile(): void;
  /** A delivery moved this runner: its boot (if booting) ended, and its driver acts on the new state. */
  runnerMoved(name: string, wasBooting: boolean): void;
  stopped(): boolean;
}

export class JobEvents {
  /**
   * Deliveries handed on within 10 ms of each other are applied together: one commit for all their
   * events and "processed" marks, then one rebalancing pass if any of them concerns us.
   */
  private readonly deliveries = new GroupCommit<{ guid: string; payload?: WorkflowJobPayload }, boolean>(
    (items) => this.applyDeliveries(items),
    // Nobody waits on this commit (the webhook is answered): 10 ms of deliveries share one.
    { delayMs: 10 },
  );
  /** Jobs whose deliveries disagreed (queued vs waiting) in the batch being applied. */
  private disputed: number[] = [];
  /** Disputes being asked about now; a job disputed again meanwhile is asked once more after. */
  private readonly settling = new Map<number, boolean>();
  /** Questions to GitHub in flight (stop() waits for them: their answers go to the store). */
  readonly asking = new Set<Promise<void>>();

  constructor(
    private readonly d: Pick<PipelineDeps, "store" | "github" | "metrics" | "settings">,
    private readonly log: Logger,
    private readonly hooks: JobEventsHooks,
  ) {}

  /**
   * Applies one recorded delivery (idempotent), then rebalances supply against demand. `payload`:
   * the route's own check of the body just recorded, which spares reading and parsing it again.
   */
  async handleDelivery(guid: string, payload?: WorkflowJobPayload): Promise<void> {
    await this.deliveries.add({ guid, payload });
  }

  /** Asks GitHub which of queued/waiting a disputed job is; one question per job at a time. */
  settleDispute(jobId: number): void {
    if (this.settling.has(jobId)) {
      this.settling.set(jobId, true);
      return;
    }
    this.settling.set(jobId, false);
    const asking = (async () => {
      do {
        this.settling.set(jobId, false);
        if (this.hooks.stopped()) return;
        const { changed } = await checkJobAtGitHub({ store: this.d.store, github: this.d.github, logger: this.log }, jobId);
        if (changed && !this.hooks.stopped()) this.hooks.reconcile();
      } while (this.settling.get(jobId));
    })()
      // Still disputed in the store: the next start or recovery pass asks again.
      .catch((err) => this.log.warn({ job: jobId, err: errMessage(err) }, "job status dispute not settled"))
      .finally(() => {
        this.settling.delete(jobId);
        this.asking.delete(asking);
      });
    this.asking.add(asking);
  }

  /** One batch of deliveries: their events and "processed" marks in one commit, then one rebalancing pass. */
  private applyDeliveries(items: Array<{ guid: string; payload?: WorkflowJobPayload }>): boolean[] {
    // Not synced: after a power loss a lost commit is made again from the durable deliveries
    // (resume re-applies those not marked processed), and any later synced commit carries it.
    const relevant = this.d.store.transaction(() => items.map((d) => this.applyDelivery(d.guid, d.payload)), { sync: false });
    // Deliveries that are not ours (other labels, other repositories) change no demand.
    if (relevant.some(Boolean)) this.hooks.reconcile();
    // Asked after the commit: the dispute is durable before the question goes out.
    for (const jobId of this.disputed.splice(0)) this.settleDispute(jobId);
    return relevant;
  }

  /** One delivery's event and its "processed" mark; true when it concerns us. Never throws: a bad one must not sink its batch. */
  private applyDelivery(guid: string, checked?: WorkflowJobPayload): boolean {
    let payload: () => WorkflowJobPayload | null;
    if (checked) {
      if (!this.d.store.isUnprocessedDelivery(guid)) return false;
      payload = () => checked;
    } else {
      const delivery = this.d.store.unprocessedDelivery(guid);
      if (!delivery) return false;
      payload = () => {
        const parsed = WorkflowJobPayload.safeParse(JSON.parse(delivery.payload));
        return parsed.success ? parsed.data : null;
      };
    }
    let relevant = false;
    try {
      // A savepoint of its own: a failure rolls back this delivery's writes only.
      this.d.store.transaction(() => {
        const p = payload();
        if (p) relevant = this.applyJobEvent(p, guid);
        else this.log.warn({ delivery: guid }, "stored delivery no longer parses: skipped");
      });
    } catch (err) {
      this.log.error({ delivery: guid, err: errMessage(err) }, "delivery could not be applied: skipped");
    }
    this.d.store.markProcessed(guid);
    return relevant;
  }

  /** Records one job event; true when it may change demand or a runner of ours. */
  private applyJobEvent(p: WorkflowJobPayload, guid: string): boolean {
    const wj = p.workflow_job;
    const repo = p.repository.full_name;
    const log = this.log.child({ job: wj.id, delivery: guid, action: p.action, repo });
    const set = matchLabelSet(wj.labels, this.d.settings.labelSets);
    let labelSet: string | null = set?.name ?? null;
    if (!repoAllowed(repo, this.d.settings.allow)) {
      if (p.action === "queued") log.info({ labels: wj.labels }, "job ignored: repository not in the allowlist");
      labelSet = null;
    } else if (!set && p.action === "queued") {
      log.info({ labels: wj.labels }, "job ignored: its labels match no label set of ours");
    }
    const scope = this.d.settings.runnerScope === "org" ? `org:${p.repository.owner.login}` : `repo:${repo}`;
    const before = this.d.store.getJob(wj.id);
    // The job's status, not the action: a `queued` delivery may say the job waits for an approval.
    const status = heldStatus(wj.status) ?? p.action;
    // A job's runs-on labels are fixed, so "ours or not" is decided by the first event we see.
    const { job, changed, disputed } = this.d.store.applyJobEvent({
      jobId: wj.id,
      runId: wj.run_id,
      runAttempt: wj.run_attempt,
      repo,
      owner: p.repository.owner.login,
      installationId: p.installation?.id ?? null,
      labels: wj.labels,
      labelSet,
      scope: labelSet ? scope : null,
      status,
      runnerName: status === "in_progress" || status === "completed" ? (wj.runner_name ?? null) : null,
      conclusion: wj.conclusion ?? null,
    });
    const m = this.d.metrics;
    if (m) {
      m.jobEvent(p.action, !changed ? "unchanged" : job.labelSet ? "ours" : !repoAllowed(repo, this.d.settings.allow) ? "repo-not-allowed" : "not-our-labels");
      if (changed && job.labelSet && status === "in_progress" && before) m.phase("queued_to_started", (Date.now() - before.createdAt) / 1000);
      if (changed && job.labelSet && status === "completed" && before?.status === "in_progress") m.phase("job_run", (Date.now() - before.updatedAt) / 1000);
    }
    if (disputed) {
      log.info({ held: job.status, delivered: status }, "deliveries disagree whether the job is queued or waiting: asking GitHub");
      this.disputed.push(wj.id);
    } else if (!changed) log.debug("event changes nothing (duplicate or out of order)");
    else if (job.labelSet) log.info({ status: job.status, runner: job.runnerName ?? undefined }, "job updated");

    // The runner GitHub names is the one that ran the job, whatever job it was made for.
    const runnerName = status === "in_progress" || status === "completed" ? wj.runner_name : null;
    const runner = runnerName ? this.d.store.getRunner(runnerName) : undefined;
    if (!runner) return changed && job.labelSet !== null;
    // A name is unique only within a scope: another repository may have a runner of this name.
    const notOurs = whyNotThisRunner(runner, { repo, owner: p.repository.owner.login, runnerId: wj.runner_id }, this.d.settings.allow);
    if (notOurs) {
      log.warn({ runner: runner.name, runnerScope: runner.scope, runnerId: wj.runner_id ?? undefined, ourRunnerId: runner.githubRunnerId ?? undefined, why: notOurs }, "delivery names a runner of ours but cannot be about it: ignored");
      return changed && job.labelSet !== null;
    }
    if (status === "in_progress") {
      if (this.d.store.setRunnerState(runner.name, "busy", { jobId: wj.id }, ["requested", "provisioning", "booting", "idle"])) {
        log.info({ runner: runner.name, madeFor: runner.madeForJob }, "runner busy");
      }
    } else if (this.d.store.setRunnerState(runner.name, "done", { jobId: wj.id }, ["requested", "provisioning", "booting", "idle", "busy"])) {
      log.info({ runner: runner.name, conclusion: wj.conclusion }, "runner finished its job");
    }
    this.hooks.runnerMoved(runner.name, runner.state === "booting");
    return true;
  }
}
