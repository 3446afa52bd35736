// Webhook acknowledgement under load, while terraform applies run: the stand-in world plus the real
// listener (test/e2e/harness.ts), `applies` queued jobs of ours, and at the same time a steady
// stream of signed workflow_job deliveries that are recorded but make no runner (an unlisted
// repository, or labels no set has). Figures, never pass/fail; each beside its ratio to a baseline
// measured in the same run: the same sender against a bare express app (express.raw, 202). A
// middle phase, the real listener in a fresh world with no jobs, splits the listener's own cost
// from what the applies (terraform and provider processes, spawns, clone traffic) add.
//
// Instrumented in the window, to say where the time went: the main thread's scheduler accounting
// (on a CPU / waiting for one), event-loop delay and utilization, the synchronous time of the
// store and pipeline methods on the delivery path and of child_process.spawn, live terraform
// processes, and one bare durable SQLite commit on the same disk for scale.
//
// Sender: hand-rolled, open loop (fixed arrival rate, latency counted from each request's due
// time), in a worker thread with a node:http keep-alive agent: bench/webhook-sender.ts.
import express from "express";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { Worker } from "node:worker_threads";
import { loadavg } from "node:os";
import { readFileSync, rmSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import Database from "better-sqlite3";
import childProcess from "node:child_process";
import { syncBuiltinESMExports } from "node:module";
import { pino } from "pino";
import { listen } from "../listener/http/http-listen.js";
import { startE2E, waitFor, type E2E } from "../test/e2e/harness.js";
import { startWorld } from "../sim/world.js";
import { ListenerProcess, freePort } from "../sim/fault-run.js";
import { Store } from "../listener/store/store.js";
import { SENDER_KIND, type ProcSample, type SenderConfig, type SenderResult } from "./webhook-sender.js";
import { fmtMs, fmtX, ratio, summarize, type Summary } from "./stats.js";
import { PROBE_OUT_ENV, type ProbeResult } from "./listener-probe.js";

export interface WebhookLoadOptions {
  deliveriesPerSecond: number;
  seconds: number;
  /** Jobs of ours queued at the fake GitHub first: the listener clones (terraform apply) one runner each. */
  applies: number;
  /** The world's time scale (PVE task latency, guest boot, job run time). */
  timeScale: number;
}

export interface SenderSide {
  /** Deliveries in the timed window (a few warm-up ones before it are not timed but are checked). */
  sent: number;
  ok2xx: number;
  non2xx: number;
  /** No answer at all (connection error, timeout), by reason. */
  errors: number;
  errorKinds: Record<string, number>;
  /** Sent / first-to-last send span. */
  achievedPerSecond: number;
  /** ms from each request's due time to the end of its answer (open loop: includes any queueing). */
  latency: Summary;
  /** ms from the actual write to the end of the answer. */
  latencyFromSend: Summary;
  /** ms each send started after its due time (the sender's own lateness). */
  sendLag: Summary;
  sockets: number;
}

/** One run of the sender against the real listener in a fresh world. */
export interface ListenerPhase {
  side: SenderSide;
  lost: {
    /** Every GUID sent to the listener, warm-up included. */
    guids: number;
    notAnswered2xx: number;
    notInStore: number;
    /** Not answered 2xx, or answered but not in the store. */
    lost: number;
    /** Answered 2xx but not in the store: the durability promise broken (not answered in time is the other kind of lost). */
    ackedNotInStore: number;
  };
  /** Deliveries recorded but not yet applied by the pipeline when the window closed (processing lag). */
  unprocessedAtWindowEnd: number;
  /** Runners the junk deliveries made, and junk jobs stored as ours: both should be 0. */
  junkRunners: number;
  junkJobsOurs: number;
  applies: {
    jobs: number;
    runnersMade: number;
    /** Runners of ours past provisioning (apply finished) when the window opened and when it closed. */
    clonedAtWindowStart: number;
    clonedAtWindowEnd: number;
    /** Live terraform / provider stand-in processes under this process, sampled every 250 ms in the window. */
    terraformProcs: { max: number; mean: number };
    providerProcs: { max: number; mean: number };
  };
  /** The listener's (main thread's) event loop in the window. */
  listenerLoop: {
    delayMs: { p50: number; p99: number; max: number };
    utilization: number;
    /** Synchronous time of store.recordDelivery (insert, commit with fsync: synchronous=FULL), ms per call. */
    recordDeliveryMs: Summary;
    /** Synchronous time of pipeline.handleDelivery (apply the event: two more commits, and a reconcile pass), ms per call. */
    handleDeliveryMs: Summary;
    /** Share of the window the main thread spent inside those two. */
    webhookShareOfWindow: number;
    /**
     * The main thread's scheduler accounting (/proc/self/task/<pid>/schedstat), as shares of the
     * window: on a CPU, runnable but waiting for one (CPU starvation), and the rest of the busy
     * time (utilization - both): off CPU while busy, i.e. blocked in a syscall such as fsync.
     * null where /proc has no schedstat.
     */
    mainThread: { onCpu: number; waitingForCpu: number; blockedWhileBusy: number } | null;
    /**
     * Every call in the window (from any caller) of the store and pipeline methods on the delivery
     * path, and of child_process.spawn (terraform), synchronous time: what the main thread's time
     * went to. Each store write is one SQLite commit, fsynced (WAL, synchronous=FULL).
     */
    breakdown: Record<string, { calls: number; totalMs: number; p50: number; p99: number; max: number }>;
  };
  /** The ten slowest answers and when in the window (ms after the first due time) they were due. */
  slowest: Array<{ latencyMs: number; atWindowMs: number }>;
  /** Per second of the window (by due time): requests due, answered 2xx, latency p50/p99/max of those answered, ms. */
  timeline: Array<{ second: number; due: number; ok: number; p50: number; p99: number; max: number }>;
  durationsMs: { worldStart: number; waitForApplies: number; window: number; verify: number; stop: number };
  /**
   * One durable commit on this disk right before the window: a bare better-sqlite3 file (WAL,
   * synchronous=FULL), 200 single-row inserts of a 6 KB payload, ms. The ideal floor of an ack.
   */
  diskCommitMs: Summary;
  /** os.loadavg()[0] before and after: this machine may be shared, and its load moves every figure. */
  loadAvg: { before: number; after: number };
}

export interface WebhookLoadResult {
  options: WebhookLoadOptions;
  sender: string;
  /** The same sender, same rate, against a bare express app (express.raw, 202) in this process. */
  baseline: SenderSide;
  /** The real listener in a fresh world with no jobs: the listener's own cost without terraform. */
  idle: ListenerPhase;
  /** The real listener while `applies` jobs of ours are being cloned: the figure the issue asks for. */
  ours: ListenerPhase;
  /** Against the baseline's: ours (under applies) and idle. */
  ratio: { p50: number; p99: number; max: number; idleP50: number; idleP99: number };
  target: { p99Ms: number; p99OverTarget: number; zeroLost: boolean };
  durationsMs: { baseline: number; idle: number; ours: number; total: number };
}

const senderModule = (): { url: URL; execArgv: string[] } =>
  import.meta.url.endsWith(".ts")
    ? { url: new URL("./webhook-sender.ts", import.meta.url), execArgv: ["--import", "tsx"] }
    : { url: new URL("./webhook-sender.js", import.meta.url), execArgv: [] };

interface Sender {
  /** Starts the timed window (after the worker built and signed every body). */
  go(): Promise<SenderResult>;
  stop(): Promise<void>;
}

async function startSender(cfg: Omit<SenderConfig, "kind" | "rootPid">): Promise<Sender> {
  const m = senderModule();
  const worker = new Worker(m.url, { workerData: { ...cfg, kind: SENDER_KIND, rootPid: process.pid } satisfies SenderConfig, execArgv: m.execArgv });
  const failed = new Promise<never>((_, reject) => {
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`webhook sender exited (${code})`)));
  });
  failed.catch(() => undefined);
  const next = () => Promise.race([new Promise<any>((r) => worker.once("message", r)), failed]);
  const ready = await next();
  if (!ready.ready) throw new Error(`webhook sender failed: ${ready.error}`);
  return {
    async go() {
      const done = next();
      worker.postMessage("go");
      const msg = await done;
      if (!msg.ok) throw new Error(`webhook sender failed: ${msg.error}`);
      return msg.result as SenderResult;
    },
    async stop() {
      await worker.terminate();
    },
  };
}

