// Prometheus metrics (prom-client, our own registry). Every phase of a runner's life is a histogram,
// so an operator sees where the time between "job queued" and "job started" goes.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { RunnerFreshnessSnapshot } from "../templates/runner-freshness.js";

export const PHASES = [
  "lane_wait", // apply requested → clone lane entered
  "apply", // terraform apply in the clone lane (clone, config)
  "start", // container start, outside the lane
  "jit_delivery", // JIT minted and handed to the container
  "boot", // JIT handed to the container → runner online at GitHub (or named by a webhook)
  "queued_to_started", // job queued (first event) → in_progress
  "job_run", // in_progress → completed
  "destroy", // terraform destroy
  "runner_lifetime", // runner requested → gone
] as const;
export type Phase = (typeof PHASES)[number];

export interface MetricsSources {
  runnersByState(): Record<string, number>;
  lanes(): Record<string, { running: number; waiting: number }>;
  queuedJobs(): number;
  githubRateLimitRemaining(): number | null;
  draining(): boolean;
  /** The templates' runners against actions/runner's releases; null when not watched. */
  runnerFreshness?(): RunnerFreshnessSnapshot | null;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly phases: Histogram<"phase">;
  private readonly jobs: Counter<"action" | "outcome">;
  private readonly deliveries: Counter<"result">;
  private readonly terraform: Histogram<"command" | "result">;
  private readonly sweeps: Counter<"kind">;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "pve_runners_" });
    this.phases = new Histogram({
      name: "pve_runners_phase_seconds",
      help: "Duration of each phase of a runner's and a job's life",
      labelNames: ["phase"],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    });
    this.jobs = new Counter({ name: "pve_runners_job_events_total", help: "workflow_job events applied, by action and outcome", labelNames: ["action", "outcome"], registers });
    this.deliveries = new Counter({ name: "pve_runners_webhook_deliveries_total", help: "Webhook deliveries answered, by result", labelNames: ["result"], registers });
    this.terraform = new Histogram({
      name: "pve_runners_terraform_seconds",
      help: "terraform apply/destroy durations, by result",
      labelNames: ["command", "result"],
      buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
      registers,
    });
    this.sweeps = new Counter({ name: "pve_runners_sweeper_actions_total", help: "Sweeper actions taken, by kind", labelNames: ["kind"], registers });
    new Gauge({
      name: "pve_runners_runners",
      help: "Runners by lifecycle state (live and, since start, finished)",
      labelNames: ["state"],
      registers,
      collect() {
        this.reset();
        for (const [state, n] of Object.entries(sources.runnersByState())) this.set({ state }, n);
      },
    });
    new Gauge({
      name: "pve_runners_clone_lane",
      help: "Clone lane depth per template: running (0 or 1) and waiting applies",
      labelNames: ["template", "kind"],
      registers,
      collect() {
        this.reset();
        for (const [template, l] of Object.entries(sources.lanes())) {
          this.set({ template, kind: "running" }, l.running);
          this.set({ template, kind: "waiting" }, l.waiting);
        }
      },
    });
    new Gauge({ name: "pve_runners_queued_jobs", help: "Jobs of ours queued at GitHub without a runner yet", registers, collect() { this.set(sources.queuedJobs()); } });
    new Gauge({
      name: "pve_runners_github_ratelimit_remaining",
      help: "x-ratelimit-remaining of the latest GitHub API answer",
      registers,
      collect() {
        const v = sources.githubRateLimitRemaining();
        if (v !== null) this.set(v);
      },
    });
    // Runner freshness (listener/templates/runner-freshness.ts), per template copy. Seconds, as Prometheus
    // wants; a template without a known runner version has no behind/cutoff sample.
    const freshness = () => sources.runnerFreshness?.() ?? null;
    new Gauge({
      name: "pve_runners_template_runner_info",
      help: "1 per template copy, labelled with the runner version it baked in (unknown without its runner-<version> tag) and the latest actions/runner release",
      labelNames: ["template", "version", "latest"],
      registers,
      collect() {
        this.reset();
        const f = freshness();
        for (const t of f?.templates ?? []) this.set({ template: t.template, version: t.version ?? "unknown", latest: f?.latest?.version ?? "unknown" }, 1);
      },
    });
    new Gauge({
      name: "pve_runners_template_runner_behind_seconds",
      help: "Seconds since the actions/runner release that superseded the template's runner came out (0 while current)",
      labelNames: ["template"],
      registers,
      collect() {
        this.reset();
        for (const t of freshness()?.templates ?? []) if (t.level !== "unknown") this.set({ template: t.template }, Math.round(t.behindMs / 1000));
      },
    });
    new Gauge({
      name: "pve_runners_template_runner_cutoff_seconds",
      help: "Seconds left before GitHub stops queueing jobs to the template's runner (30 days after the release that superseded it; the whole 30 days while current; negative past it)",
      labelNames: ["template"],
      registers,
      collect() {
        this.reset();
        for (const t of freshness()?.templates ?? []) if (t.level !== "unknown") this.set({ template: t.template }, Math.round(t.leftMs / 1000));
      },
    });
    new Gauge({
      name: "pve_runners_runner_release_checked_timestamp_seconds",
      help: "When GitHub last answered the actions/runner release check (unix time)",
      registers,
      collect() {
        const at = freshness()?.checkedAt;
        if (at) this.set(Math.floor(at / 1000));
      },
    });
    new Gauge({ name: "pve_runners_draining", help: "1 while draining (no new runners)", registers, collect() { this.set(sources.draining() ? 1 : 0); } });
  }

  phase(phase: Phase, seconds: number): void {
    if (Number.isFinite(seconds) && seconds >= 0) this.phases.observe({ phase }, seconds);
  }
  jobEvent(action: string, outcome: "ours" | "not-our-labels" | "repo-not-allowed" | "unchanged"): void {
    this.jobs.inc({ action, outcome });
  }
  delivery(result: "accepted" | "duplicate" | "replay" | "ignored" | "rejected"): void {
    this.deliveries.inc({ result });
  }
  terraformRun(command: "apply" | "destroy", seconds: number, ok: boolean): void {
    this.terraform.observe({ command, result: ok ? "ok" : "failed" }, seconds);
  }
  sweepAction(kind: string): void {
    this.sweeps.inc({ kind });
  }
}
