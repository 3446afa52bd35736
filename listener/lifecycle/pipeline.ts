// The runner lifecycle (design.md): one state machine for every runner, driven from the durable store.
//
//   requested → provisioning (terraform apply in the clone lane) → booting (JIT minted NOW, delivered)
//   → idle (online at GitHub) → busy (in_progress named it) → done (completed named it)
//   → destroying (terraform destroy) → gone
//
// Teardown keys on the runner name GitHub reports, never on the job the runner was made for: GitHub
// gives a job to ANY idle runner whose labels match. The name counts only from a delivery of the
// runner's own scope, of an allowed repository, naming its registration id (listener/lifecycle/runner-match.ts).
// Every step is idempotent and resumable: after a restart each live runner is driven on from the
// state the store recorded.
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { parseScopeKey, type GitHubAdapter, type Scope } from "../adapters/github/github.js";
import type { JitDelivery } from "../adapters/jit/jit-delivery.js";
import { matchLabelSet } from "./labels.js";
import { repoAllowed, type Allowlist } from "./allowlist.js";
import { Placement, type NodeLimit, type NodeLoad, type TemplateCopy } from "./placement.js";
import { LIVE_STATES, RETIREMENT_REASONS, SUPPLY_STATES, UNCLAIMED, type JobRow, type RunnerRow, type RunnerState, type Store } from "../store/store.js";
import { WorkflowJobPayload } from "../http/webhook.js";
import { checkJobAtGitHub, heldStatus } from "./job-status.js";
import { GroupCommit } from "../store/group-commit.js";
import { deleteTimeoutFor, synthRunnerStack } from "../../stacks/runner-stack.js";
import type { Metrics } from "../metrics/metrics.js";
import { VmidAllocator, type VmidProbe, type VmidRange } from "./vmids.js";
import { isVmidClash } from "./clone-gate.js";
import { controllerMarker, DEFAULT_NAME_PREFIX, newRunnerName } from "./ownership.js";
import { whyNotThisRunner } from "./runner-match.js";
import type { ContainerPresence, RecordedContainer } from "../adapters/proxmox/container-check.js";

/** Clone-time vmid clashes a runner may meet (each gets a fresh vmid) before they count as failed attempts. */
const MAX_VMID_CLASHES = 5;

export interface LabelSetSpec {
  name: string;
  labels: string[];
  cores: number;
  memoryMb: number;
  swapMb: number;
  maxRunners: number;
  /** Warm-pool size: stopped, pre-cloned containers kept for this set (0: scale to zero). */
  warm: number;
}

export interface PipelineSettings {
  stateDir: string;
  labelSets: LabelSetSpec[];
  allow: Allowlist;
  runnerScope: "repo" | "org";
  maxRunners: number;
  maxRunnersPerRepo: number;
  proxmox: {
    endpoint: string;
    insecure?: boolean;
    /** The node the listener runs on (pct delivery reaches only its containers). */
    node: string;
    /** Template copies: one clone lane each; placement picks one per runner. */
    templates: TemplateCopy[];
    nodeLimits: Record<string, NodeLimit>;
    bridge: string;
    vlan?: number;
    pool?: string;
    storage?: string;
    linkedClone: boolean;
    /** Where runners' vmids are chosen (proxmox.vmids). */
    vmids: VmidRange;
  };
  timeouts: { applyMs: number; destroyMs: number; bootMs: number; idleMs: number };
  /** Apply attempts per runner before it is given up (each failure is cleaned up by destroy first). */
  applyAttempts: number;
  retryBackoffMs: number;
  /** How often a booting runner is checked for being online at GitHub. */
  onlinePollMs: number;
  /** Runner names are this plus 8 random hex digits (runners.namePrefix; default "runner-"). */
  namePrefix?: string;
}

/** What the pipeline needs from the terraform adapter (listener/adapters/terraform/terraform.ts). */
export interface TerraformLike {
  prepare(stackFile: string): Promise<void>;
  apply(workingDir: string, ctx: { runner: string; lane?: string; slot?: { release(): void }; signal?: AbortSignal; timeoutMs?: number }): Promise<unknown>;
  /** Holds a run slot ahead of apply (optional: fakes run without). */
  reserveSlot?(lane: string | undefined, signal?: AbortSignal, runner?: string): Promise<{ release(): void }>;
  /** Starts the shared provider now, when terraform.sharedProvider is on, instead of at the first apply. */
  startSharedProvider?(): Promise<void>;
  /** `refresh: false`: -refresh=false (the caller has seen the container through the API). */
  destroy(workingDir: string, ctx: { runner: string; signal?: AbortSignal; timeoutMs?: number; refresh?: boolean }): Promise<void>;
  output(workingDir: string): Promise<Record<string, unknown>>;
}

export interface LaneLike {
  run<T>(templateKey: string, runner: string, fn: () => Promise<T>): Promise<T>;
}