function side(r: SenderResult): SenderSide {
  const n = r.status.length;
  let ok = 0;
  let non2xx = 0;
  let errors = 0;
  for (let i = 0; i < n; i++) {
    const s = r.status[i];
    if (s >= 200 && s < 300) ok++;
    else if (s === 0) errors++;
    else non2xx++;
  }
  return {
    sent: n,
    ok2xx: ok,
    non2xx,
    errors,
    errorKinds: r.errors,
    achievedPerSecond: n > 1 ? ((n - 1) / r.sendSpanMs) * 1000 : NaN,
    latency: summarize(r.latencyFromDue.filter((x) => !Number.isNaN(x))),
    latencyFromSend: summarize(r.latencyFromSend.filter((x) => !Number.isNaN(x))),
    sendLag: summarize(r.sendLag),
    sockets: r.sockets,
  };
}

const WARMUP = 20;
const PROVISIONED = ["booting", "idle", "busy", "done", "destroying", "gone"];

async function baselineRun(o: WebhookLoadOptions): Promise<SenderResult> {
  const app = express();
  app.disable("x-powered-by");
  app.post("/webhooks/github", express.raw({ type: () => true, limit: 1 << 20 }), (_req, res) => void res.status(202).json({ accepted: true, duplicate: false }));
  const { server, url } = await listen(app, 0, "127.0.0.1");
  try {
    const sender = await startSender({ url: `${url}/webhooks/github`, secret: "baseline-secret", rate: o.deliveriesPerSecond, seconds: o.seconds, warmup: WARMUP, jobIdBase: 800_000_000, timeoutMs: 10_000 });
    try {
      return await sender.go();
    } finally {
      await sender.stop();
    }
  } finally {
    await new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  }
}

