// The durable store: the webhook inbox, the jobs we know of, and every runner's lifecycle state.
// SQLite (better-sqlite3) so a restart — or a SIGKILL — loses nothing that was acknowledged.
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { newControllerId } from "../lifecycle/ownership.js";
import { WalSync } from "./wal-sync.js";
import { Worker } from "node:worker_threads";

export type JobStatus = "queued" | "waiting" | "in_progress" | "completed";
export type RunnerState =
  | "requested" // counted as supply, nothing spent yet
  | "provisioning" // terraform apply (its clone passes the clone lane)
  | "warm" // a warm-pool member: cloned, stopped, no registration yet; claimed by the next job
  | "booting" // container up, JIT config delivered, waiting for it to come online at GitHub
  | "idle" // online at GitHub, no job yet
  | "busy" // in_progress named it
  | "done" // completed named it, or the guest powered off
  | "destroying" // terraform destroy
  | "gone" // stack dir removed: terminal
  | "failed"; // gave up after retries; its stack is destroyed by the sweeper: terminal once gone

/** Runners in these states are supply for queued jobs of their label set. */
export const SUPPLY_STATES: RunnerState[] = ["requested", "provisioning", "booting", "idle"];
export const LIVE_STATES: RunnerState[] = ["requested", "provisioning", "warm", "booting", "idle", "busy", "done", "destroying"];
/** The scope of a warm-pool member until a job claims it: it is registered nowhere yet. */
export const UNCLAIMED = "";
/** lastError values that say why a healthy runner was retired: not failures. */
export const RETIREMENT_REASONS = ["surplus", "idle timeout", "not needed"];

export interface Delivery {
  guid: string;
  event: string;
  action: string | null;
  jobId: number | null;
  receivedAt: number;
  processedAt: number | null;
  payload: string;
}

export interface JobRow {
  jobId: number;
  runId: number;
  runAttempt: number;
  repo: string; // owner/name
  owner: string;
  installationId: number | null;
  labels: string[];
  labelSet: string | null; // null: not ours
  scope: string | null; // "repo:owner/name" or "org:owner": where its runner must be registered
  status: JobStatus;
  runnerName: string | null;
  conclusion: string | null;
  createdAt: number;
  updatedAt: number;
  /**
   * Set when deliveries disagreed on queued vs waiting (same rank: order cannot decide): GitHub's
   * job API is asked, and recovery asks again until it answers. Null when settled.
   */
  disputedAt: number | null;
}

