// GitHub's job scheduler for self-hosted runners (docs.github.com, "Using self-hosted runners in a workflow"): a queued job goes to ANY
// idle online runner in scope whose labels include all of the job's labels; jobs are
// served FIFO; an ephemeral runner runs one job and is then removed.
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { isoNow, type SimClock } from "./clock.js";
import { GitHubError, notFound } from "./errors.js";
import { decodeJitConfig } from "./jit.js";
import { scopeKey, type RunnerRegistry, type SimRunner } from "./runners.js";
import type { Repo, SimWorld } from "./world.js";

export type JobStatus = "waiting" | "queued" | "in_progress" | "completed";
export type JobConclusion = null | "success" | "failure" | "cancelled";
export type JobAction = "queued" | "waiting" | "in_progress" | "completed";

export interface SimJob {
  id: number;
  runId: number;
  runAttempt: number;
  repo: string;
  name: string;
  workflowName: string;
  headBranch: string;
  headSha: string;
  labels: string[];
  status: JobStatus;
  conclusion: JobConclusion;
  runnerId: number | null;
  runnerName: string | null;
  runnerGroupId: number | null;
  runnerGroupName: string | null;
  createdAt: string;
  startedAt: string;
  completedAt: string | null;
  durationMs: number;
  environmentGated: boolean;
}

export interface SimRun {
  id: number;
  repo: string;
  runNumber: number;
  workflowName: string;
  headBranch: string;
  headSha: string;
  createdAt: string;
  updatedAt: string;
  jobIds: number[];
}

export interface CreateJobInput {
  repo: string;
  labels: string[];
  /** Simulated run time once a runner picks the job up (default 20 s). */
  durationMs?: number;
  workflowName?: string;
  jobName?: string;
  /** Job waits for an environment approval first (queued→waiting→queued: docs.github.com, "Managing environments for deployment", required reviewers). */
  environmentGated?: boolean;
  /** Environment-gated only: auto-approve after this long (default 3 s); `null` waits for POST …/approve. */
  approveAfterMs?: number | null;
  /** Environment-gated only: the `waiting` delivery goes out this long after the first `queued` (default 0). */
  waitingAfterMs?: number;
}

export interface SchedulerTimings {
  jitExpiryMs: number;
  /** How long GitHub takes to notice a busy runner vanished and fail its job. */
  lostRunnerMs: number;
  defaultJobMs: number;
}

export type JobEventSink = (action: JobAction, job: SimJob, repo: Repo) => void;

export class Scheduler {
  private readonly jobsById = new Map<number, SimJob>();
  private readonly runsById = new Map<number, SimRun>();
  private readonly runNumbers = new Map<string, number>();
  private readonly cancelTimers = new Map<number, () => void>();
  private nextJobId = 31000;
  private nextRunId = 81000;
  private assignQueued = false;

  constructor(
    private readonly world: SimWorld,
    private readonly runners: RunnerRegistry,
    private readonly clock: SimClock,
    private readonly timings: SchedulerTimings,
    private readonly emit: JobEventSink,
    private readonly log: Logger,
  ) {}

  jobs(): SimJob[] {
    return [...this.jobsById.values()];
  }

  job(id: number): SimJob | undefined {
    return this.jobsById.get(id);
  }

  runs(): SimRun[] {
    return [...this.runsById.values()];
  }

  run(id: number): SimRun | undefined {
    return this.runsById.get(id);
  }