/** The cost of one durable SQLite commit on this disk now (the same settings as listener/store/store.ts). */
function diskCommit(dir: string): Summary {
  const file = join(dir, `commit-probe-${process.pid}.sqlite`);
  const db = new Database(file);
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.exec("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    const ins = db.prepare("INSERT INTO t (k, v) VALUES (?, ?)");
    const payload = "x".repeat(6000);
    const xs: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      ins.run(`k${i}`, payload);
      xs.push(performance.now() - t);
    }
    return summarize(xs);
  } finally {
    db.close();
    for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
  }
}

/** Times the synchronous part of `obj[key]` into `into` while `on()` says so; returns the undo. */
function timeMethod<T extends object>(obj: T, key: keyof T & string, into: number[], on: () => boolean): () => void {
  const original = (obj as any)[key] as (...a: unknown[]) => unknown;
  (obj as any)[key] = function (this: unknown, ...args: unknown[]) {
    if (!on()) return original.apply(this, args);
    const t = performance.now();
    try {
      return original.apply(this, args);
    } finally {
      into.push(performance.now() - t);
    }
  };
  return () => {
    delete (obj as any)[key];
  };
}

/** Times child_process.spawn (terraform's start: fork/exec on the listener's thread) while `on()` says so. */
function timeSpawn(into: number[], on: () => boolean): () => void {
  const cp = childProcess as unknown as Record<string, unknown>;
  const original = childProcess.spawn;
  cp.spawn = function (this: unknown, ...args: unknown[]) {
    if (!on()) return (original as (...a: unknown[]) => unknown).apply(this, args);
    const t = performance.now();
    try {
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    } finally {
      into.push(performance.now() - t);
    }
  };
  // ESM named imports of builtins (`import { spawn } from "node:child_process"`) follow this.
  syncBuiltinESMExports();
  return () => {
    cp.spawn = original;
    syncBuiltinESMExports();
  };
}

/** ns on a CPU and ns runnable waiting for one, of the main thread. */
function schedstat(): { run: number; wait: number } | null {
  try {
    const [run, wait] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8").trim().split(/\s+/).map(Number);
    return Number.isFinite(run) && Number.isFinite(wait) ? { run, wait } : null;
  } catch {
    return null;
  }
}

const meanMax = (xs: number[]) => ({ max: xs.length ? Math.max(...xs) : 0, mean: xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0 });
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const okStatus = (s: number) => s >= 200 && s < 300;