export interface RunnerRow {
  name: string;
  labelSet: string;
  /** Where it registers; UNCLAIMED ("") for a warm-pool member no job has claimed yet. */
  scope: string;
  state: RunnerState;
  madeForJob: number | null;
  jobId: number | null; // the job GitHub actually gave it
  vmid: number | null;
  githubRunnerId: number | null;
  stackDir: string | null;
  /** The node it was placed on and the template copy it is cloned from ("node/vmid"); null until placed. */
  node: string | null;
  template: string | null;
  attempts: number;
  lastError: string | null;
  createdAt: number;
  stateSince: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS deliveries (
  guid TEXT PRIMARY KEY, event TEXT NOT NULL, action TEXT, job_id INTEGER,
  received_at INTEGER NOT NULL, processed_at INTEGER, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS deliveries_unprocessed ON deliveries(processed_at) WHERE processed_at IS NULL;
CREATE TABLE IF NOT EXISTS jobs (
  job_id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, run_attempt INTEGER NOT NULL, repo TEXT NOT NULL,
  owner TEXT NOT NULL, installation_id INTEGER, labels TEXT NOT NULL, label_set TEXT, scope TEXT,
  status TEXT NOT NULL, runner_name TEXT, conclusion TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, label_set, scope);
CREATE TABLE IF NOT EXISTS runners (
  name TEXT PRIMARY KEY, label_set TEXT NOT NULL, scope TEXT NOT NULL, state TEXT NOT NULL,
  made_for_job INTEGER, job_id INTEGER, vmid INTEGER, github_runner_id INTEGER, stack_dir TEXT,
  attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, created_at INTEGER NOT NULL, state_since INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS runners_state ON runners(state, label_set, scope);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
CREATE INDEX IF NOT EXISTS jobs_updated ON jobs(updated_at);
CREATE INDEX IF NOT EXISTS deliveries_job ON deliveries(job_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runners_github_id ON runners(github_runner_id) WHERE github_runner_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS sightings (key TEXT PRIMARY KEY, first_seen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS template_replacements (
  from_key TEXT PRIMARY KEY, to_node TEXT NOT NULL, to_vmid INTEGER NOT NULL,
  replaced_at INTEGER NOT NULL, destroyed_at INTEGER);
`;

/**
 * No two live runners hold one vmid: a bug in the allocator cannot double-book a container. Made
 * after the columns exist; a database from before it may hold live duplicates (the bug it guards
 * against), so it is made at the first start at which none are left.
 */
const LIVE_VMID_INDEX = `CREATE UNIQUE INDEX IF NOT EXISTS runners_live_vmid ON runners(vmid) WHERE vmid IS NOT NULL AND state NOT IN ('gone', 'failed')`;

/** Columns added after the first release: added in place, so an upgrade keeps its runners. */
const ADDED_COLUMNS: Array<[table: string, column: string, type: string]> = [
  ["runners", "node", "TEXT"],
  ["runners", "template", "TEXT"],
  ["jobs", "disputed_at", "INTEGER"],
  ["deliveries", "body_sha", "TEXT"],
];
/** Made after the columns exist (an upgraded database gets body_sha first). */
const BODY_SHA_INDEX = `CREATE INDEX IF NOT EXISTS deliveries_body_sha ON deliveries(body_sha) WHERE body_sha IS NOT NULL`;

/**
 * The newest finished runners, read on every reconcile (a label set's failure streak) and every
 * status snapshot: without these the table's whole history of the retention window was sorted each
 * time (bench/soak.ts). Partial, so live runners' updates never touch them; a query must repeat the
 * WHERE term as written here for SQLite to use them.
 */
const FINISHED = `state IN ('failed', 'gone')`;
const FINISHED_INDEXES = [
  `CREATE INDEX IF NOT EXISTS runners_finished ON runners(state_since) WHERE ${FINISHED}`,
  `CREATE INDEX IF NOT EXISTS runners_finished_set ON runners(label_set, state_since) WHERE ${FINISHED}`,
];
export const FINISHED_RUNNERS_SQL = `SELECT * FROM runners WHERE label_set = ? AND ${FINISHED} ORDER BY state_since DESC, name LIMIT ?`;
// INDEXED BY: without statistics the planner prefers runners_state for the IN and sorts every finished runner.
export const RECENT_FINISHED_RUNNERS_SQL = `SELECT * FROM runners INDEXED BY runners_finished WHERE ${FINISHED} ORDER BY state_since DESC, name LIMIT ?`;

/**
 * What recording a delivery found: a new one, a GUID we hold (GitHub's redelivery), or a body we
 * hold under another GUID — X-GitHub-Delivery is outside the HMAC, so a captured body can be sent
 * again under fresh GUIDs; GitHub never sends one body twice under two GUIDs.
 */
export type DeliveryRecorded = "fresh" | "duplicate" | "replay";

export interface NewDelivery extends Omit<Delivery, "receivedAt" | "processedAt"> {
  /** SHA-256 (hex) of the raw body, for replay detection; absent for deliveries we make ourselves. */
  bodySha?: string;
}

/**
 * A template copy replaced by a newer build (listener/templates/template-rotation.ts): runners clone from
 * `to` from then on; `from` is destroyed once no runner depends on it (destroyedAt set then).
 */
export interface TemplateReplacement {
  /** The replaced template, "node/vmid" (placement's TemplateCopy key). */
  from: string;
  toNode: string;
  toVmid: number;
  replacedAt: number;
  destroyedAt: number | null;
}

/** Rows removed by one prune. */
export interface PruneReport {
  deliveries: number;
  jobs: number;
  runners: number;
}

const STATUS_RANK: Record<JobStatus, number> = { waiting: 0, queued: 0, in_progress: 1, completed: 2 };

function toDelivery(r: any): Delivery {
  return { guid: r.guid, event: r.event, action: r.action, jobId: r.job_id, receivedAt: r.received_at, processedAt: r.processed_at, payload: r.payload };
}

function toJob(r: any): JobRow {
  return {
    jobId: r.job_id, runId: r.run_id, runAttempt: r.run_attempt, repo: r.repo, owner: r.owner,
    installationId: r.installation_id, labels: JSON.parse(r.labels), labelSet: r.label_set, scope: r.scope,
    status: r.status, runnerName: r.runner_name, conclusion: r.conclusion, createdAt: r.created_at, updatedAt: r.updated_at,
    disputedAt: r.disputed_at ?? null,
  };
}

function toRunner(r: any): RunnerRow {
  return {
    name: r.name, labelSet: r.label_set, scope: r.scope, state: r.state, madeForJob: r.made_for_job, jobId: r.job_id,
    vmid: r.vmid, githubRunnerId: r.github_runner_id, stackDir: r.stack_dir, node: r.node ?? null, template: r.template ?? null, attempts: r.attempts,
    lastError: r.last_error, createdAt: r.created_at, stateSince: r.state_since,
  };
}

export class Store {
  private readonly db: Database.Database;
  /** `path`: the SQLite file (its directory is made), ":memory:", or an open database (a snapshot). */
  constructor(path: string | Database.Database, private readonly now: () => number = Date.now) {
    if (typeof path === "string" && path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    this.db = typeof path === "string" ? new Database(path) : path;
    this.db.pragma("journal_mode = WAL");
    // FULL: a delivery acknowledged with 2xx must survive power loss, not just a process crash.
    this.db.pragma("synchronous = FULL");
    this.db.exec(SCHEMA);
    for (const [table, column, type] of ADDED_COLUMNS) {
      const has = (this.sql(`SELECT 1 FROM pragma_table_info(?) WHERE name = ?`).get(table, column) as unknown) !== undefined;
      if (!has) this.db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
    }
    this.db.exec(BODY_SHA_INDEX);
    for (const index of FINISHED_INDEXES) this.db.exec(index);
    try {
      this.db.exec(LIVE_VMID_INDEX);
    } catch {
      // Live duplicates from before the index: allocation still skips held ids (heldVmids).
    }
  }

  close(): void {
    this.checkpointer?.postMessage("close");
    this.checkpointer = null;
    this.db.close();
    const wal = this.wal;
    this.wal = null;
    void wal?.close().catch(() => undefined);
  }

  // ---- durability off the event loop ----

  private checkpointer: Worker | null = null;

  /**
   * Moves checkpoints off the event loop: a worker thread with its own connection checkpoints the
   * WAL every `intervalMs` (wal-checkpoint-worker.ts). This connection keeps a checkpoint of its
   * own only as a safety net, past `fallbackPages` of WAL (the worker fell behind or died), and
   * takes them all back (SQLite's default, 1,000 pages) if the worker fails.
   */
  checkpointInBackground(o: { intervalMs?: number; fallbackPages?: number; onError?: (message: string) => void } = {}): void {
    if (this.db.memory || this.checkpointer) return;
    this.sql(`PRAGMA wal_autocheckpoint = ${Math.max(1000, Math.floor(o.fallbackPages ?? 16_000))}`).run();
    const worker = new Worker(new URL("./wal-checkpoint-worker.js", import.meta.url), { workerData: { file: this.db.name, intervalMs: o.intervalMs ?? 1000 } });
    worker.unref();
    const giveBack = (message: string) => {
      if (this.checkpointer !== worker) return;
      this.checkpointer = null;
      void worker.terminate();
      if (this.db.open) this.sql(`PRAGMA wal_autocheckpoint = 1000`).run();
      o.onError?.(message);
    };
    worker.on("message", (m: { error?: string }) => m.error !== undefined && giveBack(m.error));
    worker.on("error", (err) => giveBack(err.message));
    worker.on("exit", (code) => this.checkpointer === worker && giveBack(`checkpoint thread exited (${code})`));
    this.checkpointer = worker;
  }

  /** Stops the checkpoint thread and waits until it has closed its connection. */
  async stopBackgroundCheckpoints(): Promise<void> {
    const worker = this.checkpointer;
    if (!worker) return;
    this.checkpointer = null;
    const exited = new Promise<void>((r) => worker.once("exit", () => r()));
    // Unref'd while it runs (it must not keep a process alive); waited for now.
    worker.ref();
    worker.postMessage("close");
    await exited;
  }

  /** The WAL file we sync (null for an in-memory database), opened at the first sync. */
  private wal: FileHandle | null = null;
  private readonly walSync = new WalSync(() => this.datasyncWal());

  /**
   * Makes every commit so far durable, the ones made with `{ sync: false }` included: one fdatasync
   * of the WAL in the thread pool, shared by everyone waiting (wal-sync.ts says why that is FULL's
   * guarantee). A webhook is acknowledged only after this.
   */
  syncWal(): Promise<void> {
    return this.walSync.sync();
  }

  /** The WAL sync running now (null when none): webhook commits gather until it ends. */
  walSyncInFlight(): Promise<void> | null {
    return this.walSync.inFlight();
  }

  private async datasyncWal(): Promise<void> {
    if (this.db.memory) return;
    const path = `${this.db.name}-wal`;
    // The same file for as long as this connection is open: SQLite deletes the WAL only when the
    // last connection to the database closes (and makes a new one at the next open).
    this.wal ??= await open(path, "r+");
    await this.wal.datasync();
  }

  private readonly statements = new Map<string, Database.Statement>();
  /** A prepared statement, compiled once: compiling on every call was a fair share of a busy webhook's time. */
  private sql(text: string): Database.Statement {
    let st = this.statements.get(text);
    if (!st) {
      // Bounded: IN (...) lists of varying length make new texts.
      if (this.statements.size >= 256) this.statements.clear();
      st = this.db.prepare(text);
      this.statements.set(text, st);
    }
    return st;
  }

  // ---- inbox ----

  /** Records a delivery before it is acknowledged. Returns false for a duplicate GUID (a redelivery we already hold) or a replayed body. */
  recordDelivery(d: NewDelivery): boolean {
    return this.recordDeliveryChecked(d) === "fresh";
  }

  /**
   * Records a delivery unless its GUID is held ("duplicate") or, given its body's hash, the same
   * body is held under another GUID ("replay": not recorded, so never processed). Rows live for
   * the retention window (prune), which is therefore the replay window too.
   */
  recordDeliveryChecked(d: NewDelivery): DeliveryRecorded {
    if (this.hasDelivery(d.guid)) return "duplicate";
    if (d.bodySha && this.sql(`SELECT 1 FROM deliveries WHERE body_sha = ?`).get(d.bodySha) !== undefined) return "replay";
    this
      .sql(`INSERT INTO deliveries (guid, event, action, job_id, received_at, payload, body_sha) VALUES (?, ?, ?, ?, ?, ?, ?)`)
      .run(d.guid, d.event, d.action, d.jobId, this.now(), d.payload, d.bodySha ?? null);
    return "fresh";
  }

  /** recordDelivery for a batch, in one transaction (one fsync): a fresh flag per delivery. */
  recordDeliveries(ds: NewDelivery[]): boolean[] {
    return this.recordDeliveriesChecked(ds).map((r) => r === "fresh");
  }

  /** recordDeliveryChecked for a batch, in one transaction (one fsync; none with `sync: false`, see syncWal). */
  recordDeliveriesChecked(ds: NewDelivery[], options: { sync?: boolean } = {}): DeliveryRecorded[] {
    return this.transaction(() => ds.map((d) => this.recordDeliveryChecked(d)), options);
  }

  /**
   * Retention: removes what is older than `before` (ms since the epoch) and finished. Never a
   * delivery not yet processed, nor one of a job of ours still open; never a job of ours still
   * open or named by a live runner (jobs not ours are never acted on: they go by age alone); never
   * a runner that is not gone or failed. One transaction.
   */
  prune(before: number): PruneReport {
    return this.transaction(() => {
      const deliveries = this
        .sql(
          `DELETE FROM deliveries WHERE processed_at IS NOT NULL AND received_at < ?
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = deliveries.job_id AND j.label_set IS NOT NULL AND j.status != 'completed')`,
        )
        .run(before).changes;
      const jobs = this
        .sql(
          `DELETE FROM jobs WHERE updated_at < ? AND (status = 'completed' OR label_set IS NULL)
           AND NOT EXISTS (SELECT 1 FROM runners r WHERE r.state NOT IN ('gone', 'failed') AND (r.made_for_job = jobs.job_id OR r.job_id = jobs.job_id))`,
        )
        .run(before).changes;
      const runners = this.sql(`DELETE FROM runners WHERE state IN ('gone', 'failed') AND state_since < ?`).run(before).changes;
      return { deliveries, jobs, runners };
    });
  }

  markProcessed(guid: string): void {
    this.sql(`UPDATE deliveries SET processed_at = ? WHERE guid = ?`).run(this.now(), guid);
  }

  /** Whether a delivery is recorded and not yet applied, without reading its payload. */
  isUnprocessedDelivery(guid: string): boolean {
    return this.sql(`SELECT 1 FROM deliveries WHERE guid = ? AND processed_at IS NULL`).get(guid) !== undefined;
  }

  /** One delivery, if recorded and not yet applied. */
  unprocessedDelivery(guid: string): Delivery | undefined {
    const r = this.sql(`SELECT * FROM deliveries WHERE guid = ? AND processed_at IS NULL`).get(guid);
    return r ? toDelivery(r) : undefined;
  }

  /**
   * Runs `fn` in one transaction: one commit (one fsync) for several writes. With `sync: false` the
   * commit is not synced (synchronous=NORMAL): it becomes durable with the next synced commit or
   * syncWal(), since the WAL is replayed in order; after a power loss it may be missing, never torn.
   * Only for writes that can be made again from durable ones, or that syncWal() waits for.
   * Nested calls are savepoints of the outer transaction and follow its setting.
   */
  transaction<T>(fn: () => T, options: { sync?: boolean } = {}): T {
    if (options.sync !== false || this.db.inTransaction) return this.db.transaction(fn)();
    this.sql("PRAGMA synchronous = NORMAL").run();
    try {
      return this.db.transaction(fn)();
    } finally {
      this.sql("PRAGMA synchronous = FULL").run();
    }
  }

  /** Deliveries acknowledged but not yet applied (e.g. the process died in between), oldest first. */
  unprocessedDeliveries(): Delivery[] {
    return this
      .sql(`SELECT * FROM deliveries WHERE processed_at IS NULL ORDER BY received_at, rowid`)
      .all()
      .map(toDelivery);
  }

  /** The commit a job runs for, from its first recorded delivery (null for reconciled jobs). */
  jobHeadSha(jobId: number): string | null {
    const r = this.sql(`SELECT payload FROM deliveries WHERE job_id = ? ORDER BY received_at LIMIT 1`).get(jobId) as { payload: string } | undefined;
    if (!r) return null;
    try {
      const sha = (JSON.parse(r.payload) as { workflow_job?: { head_sha?: unknown } }).workflow_job?.head_sha;
      return typeof sha === "string" && /^[0-9a-f]{40}$/.test(sha) ? sha : null;
    } catch {
      return null;
    }
  }

  hasDelivery(guid: string): boolean {
    return this.sql(`SELECT 1 FROM deliveries WHERE guid = ?`).get(guid) !== undefined;
  }

  // ---- jobs ----

  getJob(jobId: number): JobRow | undefined {
    const r = this.sql(`SELECT * FROM jobs WHERE job_id = ?`).get(jobId);
    return r ? toJob(r) : undefined;
  }

  /**
   * Applies a job event. Status only moves forward (queued/waiting → in_progress → completed), because
   * deliveries are duplicated and reordered: a late `queued` must not resurrect a completed job.
   * queued and waiting rank the same (an approval turns waiting into queued; a redelivered `waiting`
   * can arrive after it), so order cannot decide between them: the stored status is kept and the job
   * marked disputed, for GitHub's job API to settle (listener/lifecycle/job-status.ts).
   * Returns the stored row, whether anything changed, and whether this event raised a dispute.
   */
  applyJobEvent(ev: Omit<JobRow, "createdAt" | "updatedAt" | "disputedAt">): { job: JobRow; changed: boolean; disputed: boolean } {
    const tx = this.db.transaction(() => {
      const cur = this.getJob(ev.jobId);
      const now = this.now();
      if (!cur) {
        // The cached statement: compiling this insert for every new job was 15 % of the listener's
        // time applying deliveries under load (bench/webhook-load.ts, own-process breakdown).
        this
          .sql(
            `INSERT INTO jobs (job_id, run_id, run_attempt, repo, owner, installation_id, labels, label_set, scope, status, runner_name, conclusion, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(ev.jobId, ev.runId, ev.runAttempt, ev.repo, ev.owner, ev.installationId, JSON.stringify(ev.labels), ev.labelSet, ev.scope, ev.status, ev.runnerName, ev.conclusion, now, now);
        return { job: this.getJob(ev.jobId)!, changed: true, disputed: false };
      }
      if (STATUS_RANK[ev.status] === STATUS_RANK[cur.status] && ev.status !== cur.status && cur.status !== "completed") {
        // Only jobs of ours are worth a question to GitHub.
        if (cur.labelSet === null) return { job: cur, changed: false, disputed: false };
        this.sql(`UPDATE jobs SET disputed_at = COALESCE(disputed_at, ?), updated_at = ? WHERE job_id = ?`).run(now, now, ev.jobId);
        return { job: this.getJob(ev.jobId)!, changed: true, disputed: true };
      }
      const forward = STATUS_RANK[ev.status] > STATUS_RANK[cur.status];
      const runnerName = cur.runnerName ?? ev.runnerName;
      const learnsRunner = runnerName !== cur.runnerName;
      if (!forward && !learnsRunner) return { job: cur, changed: false, disputed: false };
      const status = forward ? ev.status : cur.status;
      const conclusion = forward ? ev.conclusion : cur.conclusion;
      // Past queued/waiting there is nothing left to dispute.
      this
        .sql(`UPDATE jobs SET status = ?, runner_name = ?, conclusion = ?, updated_at = ?, disputed_at = CASE WHEN ? THEN NULL ELSE disputed_at END WHERE job_id = ?`)
        .run(status, runnerName, conclusion, now, forward ? 1 : 0, ev.jobId);
      return { job: this.getJob(ev.jobId)!, changed: true, disputed: false };
    });
    return tx();
  }

