// The runner state machine: one driver per live runner, stepping it from the state the store
// recorded until it is gone or failed.
//
//   requested → provisioning (terraform apply in the clone lane, provision.ts) → booting (start,
//   JIT minted NOW and delivered, boot.ts) → idle (online at GitHub) → busy (in_progress named it)
//   → done (completed named it) → destroying (terraform destroy, teardown.ts) → gone | failed
//   A warm-pool member stops at `warm` after provisioning until a job claims it (→ booting).
//
// Deliveries (job-events.ts) and the sweeper move a runner too; they wake its driver. Every step is
// idempotent and resumable: after a restart each live runner is driven on from its recorded state.
// How many runners there should be is decided elsewhere (demand.ts); a step asks it only whether
// this runner is still needed.
import { setMaxListeners } from "node:events";
import { join } from "node:path";
import type { Logger } from "pino";
import { parseScopeKey } from "../adapters/github/github.js";
import type { RunnerRow } from "../store/store.js";
import { heldStatus } from "./job-status.js";
import { errMessage, sleep, Stopped } from "./abortable.js";
import { Boot } from "./boot.js";
import type { Demand } from "./demand.js";
import type { FailureReport } from "./failure-report.js";
import type { PipelineDeps } from "./pipeline-deps.js";
import { Provision } from "./provision.js";
import { Teardown } from "./teardown.js";

export class RunnerMachine {
  private readonly drivers = new Map<string, Promise<void>>();
  private readonly wakers = new Map<string, () => void>();
  readonly provision: Provision;
  readonly boot: Boot;
  private readonly teardown: Teardown;

  constructor(
    private readonly d: PipelineDeps,
    private readonly o: {
      signal: AbortSignal;
      demand: Pick<Demand, "stillNeeded" | "jobWaitsOnCap" | "roomMade">;
      failures: FailureReport;
      /** A driver ended (its runner is gone, failed, or the driver stopped): demand is counted again. */
      onDriverEnded: () => void;
    },
  ) {
    const wait = (name: string, ms: number) => this.waitForEvent(name, ms);
    this.provision = new Provision(d, wait);
    this.boot = new Boot(d, wait);
    this.teardown = new Teardown(d, { failures: o.failures, onGone: (name) => this.boot.forget(name) });
    // Every runner's driver waits on this one signal (sleeps, terraform runs); each removes its
    // listener when done, so many at once is concurrency, not a leak.
    setMaxListeners(0, o.signal);
  }

  private get log(): Logger {
    return this.d.logger;
  }

  ensureDriver(name: string): void {
    if (this.drivers.has(name) || this.o.signal.aborted) return;
    const p = this.drive(name)
      .catch((err) => {
        if (!(err instanceof Stopped)) this.log.error({ runner: name, err: errMessage(err) }, "runner driver crashed");
      })
      .finally(() => {
        this.drivers.delete(name);
        this.provision.forget(name);
        this.o.onDriverEnded();
      });
    this.drivers.set(name, p);
  }

  /** Something outside the driver changed this runner's record: drive it on. */
  nudge(name: string): void {
    this.wake(name);
    this.ensureDriver(name);
  }

  wake(name: string): void {
    this.wakers.get(name)?.();
  }

  /** Ends every wait (the pipeline is stopping). */
  wakeAll(): void {
    for (const w of this.wakers.values()) w();
  }

  /** The drivers running now (for idle() and stop()). */
  driving(): Promise<void>[] {
    return [...this.drivers.values()];
  }