/** A fresh world and listener; `applies` jobs of ours queued first (0: none); then the timed window. */
async function listenerPhase(o: WebhookLoadOptions, applies: number, jobIdBase: number): Promise<ListenerPhase> {
  const durations = { worldStart: 0, waitForApplies: 0, window: 0, verify: 0, stop: 0 };
  const loadBefore = loadavg()[0];
  let t = performance.now();
  const cap = Math.min(1000, Math.max(10, applies));
  const e: E2E = await startE2E({
    timeScale: o.timeScale,
    logger: pino({ level: "silent" }),
    configPatch: (c) => {
      // Room for every job of ours at once: the clone lane, not a cap, decides how applies overlap.
      c.limits = { maxRunners: cap, maxRunnersPerRepo: cap };
      c.labelSets = (c.labelSets as Array<Record<string, unknown>>).map((s) => ({ ...s, maxRunners: cap }));
    },
    // The listener's own poll and backoff as in production (the tests' 100 ms would have 50 booting
    // runners ask GitHub 500 times a second on the listener's thread).
    overrides: { onlinePollMs: 2_000, retryBackoffMs: 5_000 },
  });
  durations.worldStart = performance.now() - t;
  let stopped = false;
  const stopAll = async () => {
    if (stopped) return;
    stopped = true;
    const ts = performance.now();
    await e.stop();
    durations.stop = performance.now() - ts;
  };
  try {
    const store = e.service.store;
    const url = e.service.url + e.world.config.github.webhookPath;
    // The worker builds and signs every body now, before any job is queued.
    const sender = await startSender({ url, secret: e.world.secrets.webhookSecret, rate: o.deliveriesPerSecond, seconds: o.seconds, warmup: WARMUP, jobIdBase, timeoutMs: 10_000 });
    let raw: SenderResult;
    let inWindow = false;
    const timings = new Map<string, number[]>();
    const timed = <T extends object>(obj: T, keys: Array<keyof T & string>, prefix: string) =>
      keys.map((k) => {
        const xs: number[] = [];
        timings.set(`${prefix}.${k}`, xs);
        return timeMethod(obj, k, xs, () => inWindow);
      });
    const undo = [
      ...timed(store, ["recordDelivery", "unprocessedDeliveries", "applyJobEvent", "markProcessed", "getJob", "jobs", "queuedJobs", "runners", "getRunner", "setRunnerState"], "store"),
      ...timed(e.service.pipeline, ["handleDelivery", "reconcile"], "pipeline"),
    ];
    const spawnMs: number[] = [];
    timings.set("child_process.spawn", spawnMs);
    undo.push(timeSpawn(spawnMs, () => inWindow));
    const recordMs = timings.get("store.recordDelivery")!;
    const handleMs = timings.get("pipeline.handleDelivery")!;
    const loop = monitorEventLoopDelay({ resolution: 1 });
    const jobIds = new Set<number>();
    const mine = (r: { madeForJob: number | null }) => r.madeForJob !== null && jobIds.has(r.madeForJob);
    const cloned = () => store.runners().filter((r) => mine(r) && PROVISIONED.includes(r.state)).length;
    let clonedAtStart = 0;
    let commitMs = summarize([]);
    let clonedAtEnd = 0;
    let elu = 0;
    let mainThread: ListenerPhase["listenerLoop"]["mainThread"] = null;
    try {
      t = performance.now();
      for (let i = 0; i < applies; i++) jobIds.add((await e.world.github.createJob({ repo: i % 2 ? "acme/app" : "acme/infra", labels: ["self-hosted", "linux", "x64"], durationMs: 20_000 })).id);
      // The window opens once every runner is asked for and the clone lane is busy.
      if (applies > 0) await waitFor("runners requested and an apply running", () => {
        const rs = store.runners().filter(mine);
        return rs.length >= applies && rs.some((r) => r.state === "provisioning");
      }, 120_000, 20);
      durations.waitForApplies = performance.now() - t;
      clonedAtStart = cloned();
      commitMs = diskCommit(e.world.dir);

      t = performance.now();
      inWindow = true;
      loop.enable();
      const elu0 = performance.eventLoopUtilization();
      const s0 = schedstat();
      const w0 = performance.now();
      raw = await sender.go();
      const s1 = schedstat();
      const wallNs = (performance.now() - w0) * 1e6;
      elu = performance.eventLoopUtilization(elu0).utilization;
      if (s0 && s1) {
        const onCpu = (s1.run - s0.run) / wallNs;
        const waitingForCpu = (s1.wait - s0.wait) / wallNs;
        mainThread = { onCpu, waitingForCpu, blockedWhileBusy: Math.max(0, elu - onCpu - waitingForCpu) };
      }
      loop.disable();
      inWindow = false;
      clonedAtEnd = cloned();
      durations.window = performance.now() - t;
    } finally {
      for (const u of undo) u();
      await sender.stop();
    }

    t = performance.now();
    const unprocessed = store.unprocessedDeliveries().length;
    let notAnswered = 0;
    let notInStore = 0;
    let lost = 0;
    let ackedNotInStore = 0;
    raw.guids.forEach((g, i) => {
      const stored = store.hasDelivery(g);
      const answered = okStatus(i < WARMUP ? raw.warmupStatus[i] : raw.status[i - WARMUP]);
      if (!stored) notInStore++;
      if (!answered) notAnswered++;
      if (!stored || !answered) lost++;
      if (answered && !stored) ackedNotInStore++;
    });
    const runners = store.runners();
    const junkRunners = runners.filter((r) => !mine(r)).length;
    const junkJobsOurs = store.jobs().filter((j) => j.jobId >= jobIdBase && j.labelSet !== null).length;
    durations.verify = performance.now() - t;

    const windowStart = raw.dueEpochMs[0];
    const slowest = [...raw.latencyFromDue.keys()]
      .filter((i) => !Number.isNaN(raw.latencyFromDue[i]))
      .sort((a, b) => raw.latencyFromDue[b] - raw.latencyFromDue[a])
      .slice(0, 10)
      .map((i) => ({ latencyMs: raw.latencyFromDue[i], atWindowMs: Math.round(raw.dueEpochMs[i] - windowStart) }));
    const perSecond = new Map<number, { due: number; ok: number; lat: number[] }>();
    raw.dueEpochMs.forEach((at, i) => {
      const sec = Math.floor((at - windowStart) / 1000);
      const b = perSecond.get(sec) ?? { due: 0, ok: 0, lat: [] };
      b.due++;
      if (okStatus(raw.status[i])) {
        b.ok++;
        b.lat.push(raw.latencyFromDue[i]);
      }
      perSecond.set(sec, b);
    });
    const timeline = [...perSecond].map(([second, b]) => {
      const q = summarize(b.lat);
      return { second, due: b.due, ok: b.ok, p50: q.p50, p99: q.p99, max: q.max };
    });
    const procs: ProcSample[] = raw.procs;
    await stopAll();
    return {
      side: side(raw),
      lost: { guids: raw.guids.length, notAnswered2xx: notAnswered, notInStore, lost, ackedNotInStore },
      unprocessedAtWindowEnd: unprocessed,
      junkRunners,
      junkJobsOurs,
      applies: {
        jobs: jobIds.size,
        runnersMade: runners.length - junkRunners,
        clonedAtWindowStart: clonedAtStart,
        clonedAtWindowEnd: clonedAtEnd,
        terraformProcs: meanMax(procs.map((p) => p.terraform)),
        providerProcs: meanMax(procs.map((p) => p.provider)),
      },
      listenerLoop: {
        delayMs: { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
        utilization: elu,
        recordDeliveryMs: summarize(recordMs),
        handleDeliveryMs: summarize(handleMs),
        webhookShareOfWindow: (sum(recordMs) + sum(handleMs)) / durations.window,
        mainThread,
        breakdown: Object.fromEntries(
          [...timings]
            .filter(([, xs]) => xs.length > 0)
            .map(([k, xs]) => {
              const q = summarize(xs);
              return [k, { calls: xs.length, totalMs: sum(xs), p50: q.p50, p99: q.p99, max: q.max }];
            })
            .sort((a, b) => (b[1] as { totalMs: number }).totalMs - (a[1] as { totalMs: number }).totalMs),
        ),
      },
      slowest,
      timeline,
      durationsMs: durations,
      diskCommitMs: commitMs,
      loadAvg: { before: loadBefore, after: loadavg()[0] },
    };
  } finally {
    await stopAll();
  }
}

export async function benchWebhookLoad(o: WebhookLoadOptions): Promise<{ result: WebhookLoadResult; summary: string }> {
  const tStart = performance.now();
  let t = performance.now();
  const baseline = side(await baselineRun(o));
  const dBaseline = performance.now() - t;
  t = performance.now();
  const idle = await listenerPhase(o, 0, 900_000_000);
  const dIdle = performance.now() - t;
  t = performance.now();
  const ours = await listenerPhase(o, o.applies, 950_000_000);
  const dOurs = performance.now() - t;
  const u = ours.side.latency;
  const b = baseline.latency;
  const result: WebhookLoadResult = {
    options: o,
    sender: "hand-rolled open loop in a worker thread (node:http keep-alive agent; latency counted from each request's due time)",
    baseline,
    idle,
    ours,
    ratio: { p50: ratio(u.p50, b.p50), p99: ratio(u.p99, b.p99), max: ratio(u.max, b.max), idleP50: ratio(idle.side.latency.p50, b.p50), idleP99: ratio(idle.side.latency.p99, b.p99) },
    target: { p99Ms: 20, p99OverTarget: u.p99 / 20, zeroLost: ours.lost.lost === 0 && idle.lost.lost === 0 },
    durationsMs: { baseline: dBaseline, idle: dIdle, ours: dOurs, total: performance.now() - tStart },
  };
  return { result, summary: summaryLine(result) };
}

function summaryLine(r: WebhookLoadResult): string {
  const o = r.options;
  const b = r.baseline.latency;
  const u = r.ours.side.latency;
  const i = r.idle.side.latency;
  const a = r.ours.applies;
  const mt = r.ours.listenerLoop.mainThread;
  const pctOf = (x: number) => `${(x * 100).toFixed(0)}%`;
  return (
    `webhook ack at ${o.deliveriesPerSecond}/s × ${o.seconds} s (open loop, achieved ${r.ours.side.achievedPerSecond.toFixed(0)}/s) while ${o.applies} jobs are cloned ` +
    `(${a.clonedAtWindowEnd - a.clonedAtWindowStart} applies finished in the window, ≤${a.terraformProcs.max} terraform at once): ` +
    `p50 ${fmtMs(u.p50)}, p99 ${fmtMs(u.p99)}, max ${fmtMs(u.max)}; bare express p50 ${fmtMs(b.p50)}, p99 ${fmtMs(b.p99)}; ` +
    `ratio p50 ${fmtX(r.ratio.p50)}, p99 ${fmtX(r.ratio.p99)} (no applies: p99 ${fmtMs(i.p99)}, ${fmtX(r.ratio.idleP99)}); p99/target 20 ms ${fmtX(r.target.p99OverTarget)}; ` +
    `non-2xx ${r.ours.side.non2xx}, no answer ${r.ours.side.errors}, lost ${r.ours.lost.lost}/${r.ours.lost.guids} of which acked-not-stored ${r.ours.lost.ackedNotInStore} ` +
    `(no applies: lost ${r.idle.lost.lost}/${r.idle.lost.guids}); listener loop busy ${pctOf(r.ours.listenerLoop.utilization)}${mt ? ` (on CPU ${pctOf(mt.onCpu)}, waiting for a CPU ${pctOf(mt.waitingForCpu)})` : ""}, ` +
    `one durable commit on this disk p50 ${fmtMs(r.ours.diskCommitMs.p50)} (load avg ${r.ours.loadAvg.before.toFixed(1)})`
  );
}

/** One own-process run: the listener as `pve-runners serve`, measured from outside and (listener-probe) from inside. */
export interface OwnProcessPhase {
  side: SenderSide;
  lost: number;
  /** The lost ones by what they got: an HTTP status, or 0 for no answer at all. */
  lostBy: Record<string, number>;
  ackedNotInStore: number;
  guids: number;
  /** The listener's main thread in the window, from inside (bench/listener-probe.ts); null if it wrote nothing. */
  probe: ProbeResult | null;
  /** The same thread's scheduler accounting (/proc/<pid>/task/<pid>/schedstat), shares of the window. */
  mainThread: { onCpu: number; waitingForCpu: number } | null;
  /** Sampled terraform and provider processes in the window (process samples, not distinct processes). */
  heavy: { samples: number; schedIdle: number; inListenerSession: number; maxAtOnce: number };
  /**
   * CPU-seconds in the window: the listener process (all its threads), and this process (the
   * sender's worker and the stand-ins, which compete with the listener for the same cores).
   */
  cpuSeconds: { listener: number; benchProcess: number } | null;
  /** What lowered terraform, as sampled: says which mechanism ran. */
  mechanism: string;
  loadAvg: { before: number; after: number };
}

export interface OwnProcessResult extends OwnProcessPhase {
  /** The same sender against the listener in a fresh world with no applies. */
  idle: OwnProcessPhase;
  baselineP99: number;
  summary: string;
}

const probeModule = (): string | null => (import.meta.url.endsWith(".ts") ? null : new URL("./listener-probe.js", import.meta.url).href);

function taskSchedstat(pid: number): { run: number; wait: number } | null {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").trim().split(/\s+/).map(Number);
    return Number.isFinite(run) && Number.isFinite(wait) ? { run, wait } : null;
  } catch {
    return null;
  }
}