  setJobStatus(jobId: number, status: JobStatus, conclusion: string | null = null): void {
    this.sql(`UPDATE jobs SET status = ?, conclusion = COALESCE(?, conclusion), updated_at = ? WHERE job_id = ?`).run(status, conclusion, this.now(), jobId);
  }

  /**
   * GitHub's answer about a job: held if it moves the job forward or is the other of queued/waiting
   * (never back: an answer older than a delivery applied meanwhile must not undo it); any dispute
   * is settled. Returns the stored row.
   */
  settleJobStatus(jobId: number, status: JobStatus, conclusion: string | null = null): JobRow | undefined {
    return this.transaction(() => {
      const cur = this.getJob(jobId);
      if (!cur) return undefined;
      const takes = STATUS_RANK[status] > STATUS_RANK[cur.status] || (STATUS_RANK[status] === STATUS_RANK[cur.status] && status !== cur.status && cur.status !== "completed");
      if (takes) this.setJobStatus(jobId, status, conclusion);
      if (takes || cur.disputedAt !== null) this.sql(`UPDATE jobs SET disputed_at = NULL WHERE job_id = ?`).run(jobId);
      return this.getJob(jobId);
    });
  }

  /** Jobs of ours no runner has started yet (queued or waiting), for recovery to check at GitHub. */
  unstartedJobs(): JobRow[] {
    return this.sql(`SELECT * FROM jobs WHERE status IN ('queued', 'waiting') AND label_set IS NOT NULL ORDER BY created_at, job_id`).all().map(toJob);
  }

