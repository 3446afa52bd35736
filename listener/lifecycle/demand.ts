// Demand against supply, per label set and scope (`repo:owner/name`, or `org:owner` with
// runners.scope org; warm-pool members have the scope UNCLAIMED until a job claims one).
// Demand: the queued jobs of ours. Supply: the live runners that can still take one
// (SUPPLY_STATES). Each pass requests what is missing, within the caps, claiming a warm-pool
// member first; then tops the warm pools up. The runners it requests are driven by the runner
// state machine (runner-machine.ts); this file decides only how many there should be.
import type { Logger } from "pino";
import { LIVE_STATES, SUPPLY_STATES, UNCLAIMED, type JobRow, type RunnerRow } from "../store/store.js";
import { DEFAULT_NAME_PREFIX, newRunnerName } from "./ownership.js";
import type { HoldBack } from "./hold-back.js";
import type { PipelineDeps } from "./pipeline-deps.js";

/** What demand needs from the runner drivers. */
export interface RunnerDrivers {
  /** Drives the runner from its recorded state (no-op when it is driven already). */
  ensureDriver(name: string): void;
  /** Ends the runner's current wait: something about it changed. */
  wake(name: string): void;
}

export class Demand {
  private reconciling: Promise<void> | null = null;
  private reconcileAgain = false;
  private draining = false;
  /** Set by a pass in which a job waited on a runner cap: warm-pool members make room. */
  private jobsWaitOnCap = false;

  constructor(
    private readonly d: Pick<PipelineDeps, "store" | "settings">,
    private readonly o: { logger: Logger; holdBack: HoldBack; drivers: RunnerDrivers; stopped: () => boolean },
  ) {}

  private get log(): Logger {
    return this.o.logger;
  }

  /**
   * Serialised: one pass at a time, and one more if asked while running. The pass is synchronous,
   * so `reconciling` is set for exactly its length: a call from inside it (a state change the pass
   * made) runs one more pass, and any call after it runs a new one. (Clearing it in a promise's
   * `finally` left a window, between the pass's end and that microtask, in which a call was
   * answered "already running" and its pass never ran.)
   */
  reconcile(): Promise<void> {
    if (this.reconciling) {
      this.reconcileAgain = true;
      return this.reconciling;
    }
    this.reconciling = Promise.resolve();
    try {
      do {
        this.reconcileAgain = false;
        this.reconcileOnce();
      } while (this.reconcileAgain);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    } finally {
      this.reconciling = null;
    }
  }

  /** The pass running now, if any (for idle()). */
  running(): Promise<void> | null {
    return this.reconciling;
  }

  /** Draining: no new runners are requested; those alive run their jobs and go as usual. */
  setDraining(on: boolean): void {
    if (this.draining === on) return;
    this.draining = on;
    this.log.warn({ draining: on }, on ? "draining: no new runners until resumed" : "resumed: taking jobs again");
    if (!on) this.reconcile();
  }

  isDraining(): boolean {
    return this.draining;
  }

  /** Whether a job waits on a runner cap, so a warm-pool member should make room (not while draining). */
  jobWaitsOnCap(): boolean {
    return this.jobsWaitOnCap && !this.draining;
  }

  /** A warm-pool member was retired: one at a time, the next pass says whether more must go. */
  roomMade(): void {
    this.jobsWaitOnCap = false;
  }

  /** Demand this runner would serve: queued jobs of its set and scope beyond the other supply. */
  stillNeeded(r: RunnerRow): boolean {
    const { store, settings } = this.d;
    if (r.scope === UNCLAIMED) {
      // A warm-pool member: needed while it is among the oldest `warm` of its set's pool.
      const size = settings.labelSets.find((x) => x.name === r.labelSet)?.warm ?? 0;
      const pool = store.runners(["requested", "provisioning", "warm"]).filter((x) => x.labelSet === r.labelSet && x.scope === UNCLAIMED);
      return pool.slice(0, size).some((x) => x.name === r.name);
    }
    const demand = store.queuedJobs(r.labelSet, r.scope).length;
    const others = store.runners(SUPPLY_STATES).filter((x) => x.name !== r.name && x.labelSet === r.labelSet && x.scope === r.scope).length;
    return demand > others;
  }