/** utime + stime of a process (all threads), seconds; null where /proc cannot tell. */
function processCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // rest[0] is field 3
    const ticks = Number(rest[14 - 3]) + Number(rest[15 - 3]);
    return Number.isFinite(ticks) ? ticks / 100 : null; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

function mechanismOf(h: OwnProcessPhase["heavy"]): string {
  if (h.samples === 0) return "none seen (no terraform ran in the window)";
  const of = (n: number) => (n === h.samples ? "all" : `${n}/${h.samples}`);
  const policy = h.schedIdle === 0 ? "normal policy (no SCHED_IDLE)" : `SCHED_IDLE (chrt --idle) for ${of(h.schedIdle)}`;
  const group =
    h.inListenerSession === h.samples
      ? "in the listener's session, so in its autogroup or cgroup: SCHED_IDLE ranks them below it"
      : `${of(h.samples - h.inListenerSession)} in a session of their own (setsid: each its own autogroup, a nice-0 share beside the listener's)`;
  return `${policy}, nice; ${group}; of ${h.samples} process samples`;
}

async function ownProcessPhase(o: WebhookLoadOptions, applies: number, jobIdBase: number): Promise<OwnProcessPhase> {
  const loadBefore = loadavg()[0];
  const port = await freePort();
  const cap = Math.min(1000, Math.max(10, applies));
  const world = await startWorld({
    timeScale: o.timeScale,
    logger: pino({ level: "silent" }),
    configPatch: (c) => {
      c.listener = { host: "127.0.0.1", port };
      c.limits = { maxRunners: cap, maxRunnersPerRepo: cap };
      c.labelSets = (c.labelSets as Array<Record<string, unknown>>).map((s) => ({ ...s, maxRunners: cap }));
      c.log = { level: "warn" };
    },
  });
  const probeFile = join(world.dir, "listener-probe.json");
  const probeUrl = probeModule();
  const serveEnv = probeUrl ? { ...world.serveEnv, NODE_OPTIONS: `--import=${probeUrl}`, [PROBE_OUT_ENV]: probeFile, ...(process.env.PVE_RUNNERS_BENCH_PROBE_RAW ? { PVE_RUNNERS_BENCH_PROBE_RAW: process.env.PVE_RUNNERS_BENCH_PROBE_RAW } : {}) } : world.serveEnv;
  const listener = new ListenerProcess({ ...world, serveEnv }, join(world.dir, "listener.log"));
  try {
    const url = `http://127.0.0.1:${port}${world.config.github.webhookPath}`;
    world.github.setWebhook(url, world.secrets.webhookSecret);
    await listener.start();
    const pid = listener.pid!;
    const sender = await startSender({ url, secret: world.secrets.webhookSecret, rate: o.deliveriesPerSecond, seconds: o.seconds, warmup: WARMUP, jobIdBase, timeoutMs: 10_000 });
    let raw: SenderResult;
    let mainThread: OwnProcessPhase["mainThread"] = null;
    let cpuSeconds: OwnProcessPhase["cpuSeconds"] = null;
    try {
      for (let i = 0; i < applies; i++) await world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 60_000 });
      // The applies are under way once terraform runs (the listener is a child of ours, terraform its child).
      if (applies > 0) await waitFor("applies running", () => readdir(join(world.config.stateDir, "runners")).then((d: string[]) => d.length > 0, () => false), 60_000, 50);
      const s0 = taskSchedstat(pid);
      const l0 = processCpuSeconds(pid);
      const b0 = process.cpuUsage();
      const w0 = performance.now();
      if (probeUrl) process.kill(pid, "SIGUSR2");
      raw = await sender.go();
      if (probeUrl) process.kill(pid, "SIGUSR2");
      const s1 = taskSchedstat(pid);
      const l1 = processCpuSeconds(pid);
      const b1 = process.cpuUsage(b0);
      if (l0 !== null && l1 !== null) cpuSeconds = { listener: l1 - l0, benchProcess: (b1.user + b1.system) / 1e6 };
      const wallNs = (performance.now() - w0) * 1e6;
      if (s0 && s1) mainThread = { onCpu: (s1.run - s0.run) / wallNs, waitingForCpu: (s1.wait - s0.wait) / wallNs };
    } finally {
      await sender.stop();
    }
    let probe: ProbeResult | null = null;
    if (probeUrl) {
      await waitFor("the listener probe's figures", () => readFile(probeFile, "utf8").then(() => true, () => false), 30_000, 50).catch(() => undefined);
      probe = await readFile(probeFile, "utf8").then((t) => JSON.parse(t) as ProbeResult, () => null);
    }
    const s = side(raw);
    await listener.stop();
    const store = new Store(join(world.config.stateDir, "pve-runners.sqlite"));
    let lost = 0;
    let ackedNotInStore = 0;
    const lostBy: Record<string, number> = {};
    raw.guids.forEach((g, i) => {
      const status = i < WARMUP ? raw.warmupStatus[i] : raw.status[i - WARMUP];
      const ok = status >= 200 && status < 300;
      const stored = store.hasDelivery(g);
      if (!ok || !stored) {
        lost++;
        const why = ok ? "2xx not stored" : String(status);
        lostBy[why] = (lostBy[why] ?? 0) + 1;
      }
      if (ok && !stored) ackedNotInStore++;
    });
    store.close();
    const heavy = {
      samples: sum(raw.procs.map((p) => p.terraform + p.provider)),
      schedIdle: sum(raw.procs.map((p) => p.heavyIdle)),
      inListenerSession: sum(raw.procs.map((p) => p.heavyInRootSession)),
      maxAtOnce: meanMax(raw.procs.map((p) => p.terraform + p.provider)).max,
    };
    return { side: s, lost, lostBy, ackedNotInStore, guids: raw.guids.length, probe, mainThread, cpuSeconds, heavy, mechanism: mechanismOf(heavy), loadAvg: { before: loadBefore, after: loadavg()[0] } };
  } finally {
    await listener.stop().catch(() => undefined);
    await world.stop();
  }
}