  /** Demand: queued jobs of ours, per label set and scope. */
  queuedJobs(labelSet?: string, scope?: string): JobRow[] {
    return this
      .sql(
        `SELECT * FROM jobs WHERE status = 'queued' AND label_set IS NOT NULL
         AND (? IS NULL OR label_set = ?) AND (? IS NULL OR scope = ?) ORDER BY created_at, job_id`,
      )
      .all(labelSet ?? null, labelSet ?? null, scope ?? null, scope ?? null)
      .map(toJob);
  }

  jobs(): JobRow[] {
    return this.sql(`SELECT * FROM jobs ORDER BY job_id`).all().map(toJob);
  }

  // Reads below are bounded: the tables keep every job and runner of the retention window (prune),
  // and these run on every reconcile, status page or sweep.

  jobsByIds(ids: number[]): JobRow[] {
    if (ids.length === 0) return [];
    const out: JobRow[] = [];
    // SQLite caps bound parameters (32,766 by default): chunk.
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      out.push(...this.sql(`SELECT * FROM jobs WHERE job_id IN (${chunk.map(() => "?").join(", ")})`).all(...chunk).map(toJob));
    }
    return out;
  }

  /** The newest jobs first. */
  recentJobs(limit: number): JobRow[] {
    return this.sql(`SELECT * FROM jobs ORDER BY created_at DESC, job_id DESC LIMIT ?`).all(limit).map(toJob);
  }

  /** Jobs of ours updated since `t`. */
  jobsUpdatedSince(t: number): JobRow[] {
    return this.sql(`SELECT * FROM jobs WHERE label_set IS NOT NULL AND updated_at >= ? ORDER BY updated_at`).all(t).map(toJob);
  }

  /** Every scope a runner was made in or a job of ours was seen for. */
  scopes(): string[] {
    return (this.sql(`SELECT scope FROM runners WHERE scope != '' UNION SELECT scope FROM jobs WHERE scope IS NOT NULL`).all() as Array<{ scope: string }>).map((r) => r.scope);
  }

  // ---- runners ----

  private readonly runnerWatchers = new Set<(r: RunnerRow) => void>();

  /** Calls `fn` with the row after every runner insert and state change (the demo shows each one). Returns an unsubscribe. */
  watchRunners(fn: (r: RunnerRow) => void): () => void {
    this.runnerWatchers.add(fn);
    return () => this.runnerWatchers.delete(fn);
  }

  private runnerChanged(name: string): void {
    if (this.runnerWatchers.size === 0) return;
    const r = this.getRunner(name);
    if (r) for (const fn of this.runnerWatchers) fn(r);
  }

  insertRunner(r: { name: string; labelSet: string; scope: string; madeForJob: number | null }): RunnerRow {
    const now = this.now();
    this
      .sql(`INSERT INTO runners (name, label_set, scope, state, made_for_job, created_at, state_since) VALUES (?, ?, ?, 'requested', ?, ?, ?)`)
      .run(r.name, r.labelSet, r.scope, r.madeForJob, now, now);
    this.runnerChanged(r.name);
    return this.getRunner(r.name)!;
  }

  getRunner(name: string): RunnerRow | undefined {
    const r = this.sql(`SELECT * FROM runners WHERE name = ?`).get(name);
    return r ? toRunner(r) : undefined;
  }

  /** Moves a runner to a new state, optionally only from the given states (returns false if it was elsewhere). */
  setRunnerState(name: string, state: RunnerState, patch: Partial<Pick<RunnerRow, "vmid" | "githubRunnerId" | "stackDir" | "jobId" | "lastError" | "attempts">> = {}, from?: RunnerState[]): boolean {
    const cur = this.getRunner(name);
    if (!cur || (from && !from.includes(cur.state))) return false;
    const next = { ...cur, ...patch };
    const since = state === cur.state ? cur.stateSince : this.now();
    this
      .sql(`UPDATE runners SET state = ?, vmid = ?, github_runner_id = ?, stack_dir = ?, job_id = ?, last_error = ?, attempts = ?, state_since = ? WHERE name = ?`)
      .run(state, next.vmid, next.githubRunnerId, next.stackDir, next.jobId, next.lastError, next.attempts, since, name);
    if (state !== cur.state) {
      if (state === "gone" || state === "failed") this.finishedSinceStart[state] = (this.finishedSinceStart[state] ?? 0) + 1;
      this.runnerChanged(name);
    }
    return true;
  }

  runners(states?: RunnerState[]): RunnerRow[] {
    // Filtered in SQL (runners_state index): the table keeps every runner ever made, and the live
    // ones are read on every reconcile.
    if (!states) return this.sql(`SELECT * FROM runners ORDER BY created_at, name`).all().map(toRunner);
    if (states.length === 0) return [];
    return this
      .sql(`SELECT * FROM runners WHERE state IN (${states.map(() => "?").join(", ")}) ORDER BY created_at, name`)
      .all(...states)
      .map(toRunner);
  }

  /** Records where a runner goes (before its apply, so concurrent placements see it). */
  setPlacement(name: string, node: string, template: string): void {
    this.sql(`UPDATE runners SET node = ?, template = ? WHERE name = ?`).run(node, template, name);
  }

  // ---- template replacements ----

  templateReplacements(): TemplateReplacement[] {
    return (this.sql(`SELECT * FROM template_replacements ORDER BY replaced_at, from_key`).all() as any[]).map((r) => ({
      from: r.from_key, toNode: r.to_node, toVmid: r.to_vmid, replacedAt: r.replaced_at, destroyedAt: r.destroyed_at ?? null,
    }));
  }

  /** Records that runners clone from toNode/toVmid instead of `from` from now on. */
  recordTemplateReplacement(from: string, toNode: string, toVmid: number): void {
    this.sql(`INSERT INTO template_replacements (from_key, to_node, to_vmid, replaced_at) VALUES (?, ?, ?, ?)`).run(from, toNode, toVmid, this.now());
  }

  markTemplateDestroyed(from: string): void {
    this.sql(`UPDATE template_replacements SET destroyed_at = ? WHERE from_key = ? AND destroyed_at IS NULL`).run(this.now(), from);
  }

  /** Runners not yet gone or failed that were placed on a template copy (their containers are its linked clones). */
  runnersOnTemplate(key: string): number {
    return (this.sql(`SELECT COUNT(*) AS n FROM runners WHERE template = ? AND state NOT IN ('gone', 'failed')`).get(key) as { n: number }).n;
  }

  // ---- vmids ----

  /** The vmids live runners hold (released when a runner is gone or failed). */
  heldVmids(): Set<number> {
    const rows = this.sql(`SELECT vmid FROM runners WHERE vmid IS NOT NULL AND state NOT IN ('gone', 'failed')`).all() as Array<{ vmid: number }>;
    return new Set(rows.map((r) => r.vmid));
  }

  /**
   * Records a runner's vmid; false when another live runner holds it (the unique index, or the
   * same check where an old database has no index yet). null clears it.
   */
  assignVmid(name: string, vmid: number | null): boolean {
    return this.transaction(() => {
      if (vmid !== null) {
        const holder = this.sql(`SELECT name FROM runners WHERE vmid = ? AND name != ? AND state NOT IN ('gone', 'failed')`).get(vmid, name);
        if (holder) return false;
      }
      try {
        return this.sql(`UPDATE runners SET vmid = ? WHERE name = ?`).run(vmid, name).changes === 1;
      } catch (err) {
        if ((err as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE") return false;
        throw err;
      }
    });
  }

  /** The last vmid handed out (the allocator's rotating cursor), if any. */
  vmidCursor(): number | null {
    const r = this.sql(`SELECT value FROM meta WHERE key = 'vmid_cursor'`).get() as { value: string } | undefined;
    return r ? Number(r.value) : null;
  }

  setVmidCursor(vmid: number): void {
    this.sql(`INSERT INTO meta (key, value) VALUES ('vmid_cursor', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(String(vmid));
  }

  // ---- ownership ----

  /**
   * This installation's controller id (listener/lifecycle/ownership.ts): made at the first call and kept for
   * good. Every registration and container we make is marked with it; nothing else is ours.
   */
  controllerId(): string {
    if (this.controller === null) {
      this.sql(`INSERT OR IGNORE INTO meta (key, value) VALUES ('controller_id', ?)`).run(newControllerId());
      this.controller = (this.sql(`SELECT value FROM meta WHERE key = 'controller_id'`).get() as { value: string }).value;
    }
    return this.controller;
  }
  private controller: string | null = null;

  // ---- sweeper sightings ----

  /**
   * When the sweeper first saw something of ours that has no record (a container, a registration):
   * PVE and GitHub tell no creation time, so its age for the grace counts from the first sighting.
   * Recorded at the first call (at `now`), kept until forgotten.
   */
  firstSeen(key: string, now: number): number {
    this.sql(`INSERT OR IGNORE INTO sightings (key, first_seen) VALUES (?, ?)`).run(key, now);
    return (this.sql(`SELECT first_seen FROM sightings WHERE key = ?`).get(key) as { first_seen: number }).first_seen;
  }

  /** Forgets every sighting not in `seen` whose key starts with `prefix` (it was not there this pass). */
  forgetSightings(prefix: string, seen: ReadonlySet<string>): void {
    const rows = this.sql(`SELECT key FROM sightings WHERE substr(key, 1, length(?)) = ?`).all(prefix, prefix) as Array<{ key: string }>;
    const del = this.sql(`DELETE FROM sightings WHERE key = ?`);
    this.db.transaction(() => {
      for (const r of rows) if (!seen.has(r.key)) del.run(r.key);
    })();
  }

  /** Whether a GitHub runner id is one we minted and recorded (for any runner, in any state). */
  mintedGithubRunnerId(id: number): boolean {
    return this.sql(`SELECT 1 FROM runners WHERE github_runner_id = ?`).get(id) !== undefined;
  }

  /**
   * Gives the oldest unclaimed warm-pool member of a label set to a job: it takes the job's scope
   * and is driven on from there. Members already cloned go first, then those still being made.
   */
  claimWarm(labelSet: string, scope: string, jobId: number): RunnerRow | undefined {
    const tx = this.db.transaction(() => {
      const r = this
        .sql(
          `SELECT name, state FROM runners WHERE label_set = ? AND scope = '' AND state IN ('warm', 'provisioning', 'requested')
           ORDER BY CASE state WHEN 'warm' THEN 0 WHEN 'provisioning' THEN 1 ELSE 2 END, created_at, name LIMIT 1`,
        )
        .get(labelSet) as { name: string; state: RunnerState } | undefined;
      if (!r) return undefined;
      // A warm member's "since" restarts: boot is timed from the claim.
      this
        .sql(`UPDATE runners SET scope = ?, made_for_job = ?, state = ?, state_since = ? WHERE name = ?`)
        .run(scope, jobId, r.state === "warm" ? "booting" : r.state, this.now(), r.name);
      return this.getRunner(r.name);
    });
    const claimed = tx();
    if (claimed) this.runnerChanged(claimed.name);
    return claimed;
  }

  /** Runners that became gone or failed through this store since it was opened. */
  private readonly finishedSinceStart: Partial<Record<RunnerState, number>> = {};

  /**
   * Runners per state: the live ones counted in SQL (the state index, as many rows as live
   * runners), the finished ones since start (pve_runners_runners' help): counting the finished
   * records instead scanned every one the retention window keeps, on every status snapshot and
   * scrape (bench/soak.ts).
   */
  countByState(): Record<string, number> {
    const out: Record<string, number> = {};
    const rows = this.sql(`SELECT state, COUNT(*) AS n FROM runners WHERE state IN (${LIVE_STATES.map(() => "?").join(", ")}) GROUP BY state`).all(...LIVE_STATES);
    for (const r of rows as Array<{ state: string; n: number }>) out[r.state] = r.n;
    for (const [state, n] of Object.entries(this.finishedSinceStart)) out[state] = n;
    return out;
  }

  /** The newest finished (failed or gone) runners, of every label set. */
  recentFinishedRunners(limit: number): RunnerRow[] {
    return this.sql(RECENT_FINISHED_RUNNERS_SQL).all(limit).map(toRunner);
  }

  /** The most recently finished (failed or gone) runners of a label set, newest first. */
  finishedRunners(labelSet: string, limit: number): RunnerRow[] {
    return this.sql(FINISHED_RUNNERS_SQL).all(labelSet, limit).map(toRunner);
  }

  countRunners(states: RunnerState[], labelSet?: string, scope?: string): number {
    return this.runners(states).filter((r) => (!labelSet || r.labelSet === labelSet) && (!scope || r.scope === scope)).length;
  }
}