  createJob(input: CreateJobInput): SimJob {
    const repo = this.world.repo(input.repo);
    if (!repo) throw new GitHubError(422, `unknown repo ${input.repo}`);
    if (!Array.isArray(input.labels) || input.labels.length === 0) throw new GitHubError(422, "labels required");
    const now = isoNow();
    const runNumber = (this.runNumbers.get(repo.fullName) ?? 0) + 1;
    this.runNumbers.set(repo.fullName, runNumber);
    const run: SimRun = {
      id: this.nextRunId++,
      repo: repo.fullName,
      runNumber,
      workflowName: input.workflowName ?? "CI",
      headBranch: "main",
      headSha: randomBytes(20).toString("hex"),
      createdAt: now,
      updatedAt: now,
      jobIds: [],
    };
    const gated = input.environmentGated ?? false;
    const job: SimJob = {
      id: this.nextJobId++,
      runId: run.id,
      runAttempt: 1,
      repo: repo.fullName,
      name: input.jobName ?? "build",
      workflowName: run.workflowName,
      headBranch: run.headBranch,
      headSha: run.headSha,
      labels: [...input.labels],
      status: gated ? "waiting" : "queued",
      conclusion: null,
      runnerId: null,
      runnerName: null,
      runnerGroupId: null,
      runnerGroupName: null,
      createdAt: now,
      // GitHub reports started_at = created_at until a runner starts the job.
      startedAt: now,
      completedAt: null,
      durationMs: input.durationMs ?? this.timings.defaultJobMs,
      environmentGated: gated,
    };
    run.jobIds.push(job.id);
    this.runsById.set(run.id, run);
    this.jobsById.set(job.id, job);
    this.log.info({ jobId: job.id, repo: job.repo, labels: job.labels, gated }, "job created");
    // Gated jobs really do announce `queued` (with status waiting) before `waiting`.
    this.emit("queued", job, repo);
    if (gated) {
      // GitHub sends `waiting` once the environment's protection rules are evaluated: it can lag.
      const waiting = () => job.status === "waiting" && this.emit("waiting", job, repo);
      if (input.waitingAfterMs) this.clock.after(input.waitingAfterMs, waiting);
      else waiting();
      const after = input.approveAfterMs === undefined ? 3000 : input.approveAfterMs;
      if (after !== null) this.clock.after(after, () => this.approve(job.id));
    } else {
      this.assignSoon();
    }
    return job;
  }

  /** Environment approval: a waiting job becomes queued. */
  approve(jobId: number): SimJob {
    const job = this.mustJob(jobId);
    if (job.status !== "waiting") return job;
    job.status = "queued";
    this.touch(job);
    this.emit("queued", job, this.repoOf(job));
    this.assignSoon();
    return job;
  }

  cancel(jobId: number): SimJob {
    const job = this.mustJob(jobId);
    if (job.status === "completed") return job;
    this.cancelTimers.get(job.id)?.();
    const runner = job.runnerId !== null ? this.runners.get(job.runnerId) : undefined;
    this.finish(job, "cancelled", runner, "completed");
    return job;
  }

  /** Runner protocol: a guest starts the runner with its JIT config. */
  connect(encoded: string): SimRunner {
    let agentId: number;
    let secret: string;
    try {
      const cfg = decodeJitConfig(encoded);
      agentId = cfg.runner.agentId;
      secret = cfg.credentials.data.token;
    } catch {
      throw new GitHubError(401, "Invalid JIT configuration");
    }
    const runner = this.runners.get(agentId);
    if (!runner || !this.runners.secretMatches(agentId, secret)) throw new GitHubError(401, "Bad credentials");
    if (runner.removedAt) throw new GitHubError(410, `Runner ${runner.name} is no longer registered (${runner.removedReason}).`);
    if (runner.connected) throw new GitHubError(410, `The JIT configuration for runner ${runner.name} has already been used.`);
    runner.connected = true;
    runner.connectedAt = new Date().toISOString();
    runner.status = "online";
    runner.os = "Linux";
    runner.idleSince = Date.now();
    this.runners.changed(runner);
    this.log.info({ runnerId: runner.id, name: runner.name }, "runner online");
    this.assignSoon();
    return runner;
  }

  /** Runner protocol: the guest's runner process went away. */
  disconnect(runner: SimRunner): void {
    if (runner.removedAt || runner.disconnected) return;
    runner.disconnected = true;
    runner.status = "offline";
    this.runners.changed(runner);
    const job = runner.jobId !== null ? this.jobsById.get(runner.jobId) : undefined;
    if (runner.busy && job && job.status === "in_progress") {
      this.log.info({ runnerId: runner.id, jobId: job.id }, "busy runner lost");
      this.cancelTimers.get(job.id)?.();
      this.clock.after(this.timings.lostRunnerMs, () => {
        if (job.status === "in_progress") this.finish(job, "failure", runner, "lost");
      });
    } else {
      this.scheduleExpiry(runner);
    }
  }