/** "by status 503: 12, no answer: 3" for the lost deliveries. */
function lostLine(by: Record<string, number>): string {
  const parts = Object.entries(by).map(([k, n]) => `${k === "0" ? "no answer" : k}: ${n}`);
  return parts.length ? `by status ${parts.join(", ")}` : "none";
}

/** "name 123 ms" for the largest categories of the probe's breakdown, idle left out. */
export function breakdownLine(p: ProbeResult | null, top = 8): string {
  if (!p) return "no probe figures";
  const busy = Object.entries(p.breakdownMs).filter(([k]) => k !== "idle").sort((a, b) => b[1] - a[1]);
  return busy.slice(0, top).map(([k, ms]) => `${k} ${ms.toFixed(0)} ms`).join(", ");
}

/**
 * The same load against the listener as it runs in production: its own process (`pve-runners
 * serve`), with the stand-ins, the sender and terraform elsewhere. The in-process phases above
 * share the listener's thread with the fake GitHub and PVE; this one does not. First with no
 * applies, then while `applies` jobs are cloned.
 */
export async function benchWebhookOwnProcess(o: WebhookLoadOptions): Promise<OwnProcessResult> {
  const baseline = side(await baselineRun(o));
  const idle = await ownProcessPhase(o, 0, 900_000_000);
  const ours = await ownProcessPhase(o, o.applies, 950_000_000);
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  const thread = (p: OwnProcessPhase) =>
    `main thread on a CPU ${p.mainThread ? pct(p.mainThread.onCpu) : "?"}, waiting for one ${p.mainThread ? pct(p.mainThread.waitingForCpu) : "?"}` +
    (p.cpuSeconds ? ` (CPU-s in the window: listener ${p.cpuSeconds.listener.toFixed(2)}, sender + stand-ins ${p.cpuSeconds.benchProcess.toFixed(2)})` : "") +
    (p.probe ? `, loop busy ${pct(p.probe.utilization)}, loop delay p99 ${fmtMs(p.probe.delayMs.p99)} max ${fmtMs(p.probe.delayMs.max)}` : "");
  const s = ours.side;
  const summary =
    `webhook ack, listener in its own process, at ${o.deliveriesPerSecond}/s × ${o.seconds} s while ${o.applies} jobs are cloned: ` +
    `p50 ${fmtMs(s.latency.p50)}, p99 ${fmtMs(s.latency.p99)}, max ${fmtMs(s.latency.max)}; bare express p99 ${fmtMs(baseline.latency.p99)}; ` +
    `ratio p99 ${fmtX(ratio(s.latency.p99, baseline.latency.p99))}; lost ${ours.lost}/${ours.guids} (${lostLine(ours.lostBy)}; acked but not stored: ${ours.ackedNotInStore}); ` +
    `no applies: p50 ${fmtMs(idle.side.latency.p50)}, p99 ${fmtMs(idle.side.latency.p99)}, lost ${idle.lost}/${idle.guids}; load avg ${ours.loadAvg.before.toFixed(1)}\n` +
    `  terraform's priority: ${ours.mechanism} (≤${ours.heavy.maxAtOnce} at once)\n` +
    `  under applies: ${thread(ours)}; window time by what it went to (wall, includes waiting for a CPU): ${breakdownLine(ours.probe)}\n` +
    `  no applies: ${thread(idle)}; ${breakdownLine(idle.probe)}`;
  return { ...ours, idle, baselineP99: baseline.latency.p99, summary };
}
