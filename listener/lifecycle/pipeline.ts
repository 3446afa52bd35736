// The runner lifecycle, as the service sees it: one object that takes deliveries and is started,
// reloaded, drained and stopped. It wires three parts that each do one job:
//   job-events.ts     deliveries → job events (and the runners they name)
//   demand.ts         demand vs supply per label set and scope: how many runners there should be
//   runner-machine.ts one driver per runner, stepping it through its states (provision.ts,
//                     boot.ts, teardown.ts)
// docs/architecture.md draws the state machine and says where each transition happens.
import { LIVE_STATES } from "../store/store.js";
import type { WorkflowJobPayload } from "../http/webhook.js";
import { Demand } from "./demand.js";
import { FailureReport } from "./failure-report.js";
import { HoldBack } from "./hold-back.js";
import { JobEvents } from "./job-events.js";
import type { PipelineDeps, PipelineSettings } from "./pipeline-deps.js";
import { RunnerMachine } from "./runner-machine.js";

export type { LabelSetSpec, LaneLike, PipelineDeps, PipelineSettings, TerraformLike } from "./pipeline-deps.js";
export type { Scope } from "../adapters/github/github.js";

export class Pipeline {
  private readonly abort = new AbortController();
  private readonly holdBack: HoldBack;
  private readonly demand: Demand;
  private readonly events: JobEvents;
  private readonly runners: RunnerMachine;

  constructor(private readonly d: PipelineDeps) {
    const log = d.logger;
    const stopped = () => this.abort.signal.aborted;
    this.holdBack = new HoldBack({ store: d.store, retryBackoffMs: () => this.d.settings.retryBackoffMs, logger: log, onHoldEnded: () => this.reconcile() });
    this.demand = new Demand(d, { logger: log, holdBack: this.holdBack, drivers: { ensureDriver: (n) => this.runners.ensureDriver(n), wake: (n) => this.runners.wake(n) }, stopped });
    this.runners = new RunnerMachine(d, {
      signal: this.abort.signal,
      demand: this.demand,
      failures: new FailureReport({ store: d.store, github: d.github }),
      onDriverEnded: () => this.reconcile(),
    });
    this.events = new JobEvents(d, log, {
      reconcile: () => this.reconcile(),
      runnerMoved: (name, wasBooting) => {
        if (wasBooting) this.runners.boot.leftBooting(name);
        this.runners.nudge(name);
      },
      stopped,
    });
  }

  /** Takes new settings (a config reload); runners already made keep going under them. */
  updateSettings(settings: PipelineSettings): void {
    this.d.settings = settings;
    this.runners.provision.settingsChanged();
    this.reconcile();
  }

  /** Applies one recorded delivery (idempotent), then rebalances supply against demand. */
  handleDelivery(guid: string, payload?: WorkflowJobPayload): Promise<void> {
    return this.events.handleDelivery(guid, payload);
  }

  /** One demand/supply pass (serialised: see Demand.reconcile). */
  reconcile(): Promise<void> {
    return this.demand.reconcile();
  }

  /** Draining: no new runners are requested; those alive run their jobs and go as usual. */
  setDraining(on: boolean): void {
    this.demand.setDraining(on);
  }

  isDraining(): boolean {
    return this.demand.isDraining();
  }

  /** At start, beside resume(): terraform init (and the shared provider) before the first job needs them. */
  initTerraform(): Promise<void> {
    return this.runners.provision.initTerraform();
  }

  /** At start: re-apply deliveries that were acknowledged but not applied, and drive every live runner on. */
  async resume(): Promise<void> {
    // In the order received, in one batch.
    await Promise.all(this.d.store.unprocessedDeliveries().map((d) => this.handleDelivery(d.guid)));
    // Disputes left open by the last run (it stopped before GitHub answered).
    for (const j of this.d.store.unstartedJobs()) if (j.disputedAt !== null) this.events.settleDispute(j.jobId);
    for (const r of this.d.store.runners(LIVE_STATES)) {
      this.d.logger.info({ runner: r.name, state: r.state }, "resuming runner");
      this.runners.ensureDriver(r.name);
    }
    await this.reconcile();
  }

  /** Stops driving (in-flight terraform is interrupted); state stays in the store for the next start. */
  async stop(): Promise<void> {
    this.abort.abort();
    this.holdBack.stop();
    this.runners.wakeAll();
    await Promise.allSettled([...this.runners.driving(), ...this.events.asking]);
  }

  /** Resolves when no runner is being driven (for tests and the demo). */
  async idle(): Promise<void> {
    for (;;) {
      const driving = this.runners.driving();
      const reconciling = this.demand.running();
      if (driving.length === 0 && !reconciling && this.events.asking.size === 0) return;
      await Promise.allSettled([...driving, reconciling, ...this.events.asking]);
    }
  }

  /** Something outside the webhooks (the sweeper) changed this runner's record: drive it on. */
  nudge(name: string): void {
    this.runners.nudge(name);
  }
}