  /** REST DELETE: 422 while the runner runs a job, like GitHub. */
  deleteRunner(runner: SimRunner): void {
    if (runner.busy) {
      throw new GitHubError(422, `Bad request - Runner "${runner.name}" is still running a job"`, {
        documentation_url: "https://docs.github.com/rest/actions/self-hosted-runners#delete-a-self-hosted-runner-from-a-repository",
      });
    }
    this.runners.remove(runner, "deleted");
    this.log.info({ runnerId: runner.id }, "runner deleted");
  }

  /** A JIT runner nobody starts (or that goes away idle) is removed after the JIT window. */
  scheduleExpiry(runner: SimRunner): void {
    this.clock.after(this.timings.jitExpiryMs, () => {
      const unused = !runner.connected || (runner.disconnected && !runner.busy);
      if (!runner.removedAt && unused && runner.jobId === null) {
        this.runners.remove(runner, "expired");
        this.log.info({ runnerId: runner.id }, "unused JIT runner expired");
      }
    });
  }

  /** Coalesces assignment passes: many state changes in one tick cause one pass. */
  assignSoon(): void {
    if (this.assignQueued) return;
    this.assignQueued = true;
    setImmediate(() => {
      this.assignQueued = false;
      this.assign();
    });
  }

  private assign(): void {
    const queued = [...this.jobsById.values()].filter((j) => j.status === "queued").sort((a, b) => a.id - b.id);
    for (const job of queued) {
      const repo = this.repoOf(job);
      const scopes = [scopeKey({ kind: "repo", repo })];
      if (repo.owner.type === "Organization") scopes.push(scopeKey({ kind: "org", org: repo.owner }));
      const wanted = job.labels.map((l) => l.toLowerCase());
      const runner = this.runners.idleIn(scopes).find((r) => {
        const have = new Set(r.labels.map((l) => l.name.toLowerCase()));
        return wanted.every((l) => have.has(l));
      });
      if (runner) this.start(job, runner, repo);
    }
  }

  private start(job: SimJob, runner: SimRunner, repo: Repo): void {
    runner.busy = true;
    runner.jobId = job.id;
    runner.idleSince = null;
    job.status = "in_progress";
    job.startedAt = isoNow();
    job.runnerId = runner.id;
    job.runnerName = runner.name;
    job.runnerGroupId = runner.groupId;
    job.runnerGroupName = runner.groupName;
    this.touch(job);
    this.runners.changed(runner);
    this.log.info({ jobId: job.id, runnerId: runner.id, runnerName: runner.name }, "job assigned");
    this.emit("in_progress", job, repo);
    const cancel = this.clock.after(job.durationMs, () => {
      this.cancelTimers.delete(job.id);
      this.finish(job, "success", runner, "completed");
    });
    this.cancelTimers.set(job.id, cancel);
  }

  private finish(job: SimJob, conclusion: Exclude<JobConclusion, null>, runner: SimRunner | undefined, reason: "completed" | "lost"): void {
    if (job.status === "completed") return;
    this.cancelTimers.delete(job.id);
    job.status = "completed";
    job.conclusion = conclusion;
    job.completedAt = isoNow();
    this.touch(job);
    if (runner) {
      runner.busy = false;
      runner.jobCompleted = reason === "completed";
      this.runners.remove(runner, reason);
    }
    this.log.info({ jobId: job.id, conclusion, runnerId: runner?.id }, "job completed");
    this.emit("completed", job, this.repoOf(job));
    this.assignSoon();
  }

  private touch(job: SimJob): void {
    const run = this.runsById.get(job.runId);
    if (run) run.updatedAt = isoNow();
  }

  private repoOf(job: SimJob): Repo {
    const repo = this.world.repo(job.repo);
    if (!repo) throw new Error(`job ${job.id} has unknown repo ${job.repo}`);
    return repo;
  }

  private mustJob(id: number): SimJob {
    const job = this.jobsById.get(id);
    if (!job) throw notFound();
    return job;
  }
}