export interface PipelineDeps {
  metrics?: Metrics;
  /** Node loads for placement (GET /cluster/resources?type=node); without it placement uses lanes and caps. */
  readNodes?: () => Promise<NodeLoad[]>;
  /**
   * Starts a container (idempotent) through the Proxmox API. When given, the stack only clones and
   * configures, so the clone lane is held for the clone alone; starting runs outside it, in parallel.
   */
  startContainer?: (node: string, vmid: number) => Promise<void>;
  /** What PVE says about vmids in use, for allocation (without it only the store's records count). */
  vmidProbe?: VmidProbe;
  /** Whether a container named like this runner exists on Proxmox (when terraform cannot tell). */
  containerExists?: (runnerName: string) => Promise<boolean>;
  /**
   * Whether the runner's container is at its recorded node and vmid (listener/adapters/proxmox/container-check.ts):
   * before a destroy, to run it without a refresh, or not at all when the container is gone.
   * Without it every destroy refreshes.
   */
  containerPresence?: (r: RecordedContainer) => Promise<ContainerPresence>;
  store: Store;
  github: GitHubAdapter;
  terraform: TerraformLike;
  /**
   * Held around each whole apply. Absent when the clone gate (listener/lifecycle/clone-gate.ts) holds the
   * lane around the clone task alone: the stack then names no endpoint, terraform's environment
   * points at the gate.
   */
  lane?: LaneLike;
  delivery: JitDelivery;
  settings: PipelineSettings;
  logger: Logger;
}