  /** Waits up to `ms`, returning early when an event concerns this runner. */
  private waitForEvent(name: string, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.wakers.delete(name);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.wakers.set(name, done);
    });
  }

  private async drive(name: string): Promise<void> {
    const signal = this.o.signal;
    for (;;) {
      if (signal.aborted) throw new Stopped();
      const r = this.d.store.getRunner(name);
      if (!r) return;
      const log = this.log.child({ runner: name, state: r.state, madeFor: r.madeForJob ?? undefined });
      try {
        if (await this.step(r, log, signal)) return;
      } catch (err) {
        if (err instanceof Stopped || signal.aborted) throw new Stopped();
        // An unexpected failure (an API down, a bug) must not strand the runner: record it, back off, go on.
        log.error({ err: errMessage(err) }, "runner step failed; retrying");
        this.d.store.setRunnerState(name, r.state, { lastError: errMessage(err) }, [r.state]);
        await sleep(this.d.settings.retryBackoffMs, signal);
      }
    }
  }

  /** One step of the lifecycle; true when the runner reached a terminal state. */
  private async step(r: RunnerRow, log: Logger, signal: AbortSignal): Promise<boolean> {
    const name = r.name;
    switch (r.state) {
      case "requested":
        await this.stepRequested(r, log);
        break;
      case "provisioning":
        await this.provision.step(r, log, signal);
        break;
      case "warm":
        await this.stepWarm(r, log);
        break;
      case "booting":
        await this.boot.step(r, log, signal);
        break;
      case "idle":
        await this.stepIdle(r, log);
        break;
      case "busy":
        // Only `completed` (or the sweeper) ends this; wait for it.
        await this.waitForEvent(name, 60_000);
        break;
      case "done":
        this.d.store.setRunnerState(name, "destroying", {}, ["done"]);
        break;
      case "destroying":
        await this.teardown.step(r, log, signal);
        break;
      case "gone":
      case "failed":
        return true;
    }
    return false;
  }

  /** requested → provisioning, or gone when no queued job needs it any more. */
  private async stepRequested(r: RunnerRow, log: Logger): Promise<void> {
    // Before spending a clone: is the job still queued? Fail open — an API error must not strand a job.
    const job = r.madeForJob ? this.d.store.getJob(r.madeForJob) : undefined;
    if (job && job.status === "queued") {
      try {
        const live = await this.d.github.jobStatus(job.repo, job.jobId, job.installationId);
        const held = heldStatus(live);
        if (live && held !== "queued") {
          log.info({ job: job.jobId, status: live }, "job no longer queued at GitHub");
          if (held) this.d.store.settleJobStatus(job.jobId, held);
        }
      } catch (err) {
        log.warn({ job: job.jobId, err: errMessage(err) }, "could not check job status; provisioning anyway");
      }
    }
    if (!this.o.demand.stillNeeded(r)) {
      log.info("no queued job needs this runner any more: dropped before cloning");
      this.d.store.setRunnerState(r.name, "gone", { lastError: "not needed" }, ["requested"]);
      return;
    }
    this.d.store.setRunnerState(r.name, "provisioning", { stackDir: join(this.d.settings.stateDir, "runners", r.name) }, ["requested"]);
  }

  /** A warm-pool member waits to be claimed (the claim moves it to booting and wakes it). */
  private async stepWarm(r: RunnerRow, log: Logger): Promise<void> {
    const surplus = !this.o.demand.stillNeeded(r);
    if (surplus || this.o.demand.jobWaitsOnCap()) {
      log.info({ reason: surplus ? "pool is smaller now" : "a job waits on a runner cap" }, "retiring warm-pool runner");
      this.d.store.setRunnerState(r.name, "destroying", { lastError: "surplus" }, ["warm"]);
      this.o.demand.roomMade(); // one at a time: the next reconcile says whether more must go
      return;
    }
    await this.waitForEvent(r.name, 60_000);
  }

  /** idle → destroying when surplus or idle too long (its registration deleted first), or busy. */
  private async stepIdle(r: RunnerRow, log: Logger): Promise<void> {
    const s = this.d.settings;
    const idleFor = Date.now() - r.stateSince;
    const surplus = !this.o.demand.stillNeeded(r);
    if (surplus || idleFor >= s.timeouts.idleMs) {
      // Delete the registration first: 422 means GitHub just gave it a job, so it stays.
      const scope = parseScopeKey(r.scope);
      const outcome = r.githubRunnerId ? await this.d.github.deleteRunner(scope, r.githubRunnerId).catch((err) => {
        log.warn({ err: errMessage(err) }, "could not delete registration; keeping the runner for now");
        return "error" as const;
      }) : "gone";
      if (outcome === "busy") {
        log.info("runner took a job while being retired: keeping it");
        this.d.store.setRunnerState(r.name, "busy", {}, ["idle"]);
        return;
      }
      if (outcome === "error") {
        await this.waitForEvent(r.name, s.onlinePollMs);
        return;
      }
      log.info({ reason: surplus ? "no queued job needs it" : "idle timeout" }, "retiring idle runner");
      this.d.store.setRunnerState(r.name, "destroying", { lastError: surplus ? "surplus" : "idle timeout" }, ["idle"]);
      return;
    }
    await this.waitForEvent(r.name, Math.min(s.timeouts.idleMs - idleFor, 5_000));
  }
}