  private reconcileOnce(): void {
    if (this.o.stopped() || this.draining) return;
    const { store, settings: s } = this.d;
    const queued = store.queuedJobs();
    const groups = new Map<string, JobRow[]>();
    for (const j of queued) {
      const k = `${j.labelSet}\u0000${j.scope}`;
      groups.set(k, [...(groups.get(k) ?? []), j]);
    }
    const live = store.runners(LIVE_STATES);
    // The jobs live runners were made for, and the queued ones new runners are about to be made for.
    const jobsById = new Map([...store.jobsByIds(live.flatMap((r) => (r.madeForJob ? [r.madeForJob] : []))), ...queued].map((j) => [j.jobId, j]));
    const repoOf = (r: RunnerRow) => (r.madeForJob ? jobsById.get(r.madeForJob)?.repo : undefined);
    let capped = false;
    for (const jobs of groups.values()) {
      const { labelSet, scope } = jobs[0];
      const set = s.labelSets.find((x) => x.name === labelSet);
      if (!set || !scope) continue;
      if (this.o.holdBack.heldBack(set.name)) continue;
      const supply = live.filter((r) => SUPPLY_STATES.includes(r.state) && r.labelSet === labelSet && r.scope === scope).length;
      for (const job of jobs.slice(supply)) {
        const inSet = live.filter((r) => r.labelSet === set.name).length;
        const inRepo = live.filter((r) => repoOf(r) === job.repo).length;
        if (inRepo < s.maxRunnersPerRepo) {
          // A warm-pool member first: it pays only a start and a boot.
          const warm = store.claimWarm(set.name, scope, job.jobId);
          if (warm) {
            live.splice(live.findIndex((r) => r.name === warm.name), 1, warm);
            this.log.info({ runner: warm.name, job: job.jobId, labelSet, scope, was: warm.state === "booting" ? "warm" : warm.state }, "warm-pool runner claimed");
            this.o.drivers.wake(warm.name);
            this.o.drivers.ensureDriver(warm.name);
            continue;
          }
        }
        if (live.length >= s.maxRunners || inSet >= set.maxRunners || inRepo >= s.maxRunnersPerRepo) {
          this.log.info({ job: job.jobId, labelSet, live: live.length, inSet, inRepo }, "job waits: runner cap reached");
          capped = true;
          break;
        }
        const row = this.requestRunner(set.name, scope, job.jobId);
        live.push(row);
        this.log.info({ runner: row.name, job: job.jobId, labelSet, scope }, "runner requested");
      }
    }
    this.jobsWaitOnCap = capped;
    if (capped) {
      // Jobs come before spares: a warm member of any set makes room for a job waiting on a cap.
      for (const r of live) if (r.state === "warm") this.o.drivers.wake(r.name);
      return;
    }
    this.refillWarmPools(live);
  }

  /** Tops each label set's warm pool up to its size, within the caps (jobs were served first). */
  private refillWarmPools(live: RunnerRow[]): void {
    const s = this.d.settings;
    for (const set of s.labelSets) {
      if (set.warm <= 0 || this.o.holdBack.heldBack(set.name)) continue;
      let have = live.filter((r) => r.labelSet === set.name && r.scope === UNCLAIMED).length;
      while (have < set.warm) {
        const inSet = live.filter((r) => r.labelSet === set.name).length;
        if (live.length >= s.maxRunners || inSet >= set.maxRunners) break;
        const row = this.requestRunner(set.name, UNCLAIMED, null);
        live.push(row);
        have++;
        this.log.info({ runner: row.name, labelSet: set.name, pool: `${have}/${set.warm}` }, "warm-pool runner requested");
      }
    }
  }

  /** A new runner record, driven from now on. */
  private requestRunner(labelSet: string, scope: string, madeForJob: number | null): RunnerRow {
    const row = this.d.store.insertRunner({ name: newRunnerName(this.d.settings.namePrefix ?? DEFAULT_NAME_PREFIX), labelSet, scope, madeForJob });
    this.o.drivers.ensureDriver(row.name);
    return row;
  }
}