class Stopped extends Error {}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(new Stopped());
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new Stopped());
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class Pipeline {
  private readonly drivers = new Map<string, Promise<void>>();
  private readonly wakers = new Map<string, () => void>();
  private readonly abort = new AbortController();
  private reconciling: Promise<void> | null = null;
  private reconcileAgain = false;
  private readonly log: Logger;
  private placement: Placement;
  /** Set by a reconcile pass in which a job waited on a runner cap: warm-pool members make room. */
  private jobsWaitOnCap = false;
  private readonly vmids: VmidAllocator;
  /** Clone-time clashes per runner (in memory: bounded per process, which is enough to stop a loop). */
  private readonly vmidClashes = new Map<string, number>();

  constructor(private readonly d: PipelineDeps) {
    this.log = d.logger;
    this.placement = this.makePlacement();
    this.vmids = new VmidAllocator(d.store, () => this.d.settings.proxmox.vmids, d.vmidProbe);
    // Every runner's driver waits on this one signal (sleeps, terraform runs); each removes its
    // listener when done, so many at once is concurrency, not a leak.
    setMaxListeners(0, this.abort.signal);
  }

  /** Takes new settings (a config reload); runners already made keep going under them. */
  updateSettings(settings: PipelineSettings): void {
    this.d.settings = settings;
    this.placement = this.makePlacement();
    this.reconcile();
  }

  private makePlacement(): Placement {
    const s = this.d.settings;
    return new Placement({
      templates: s.proxmox.templates,
      limits: s.proxmox.nodeLimits,
      readNodes: this.d.readNodes ?? (async () => []),
      memoryOf: (labelSet) => s.labelSets.find((x) => x.name === labelSet)?.memoryMb ?? 0,
      logger: this.log,
    });
  }

  // ---------------------------------------------------------------- events

  /**
   * Deliveries handed on within 10 ms of each other are applied together: one commit for all their
   * events and "processed" marks, then one rebalancing pass if any of them concerns us.
   */
  private readonly deliveries = new GroupCommit<{ guid: string; payload?: WorkflowJobPayload }, boolean>(
    (items) => this.applyDeliveries(items),
    // Nobody waits on this commit (the webhook is answered): 10 ms of deliveries share one.
    { delayMs: 10 },
  );

  /** One batch of deliveries: their events and "processed" marks in one commit, then one rebalancing pass. */
  private applyDeliveries(items: Array<{ guid: string; payload?: WorkflowJobPayload }>): boolean[] {
    // Not synced: after a power loss a lost commit is made again from the durable deliveries
    // (resume re-applies those not marked processed), and any later synced commit carries it.
    const relevant = this.d.store.transaction(() => items.map((d) => this.applyDelivery(d.guid, d.payload)), { sync: false });
    // Deliveries that are not ours (other labels, other repositories) change no demand.
    if (relevant.some(Boolean)) this.reconcile();
    // Asked after the commit: the dispute is durable before the question goes out.
    for (const jobId of this.disputed.splice(0)) this.settleDispute(jobId);
    return relevant;
  }

  /** Jobs whose deliveries disagreed (queued vs waiting) in the batch being applied. */
  private disputed: number[] = [];
  /** Disputes being asked about now; a job disputed again meanwhile is asked once more after. */
  private readonly settling = new Map<number, boolean>();

  /** Asks GitHub which of queued/waiting a disputed job is; one question per job at a time. */
  private settleDispute(jobId: number): void {
    if (this.settling.has(jobId)) {
      this.settling.set(jobId, true);
      return;
    }
    this.settling.set(jobId, false);
    const asking = (async () => {
      do {
        this.settling.set(jobId, false);
        if (this.abort.signal.aborted) return;
        const { changed } = await checkJobAtGitHub({ store: this.d.store, github: this.d.github, logger: this.log }, jobId);
        if (changed && !this.abort.signal.aborted) this.reconcile();
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

  /** Questions to GitHub in flight (stop() waits for them: their answers go to the store). */
  private readonly asking = new Set<Promise<void>>();

  /**
   * Applies one recorded delivery (idempotent), then rebalances supply against demand. `payload`:
   * the route's own check of the body just recorded, which spares reading and parsing it again.
   */
  async handleDelivery(guid: string, payload?: WorkflowJobPayload): Promise<void> {
    await this.deliveries.add({ guid, payload });
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
    if (runner.state === "booting") this.leftBooting(runner.name);
    if (status === "in_progress") {
      if (this.d.store.setRunnerState(runner.name, "busy", { jobId: wj.id }, ["requested", "provisioning", "booting", "idle"])) {
        log.info({ runner: runner.name, madeFor: runner.madeForJob }, "runner busy");
      }
    } else if (this.d.store.setRunnerState(runner.name, "done", { jobId: wj.id }, ["requested", "provisioning", "booting", "idle", "busy"])) {
      log.info({ runner: runner.name, conclusion: wj.conclusion }, "runner finished its job");
    }
    this.wake(runner.name);
    this.ensureDriver(runner.name);
    return true;
  }

  // ---------------------------------------------------------------- demand vs supply

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

  private draining = false;

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

  private reconcileOnce(): void {
    if (this.abort.signal.aborted || this.draining) return;
    const s = this.d.settings;
    const queued = this.d.store.queuedJobs();
    const groups = new Map<string, JobRow[]>();
    for (const j of queued) {
      const k = `${j.labelSet}\u0000${j.scope}`;
      groups.set(k, [...(groups.get(k) ?? []), j]);
    }
    const live = this.d.store.runners(LIVE_STATES);
    // The jobs live runners were made for, and the queued ones new runners are about to be made for.
    const jobsById = new Map([...this.d.store.jobsByIds(live.flatMap((r) => (r.madeForJob ? [r.madeForJob] : []))), ...queued].map((j) => [j.jobId, j]));
    const repoOf = (r: RunnerRow) => (r.madeForJob ? jobsById.get(r.madeForJob)?.repo : undefined);
    let capped = false;
    for (const jobs of groups.values()) {
      const { labelSet, scope } = jobs[0];
      const set = s.labelSets.find((x) => x.name === labelSet);
      if (!set || !scope) continue;
      if (this.heldBack(set.name)) continue;
      const supply = live.filter((r) => SUPPLY_STATES.includes(r.state) && r.labelSet === labelSet && r.scope === scope).length;
      for (const job of jobs.slice(supply)) {
        const inSet = live.filter((r) => r.labelSet === set.name).length;
        const inRepo = live.filter((r) => repoOf(r) === job.repo).length;
        if (inRepo < s.maxRunnersPerRepo) {
          // A warm-pool member first: it pays only a start and a boot.
          const warm = this.d.store.claimWarm(set.name, scope, job.jobId);
          if (warm) {
            live.splice(live.findIndex((r) => r.name === warm.name), 1, warm);
            this.log.info({ runner: warm.name, job: job.jobId, labelSet, scope, was: warm.state === "booting" ? "warm" : warm.state }, "warm-pool runner claimed");
            this.wake(warm.name);
            this.ensureDriver(warm.name);
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
      for (const r of live) if (r.state === "warm") this.wake(r.name);
      return;
    }
    this.refillWarmPools(live);
  }

  /** Tops each label set's warm pool up to its size, within the caps (jobs were served first). */
  private refillWarmPools(live: RunnerRow[]): void {
    const s = this.d.settings;
    for (const set of s.labelSets) {
      if (set.warm <= 0 || this.heldBack(set.name)) continue;
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
    this.ensureDriver(row.name);
    return row;
  }

  private readonly holdTimers = new Map<string, NodeJS.Timeout>();
  /** When each runner's JIT config went in (for the boot phase metric; lost on restart, harmlessly). */
  private readonly deliveredAt = new Map<string, number>();

  private readonly reportedJobs = new Set<number>();

  /**
   * A runner given up for good: the job it was made for is still waiting, through no fault of its
   * author. Say so on the commit (a check run), once per job; a log line alone reaches nobody.
   */
  private async reportFailure(r: RunnerRow, log: Logger): Promise<void> {
    const job = r.madeForJob ? this.d.store.getJob(r.madeForJob) : undefined;
    if (!job || job.status !== "queued" || this.reportedJobs.has(job.jobId)) return;
    const sha = this.d.store.jobHeadSha(job.jobId);
    if (!sha) return;
    this.reportedJobs.add(job.jobId);
    // The error stays in our log: it names host paths, nodes and privileges, and a check run on a
    // public repository is readable by anyone. The commit gets a reference to find that log line.
    const ref = `${r.name}/${randomBytes(4).toString("hex")}`;
    log.error({ job: job.jobId, ref, attempts: r.attempts, lastError: r.lastError }, "runner given up: reporting an infrastructure failure on the commit");
    try {
      await this.d.github.reportInfraFailure(
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

  /** Boot ends when the runner is first seen online, or a webhook names it first. */
  private leftBooting(name: string): void {
    const delivered = this.deliveredAt.get(name);
    if (delivered === undefined) return;
    this.deliveredAt.delete(name);
    this.d.metrics?.phase("boot", (Date.now() - delivered) / 1000);
  }

  /**
   * After runners of a set were given up one after another (a missing privilege, a broken
   * template), new ones wait: 6 backoffs after the first failure, doubling, at most 15 min. Without
   * this a queued job would spend clones in a tight loop; with it the operator sees why and when.
   */
  private heldBack(labelSet: string): boolean {
    // Past ~10 failures in a row the wait is at its cap: older history changes nothing.
    const finished = this.d.store.finishedRunners(labelSet, 32).filter((r) => r.lastError !== "not needed");
    let failures = 0;
    for (const r of finished) {
      if (r.state !== "failed") break;
      failures++;
    }
    if (failures === 0) return false;
    const waitMs = Math.min(this.d.settings.retryBackoffMs * 6 * 2 ** (failures - 1), 15 * 60_000);
    const remaining = finished[0].stateSince + waitMs - Date.now();
    if (remaining <= 0) return false;
    if (!this.holdTimers.has(labelSet)) {
      this.log.warn({ labelSet, failures, lastError: finished[0].lastError, retryInMs: remaining }, "runners of this label set keep failing: holding back new ones");
      const t = setTimeout(() => {
        this.holdTimers.delete(labelSet);
        this.reconcile();
      }, remaining + 10);
      t.unref();
      this.holdTimers.set(labelSet, t);
    }
    return true;
  }

  // ---------------------------------------------------------------- lifecycle drivers

  /**
   * At start, beside resume(): `terraform init` into the shared dir now, so the first job after a
   * (re)start does not wait for it (about a second of the first burst's critical path). The stack
   * is a stand-in runner's: init reads only the provider requirements. With terraform.sharedProvider
   * the provider is started here too. A failure is left to the first job, whose prepare() runs init
   * again (and whose apply starts the provider).
   */
  async initTerraform(): Promise<void> {
    const s = this.d.settings;
    const copy = s.proxmox.templates[0];
    const set = s.labelSets[0];
    if (!copy || !set) return;
    const stack = synthRunnerStack(join(s.stateDir, "terraform-init-stack"), {
      runnerName: newRunnerName(this.d.settings.namePrefix ?? DEFAULT_NAME_PREFIX),
      labelSet: set.name,
      controllerId: this.d.store.controllerId(),
      node: copy.node,
      templateVmid: copy.vmid,
      templateNode: copy.sourceNode,
      bridge: s.proxmox.bridge,
      linkedClone: s.proxmox.linkedClone,
      cores: set.cores,
      memoryMb: set.memoryMb,
      swapMb: set.swapMb,
    });
    await this.d.terraform.prepare(stack.file);
    await this.d.terraform.startSharedProvider?.();
  }

  /** At start: re-apply deliveries that were acknowledged but not applied, and drive every live runner on. */
  async resume(): Promise<void> {
    // In the order received, in one batch.
    await Promise.all(this.d.store.unprocessedDeliveries().map((d) => this.handleDelivery(d.guid)));
    // Disputes left open by the last run (it stopped before GitHub answered).
    for (const j of this.d.store.unstartedJobs()) if (j.disputedAt !== null) this.settleDispute(j.jobId);
    for (const r of this.d.store.runners(LIVE_STATES)) {
      this.log.info({ runner: r.name, state: r.state }, "resuming runner");
      this.ensureDriver(r.name);
    }
    await this.reconcile();
  }

  /** Stops driving (in-flight terraform is interrupted); state stays in the store for the next start. */
  async stop(): Promise<void> {
    this.abort.abort();
    for (const t of this.holdTimers.values()) clearTimeout(t);
    for (const w of this.wakers.values()) w();
    await Promise.allSettled([...this.drivers.values(), ...this.asking]);
  }

  /** Resolves when no runner is being driven (for tests and the demo). */
  async idle(): Promise<void> {
    while (this.drivers.size > 0 || this.reconciling || this.asking.size > 0) await Promise.allSettled([...this.drivers.values(), this.reconciling, ...this.asking]);
  }

  ensureDriver(name: string): void {
    if (this.drivers.has(name) || this.abort.signal.aborted) return;
    const p = this.drive(name)
      .catch((err) => {
        if (!(err instanceof Stopped)) this.log.error({ runner: name, err: errMessage(err) }, "runner driver crashed");
      })
      .finally(() => {
        this.drivers.delete(name);
        this.vmidClashes.delete(name);
        this.reconcile();
      });
    this.drivers.set(name, p);
  }

  /** Something outside the webhooks (the sweeper) changed this runner's record: drive it on. */
  nudge(name: string): void {
    this.wake(name);
    this.ensureDriver(name);
  }

  private wake(name: string): void {
    this.wakers.get(name)?.();
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
    const signal = this.abort.signal;
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
        await this.stepProvisioning(r, log, signal);
        break;
      case "warm":
        await this.stepWarm(r, log);
        break;
      case "booting":
        await this.stepBooting(r, log, signal);
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
        await this.stepDestroying(r, log, signal);
        break;
      case "gone":
      case "failed":
        return true;
    }
    return false;
  }

  /** Demand this runner would serve: queued jobs of its set and scope beyond the other supply. */
  private stillNeeded(r: RunnerRow): boolean {
    if (r.scope === UNCLAIMED) {
      // A warm-pool member: needed while it is among the oldest `warm` of its set's pool.
      const size = this.d.settings.labelSets.find((x) => x.name === r.labelSet)?.warm ?? 0;
      const pool = this.d.store.runners(["requested", "provisioning", "warm"]).filter((x) => x.labelSet === r.labelSet && x.scope === UNCLAIMED);
      return pool.slice(0, size).some((x) => x.name === r.name);
    }
    const demand = this.d.store.queuedJobs(r.labelSet, r.scope).length;
    const others = this.d.store.runners(SUPPLY_STATES).filter((x) => x.name !== r.name && x.labelSet === r.labelSet && x.scope === r.scope).length;
    return demand > others;
  }

  /** A warm-pool member waits to be claimed (the claim moves it to booting and wakes it). */
  private async stepWarm(r: RunnerRow, log: Logger): Promise<void> {
    const surplus = !this.stillNeeded(r);
    if (surplus || (this.jobsWaitOnCap && !this.draining)) {
      log.info({ reason: surplus ? "pool is smaller now" : "a job waits on a runner cap" }, "retiring warm-pool runner");
      this.d.store.setRunnerState(r.name, "destroying", { lastError: "surplus" }, ["warm"]);
      this.jobsWaitOnCap = false; // one at a time: the next reconcile says whether more must go
      return;
    }
    await this.waitForEvent(r.name, 60_000);
  }

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
    if (!this.stillNeeded(r)) {
      log.info("no queued job needs this runner any more: dropped before cloning");
      this.d.store.setRunnerState(r.name, "gone", { lastError: "not needed" }, ["requested"]);
      return;
    }
    this.d.store.setRunnerState(r.name, "provisioning", { stackDir: join(this.d.settings.stateDir, "runners", r.name) }, ["requested"]);
  }

  private async stepProvisioning(r: RunnerRow, log: Logger, signal: AbortSignal): Promise<void> {
    const s = this.d.settings;
    const set = s.labelSets.find((x) => x.name === r.labelSet);
    if (!set) throw new Error(`label set ${r.labelSet} is no longer configured`);
    const stackDir = r.stackDir ?? join(s.stateDir, "runners", r.name);
    // Chosen once, before the clone, and kept across attempts and restarts: the re-run after a
    // restart targets the same vmid. Only a clash at clone time gives the runner a fresh one.
    // The node loads are read meanwhile: two API round trips side by side, not one after the other.
    const loading = this.placement.loads();
    let vmid = r.vmid;
    if (vmid === null) {
      vmid = await this.vmids.allocate(r.name);
      log.info({ vmid }, "vmid reserved");
    }
    // Placed on every attempt: after a failure (a node down) the next attempt may go elsewhere.
    const loads = await loading;
    const placed = this.placement.choose(r, this.d.store.runners(LIVE_STATES), loads);
    if ("wait" in placed) {
      log.info({ why: placed.wait }, "no node can take this runner now: waiting");
      this.placement.invalidate();
      await this.waitForEvent(r.name, Math.max(s.retryBackoffMs, 1_000));
      return;
    }
    const copy = placed.copy;
    this.d.store.setPlacement(r.name, copy.node, copy.key);
    log.info({ node: copy.node, template: copy.key }, "runner placed");
    // With the clone gate, the terraform slot is taken before the stack is made: in a burst the
    // first applies run while later runners are still synthesized. (Around whole applies, the
    // lane is taken first and the slot inside it, as before.)
    const slot = this.d.lane ? undefined : await this.d.terraform.reserveSlot?.(copy.key, signal, r.name);
    try {
      await this.provisionPlaced(r, log, signal, { set, stackDir, vmid, copy, slot });
    } finally {
      slot?.release();
    }
  }

  private async provisionPlaced(
    r: RunnerRow,
    log: Logger,
    signal: AbortSignal,
    { set, stackDir, vmid, copy, slot }: { set: PipelineSettings["labelSets"][number]; stackDir: string; vmid: number; copy: TemplateCopy; slot?: { release(): void } },
  ): Promise<void> {
    const s = this.d.settings;
    const stack = synthRunnerStack(stackDir, {
      runnerName: r.name,
      labelSet: set.name,
      controllerId: this.d.store.controllerId(),
      endpoint: this.d.lane ? s.proxmox.endpoint : undefined,
      insecure: this.d.lane ? s.proxmox.insecure : undefined,
      node: copy.node,
      vmid,
      templateVmid: copy.vmid,
      templateNode: copy.sourceNode,
      pool: s.proxmox.pool,
      bridge: s.proxmox.bridge,
      vlan: s.proxmox.vlan,
      linkedClone: s.proxmox.linkedClone,
      datastore: s.proxmox.storage,
      cores: set.cores,
      memoryMb: set.memoryMb,
      swapMb: set.swapMb,
      // Started outside the lane (stepBooting) when we can; the env delivery starts it itself.
      start: !this.d.delivery.startsContainer && !this.d.startContainer,
      deleteTimeoutSec: deleteTimeoutFor(s.timeouts.destroyMs / 1000),
    });
    try {
      await this.d.terraform.prepare(stack.file);
      const started = Date.now();
      const apply = async () => {
        const entered = Date.now();
        if (this.d.lane) this.d.metrics?.phase("lane_wait", (entered - started) / 1000);
        try {
          const out = await this.d.terraform.apply(stack.workingDir, { runner: r.name, lane: copy.key, slot, signal, timeoutMs: s.timeouts.applyMs });
          this.d.metrics?.terraformRun("apply", (Date.now() - entered) / 1000, true);
          this.d.metrics?.phase("apply", (Date.now() - entered) / 1000);
          return out;
        } catch (err) {
          this.d.metrics?.terraformRun("apply", (Date.now() - entered) / 1000, false);
          throw err;
        }
      };
      await (this.d.lane ? this.d.lane.run(copy.key, r.name, apply) : apply());
      const made = await this.vmidOf(stack.workingDir);
      if (made !== vmid) throw new Error(`the stack made vmid ${made}, not the reserved ${vmid}`);
      this.vmidClashes.delete(r.name);
      log.info({ vmid, node: copy.node, ms: Date.now() - started }, "container cloned");
      // Read again: a job may have claimed this warm-pool member while it was being cloned.
      const unclaimed = this.d.store.getRunner(r.name)?.scope === UNCLAIMED;
      this.d.store.setRunnerState(r.name, unclaimed ? "warm" : "booting", { vmid, stackDir, lastError: null }, ["provisioning"]);
      if (unclaimed) log.info("warm-pool runner ready (stopped)");
    } catch (err) {
      if (signal.aborted) throw new Stopped();
      const clashes = this.vmidClashes.get(r.name) ?? 0;
      const clash = isVmidClash(err) && clashes < MAX_VMID_CLASHES;
      const attempts = clash ? r.attempts : r.attempts + 1;
      this.placement.invalidate();
      log.warn({ attempt: attempts, node: copy.node, err: errMessage(err) }, "apply failed: destroying what was made");
      const cleaned = await this.d.terraform.destroy(stack.workingDir, { runner: r.name, signal, timeoutMs: s.timeouts.destroyMs }).then(
        () => true,
        (e) => (log.warn({ err: errMessage(e) }, "cleanup destroy failed"), false),
      );
      if (!cleaned) {
        // Its state still holds what was made there (a node may be down): this runner is retired
        // with its stack, and demand is re-counted, so a fresh runner is placed elsewhere.
        this.d.store.setRunnerState(r.name, "destroying", { attempts, lastError: errMessage(err) }, ["provisioning"]);
        return;
      }
      if (clash) {
        // Another guest has this vmid (PVE's vmlist changed after we checked): a fresh one, at once.
        this.vmidClashes.set(r.name, clashes + 1);
        log.warn({ vmid, clashes: clashes + 1 }, "vmid taken by another guest at clone time: picking a fresh one");
        this.d.store.assignVmid(r.name, null);
        this.d.store.setRunnerState(r.name, "provisioning", { lastError: errMessage(err) }, ["provisioning"]);
        return;
      }
      if (attempts >= s.applyAttempts) {
        log.error({ attempts }, "giving up on this runner; demand is re-counted");
        this.d.store.setRunnerState(r.name, "destroying", { attempts, lastError: errMessage(err) }, ["provisioning"]);
        return;
      }
      this.d.store.setRunnerState(r.name, "provisioning", { attempts, lastError: errMessage(err) }, ["provisioning"]);
      await sleep(s.retryBackoffMs * 2 ** (attempts - 1), signal);
    }
  }

  private async vmidOf(workingDir: string): Promise<number> {
    const out = await this.d.terraform.output(workingDir);
    const v = out.vm_id as unknown;
    const value = typeof v === "object" && v !== null && "value" in v ? (v as { value: unknown }).value : v;
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`stack has no vm_id output (got ${JSON.stringify(v)})`);
    return n;
  }

  private async stepBooting(r: RunnerRow, log: Logger, signal: AbortSignal): Promise<void> {
    const s = this.d.settings;
    const set = s.labelSets.find((x) => x.name === r.labelSet)!;
    const scope = parseScopeKey(r.scope);
    const job = r.madeForJob ? this.d.store.getJob(r.madeForJob) : undefined;
    if (!r.githubRunnerId) {
      // Minted right before the container needs it (unused JIT configs expire within minutes), while
      // it starts: the start task and GitHub's answer overlap instead of adding up.
      // The controller label marks the registration as ours (the sweeper deletes no other).
      const labels = [...set.labels, controllerMarker(this.d.store.controllerId())];
      const minting = this.d.github.generateJitConfig(scope, r.name, labels, job?.installationId);
      minting.catch(() => undefined); // awaited below; a start failure must not leave it unhandled
      let mintStarted = Date.now();
      if (!this.d.delivery.startsContainer && this.d.startContainer) {
        const started = Date.now();
        try {
          await this.d.startContainer(r.node ?? s.proxmox.node, r.vmid!);
        } catch (err) {
          // The config minted meanwhile never reaches a container: its registration goes at once.
          const unused = await minting.catch(() => null);
          if (unused) await this.d.github.deleteRunner(scope, unused.runnerId).catch((e) => log.warn({ err: errMessage(e) }, "could not delete the unused registration; the next mint replaces it"));
          // Like a failed apply: counted, retried with backoff, then given up (and reported).
          const attempts = r.attempts + 1;
          log.warn({ attempt: attempts, err: errMessage(err) }, "container start failed");
          const next: RunnerState = attempts >= s.applyAttempts ? "destroying" : "booting";
          this.d.store.setRunnerState(r.name, next, { attempts, lastError: `start: ${errMessage(err)}` }, ["booting"]);
          if (next === "booting") await sleep(s.retryBackoffMs * 2 ** (attempts - 1), signal);
          return;
        }
        this.d.metrics?.phase("start", (Date.now() - started) / 1000);
        // jit_delivery: what the mint and the hand-over add after the start.
        mintStarted = Date.now();
      }
      const jit = await minting;
      this.d.store.setRunnerState(r.name, "booting", { githubRunnerId: jit.runnerId }, ["booting"]);
      log.info({ githubRunnerId: jit.runnerId }, "JIT runner config minted");
      try {
        // Boot is timed from the hand-over: a fast guest may be online before the helper returns.
        this.deliveredAt.set(r.name, Date.now());
        await this.d.delivery.deliver({ node: r.node ?? s.proxmox.node, vmid: r.vmid!, runner: r.name, jitConfig: jit.encodedJitConfig });
        this.d.metrics?.phase("jit_delivery", (Date.now() - mintStarted) / 1000);
      } catch (err) {
        // The config never reached the container: forget it (the next mint replaces the registration).
        const attempts = r.attempts + 1;
        log.warn({ attempt: attempts, err: errMessage(err) }, "JIT delivery failed");
        const next: RunnerState = attempts >= s.applyAttempts ? "destroying" : "booting";
        this.d.store.setRunnerState(r.name, next, { githubRunnerId: next === "booting" ? null : jit.runnerId, attempts, lastError: `JIT delivery: ${errMessage(err)}` }, ["booting"]);
        if (next === "booting") await sleep(s.retryBackoffMs * 2 ** (attempts - 1), signal);
        return;
      }
    }
    const cur = this.d.store.getRunner(r.name)!;
    const deadline = cur.stateSince + s.timeouts.bootMs;
    while (Date.now() < deadline) {
      if (signal.aborted) throw new Stopped();
      const now = this.d.store.getRunner(r.name)!;
      if (now.state !== "booting") return; // a webhook moved it on (busy/done)
      const info = await this.d.github.getRunner(scope, now.githubRunnerId!, job?.installationId).catch((err) => {
        log.warn({ err: errMessage(err) }, "could not read runner status");
        return null;
      });
      if (info?.status === "online") {
        const state: RunnerState = info.busy ? "busy" : "idle";
        if (this.d.store.setRunnerState(r.name, state, {}, ["booting"])) {
          this.leftBooting(r.name);
          log.info("runner online at GitHub");
        }
        return;
      }
      if (info === undefined && now.githubRunnerId) {
        // Registration gone while booting: it ran a job and was removed before we saw it online.
        log.info("registration already removed: the runner has run its job");
        this.d.store.setRunnerState(r.name, "done", {}, ["booting"]);
        return;
      }
      await this.waitForEvent(r.name, s.onlinePollMs);
    }
    log.warn({ bootMs: s.timeouts.bootMs }, "runner never came online: destroying it, demand is re-counted");
    this.d.store.setRunnerState(r.name, "destroying", { lastError: "boot timeout" }, ["booting"]);
  }

  private async stepIdle(r: RunnerRow, log: Logger): Promise<void> {
    const s = this.d.settings;
    const idleFor = Date.now() - r.stateSince;
    const surplus = !this.stillNeeded(r);
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

  private async stepDestroying(r: RunnerRow, log: Logger, signal: AbortSignal): Promise<void> {
    const s = this.d.settings;
    try {
      if (r.githubRunnerId) {
        const outcome = await this.d.github.deleteRunner(parseScopeKey(r.scope), r.githubRunnerId).catch((err) => {
          log.warn({ err: errMessage(err) }, "could not delete registration; the sweeper removes stale ones");
          return "error";
        });
        if (outcome === "busy") log.warn("registration busy at GitHub while destroying; the payloads say its job is over");
      }
      if (r.stackDir) {
        const started = Date.now();
        const presence = await this.presenceOf(r);
        if (presence.kind === "gone") {
          // Nothing of the stack is left on PVE: its state is retired with the stack dir, as after a destroy.
          await rm(r.stackDir, { recursive: true, force: true });
          log.info({ vmid: r.vmid, node: r.node, why: presence.why }, "container already gone: stack removed without running terraform");
        } else {
          // Nothing secret may be left where a refresh would read it into state (env delivery).
          if (r.vmid && this.d.delivery.beforeDestroy) await this.d.delivery.beforeDestroy(r.node ?? s.proxmox.node, r.vmid);
          if (presence.kind === "unknown") log.info({ why: presence.why }, "container presence unknown: destroying with a refresh");
          // Destroy does not wait behind clones: it never takes the clone lane.
          await this.d.terraform.destroy(join(r.stackDir, "stacks", "runner"), { runner: r.name, signal, timeoutMs: s.timeouts.destroyMs, refresh: presence.kind !== "present" }).catch((err) => {
            this.d.metrics?.terraformRun("destroy", (Date.now() - started) / 1000, false);
            throw err;
          });
          this.d.metrics?.terraformRun("destroy", (Date.now() - started) / 1000, true);
          this.d.metrics?.phase("destroy", (Date.now() - started) / 1000);
          await rm(r.stackDir, { recursive: true, force: true });
          log.info({ ms: Date.now() - started }, "container destroyed, stack removed");
        }
      }
      this.destroyed(r, log);
    } catch (err) {
      if (signal.aborted) throw new Stopped();
      // A destroy that cannot succeed must not pin the runner: without a refresh, bpg's Delete fails
      // on a container deleted since the check (its status read says "does not exist"); with one, PVE
      // checks privileges before existence, so a vmid that left our pool answers 403.
      const presence = await this.presenceOf(r);
      const gone = presence.kind === "gone" || (presence.kind === "unknown" && this.d.containerExists ? !(await this.d.containerExists(r.name).catch(() => true)) : false);
      if (gone && r.stackDir) {
        log.warn({ err: errMessage(err), why: presence.kind === "gone" ? presence.why : "no container of this name on the cluster" }, "destroy failed but no container of this runner exists: stack removed");
        await rm(r.stackDir, { recursive: true, force: true });
        this.destroyed(r, log);
        return;
      }
      log.warn({ err: errMessage(err) }, "destroy failed: retrying");
      await sleep(s.retryBackoffMs, signal);
    }
  }

  /** The container check before and after a destroy; "unknown" when there is none or it throws. */
  private async presenceOf(r: RunnerRow): Promise<ContainerPresence> {
    if (!this.d.containerPresence) return { kind: "unknown", why: "no container check configured" };
    return this.d.containerPresence({ name: r.name, node: r.node, vmid: r.vmid }).catch((err) => ({ kind: "unknown" as const, why: errMessage(err) }));
  }

  /** The runner's container and stack are gone: its final state (failed when it was given up). */
  private destroyed(r: RunnerRow, log: Logger): void {
    const s = this.d.settings;
    const final: RunnerState = r.lastError && !RETIREMENT_REASONS.includes(r.lastError) && r.attempts >= s.applyAttempts ? "failed" : "gone";
    if (this.d.store.setRunnerState(r.name, final, {}, ["destroying"])) this.d.metrics?.phase("runner_lifetime", (Date.now() - r.createdAt) / 1000);
    if (final === "failed") void this.reportFailure(r, log);
    this.deliveredAt.delete(r.name);
  }
}

export type { Scope };
