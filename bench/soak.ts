// Soak: N jobs through the real listener (webhook route with signed deliveries, SQLite store,
// reconcile, missed-webhook recovery, sweeper, retention) must leave no trace. terraform apply and
// destroy are an in-process stand-in (bench/soak-terraform.ts) that makes and removes the
// containers in the PVE simulator through its API; everything else is the real path: the fake
// GitHub queues each job and sends queued, in_progress and completed, the simulated guest takes
// its JIT config from the env option, registers and runs the job. The stand-ins run in a process of
// their own (bench/soak-world.ts), so the memory figures are the listener's (and this driver's).
//
// Figures: heap and RSS growth after GC from the end of a warm-up to the end; reconcile and status
// snapshot time over the last window of jobs against the first (taken while `inFlight` jobs run);
// the SQLite file (and WAL) at the end against what the (shortened) retention window implies.
import { spawn } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";
import Database from "better-sqlite3";
import { pino } from "pino";
import { loadConfig } from "../listener/app/config.js";
import { ProxmoxApi } from "../listener/adapters/proxmox/proxmox.js";
import { startService, type Service } from "../listener/app/service.js";
import { LIVE_STATES } from "../listener/store/store.js";
import { renderStatusPage } from "../listener/http/status-page.js";
import { nodeCommandFor } from "../sim/node-entry.js";
import { ApiTerraform } from "./soak-terraform.js";
import { summarize, type Summary } from "./stats.js";

export interface SoakOptions {
  jobs: number;
  /** Jobs kept queued or running at once (and the runner cap). */
  inFlight: number;
  /** Jobs compared at the start and at the end (timings), and the memory warm-up. */
  window: number;
  /**
   * Retention, shortened so pruning happens within the run: nothing is pruned during the first
   * window, then the window is this many times the first window's duration, so the last window
   * works against several times the history the first did (a scan of it would show).
   */
  keepWindows: number;
  pruneEveryMs: number;
  /** A recovery pass and a sweep after every this many jobs. */
  sweepEvery: number;
  timeScale: number;
}

export interface SoakResult {
  options: SoakOptions;
  /** Where the state dir was: tmpfs (no fsync cost) or the temp dir's disk. */
  stateOnTmpfs: boolean;
  seconds: number;
  completed: number;
  /** The retention window set after the first window (ms). */
  keepMs: number;
  /** Runner records held (live and finished) at the end of the first window and of the last. */
  history: { first: number; last: number };
  heapGrowth: number;
  rssGrowth: number;
  reconcile: { first: Summary; last: Summary };
  snapshot: { first: Summary; last: Summary };
  sweep: { first: number; last: number; passes: number; actions: number; errors: number };
  db: { fileBytes: number; walBytes: number; usedBytes: number; rows: { deliveries: number; jobs: number; runners: number }; bytesPerJob: number; jobsInWindow: number; boundBytes: number };
  leftovers: { liveRunners: number; containers: number; stackDirs: number; registrations: number };
  standIn: { applies: number; destroys: number };
}

const LABELS = ["self-hosted", "linux", "soak"];
const TMPFS = (() => {
  try {
    accessSync("/dev/shm", constants.W_OK);
    return "/dev/shm";
  } catch {
    return null;
  }
})();
const gc = () => {
  const g = (globalThis as { gc?: () => void }).gc;
  if (!g) return false;
  g();
  g();
  return true;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** At the start of a macrotask no reconcile pass is in flight: timing one measures a whole pass. */
const nextTask = () => new Promise((r) => setImmediate(r));

async function startWorldProcess(o: SoakOptions) {
  const [cmd, ...args] = nodeCommandFor(new URL("./soak-world.js", import.meta.url).pathname);
  // The world's temp dir (the listener's state dir in it) on tmpfs where there is one: SQLite's
  // fsync per commit (synchronous = FULL) would otherwise set the pace, and it is the disk's, not ours.
  const env = TMPFS ? { ...process.env, TMPDIR: TMPFS } : process.env;
  const child = spawn(cmd, [...args, JSON.stringify({ timeScale: o.timeScale, maxRunners: o.inFlight, labels: LABELS })], { stdio: ["pipe", "pipe", "inherit"], env });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`soak world exited (${code}) before it was up`)));
  });
  const info = JSON.parse(line) as { configFile: string; credentials: string; pveEndpoint: string; githubUrl: string };
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.stdin!.end();
      setTimeout(() => child.kill("SIGKILL"), 20_000).unref();
    });
  return { info, stop };
}

async function sim(base: string, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${base}/_sim${path}`, { method, headers: { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) throw new Error(`${method} /_sim${path}: ${res.status} ${await res.text()}`);
  return res.status === 204 ? null : res.json();
}

/** The most completions within any `spanMs` (sorted times). */
function mostWithin(times: number[], spanMs: number): number {
  let best = 0;
  for (let i = 0, j = 0; i < times.length; i++) {
    while (times[i] - times[j] > spanMs) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

export async function benchSoak(o: SoakOptions): Promise<{ result: SoakResult; summary: string }> {
  const world = await startWorldProcess(o);
  let service: Service | undefined;
  try {
    const { config, secrets } = loadConfig(world.info.configFile, { env: { ...process.env, CREDENTIALS_DIRECTORY: world.info.credentials }, simulatorPveEndpoint: world.info.pveEndpoint });
    const logger = pino({ level: process.env.LOG_LEVEL ?? "silent" });
    const terraform = new ApiTerraform(new ProxmoxApi({ endpoint: config.proxmox.endpoint, token: secrets.pveApiToken, insecure: config.proxmox.insecure, logger, pollMs: 20 }));
    // Read at each prune: shortened once the first window is done.
    const retention = { keepMs: 86_400_000, everyMs: o.pruneEveryMs };
    service = await startService(config, secrets, logger, {
      terraform,
      retention,
      // The lane held around each (stand-in) apply: clones of one template one at a time, as the gate does.
      cloneGate: false,
      onlinePollMs: 50,
      retryBackoffMs: 200,
      githubThrottle: false,
    });
    const s = service;
    const gh = world.info.githubUrl;
    await sim(gh, "POST", "/webhook", { url: s.url + config.github.webhookPath, secret: secrets.webhookSecret });
    // GitHub's hourly budget is wall-clock: the soak compresses days of jobs into minutes.
    await sim(gh, "POST", "/ratelimit", { limit: 100_000_000 });

    const started = Date.now();
    const open = new Set<number>();
    const doneAt: number[] = [];
    const reconcileMs: number[] = [];
    const snapshotMs: number[] = [];
    const sweepMs: number[] = [];
    let sweepActions = 0;
    let sweepErrors = 0;
    let created = 0;
    let mem0: NodeJS.MemoryUsage | null = null;
    let lastProgress = Date.now();
    const history = { first: 0, last: 0 };
    let bytesPerJob = NaN;
    const held = () => Object.values(s.store.countByState()).reduce((a, b) => a + b, 0);
    while (doneAt.length < o.jobs) {
      while (open.size < o.inFlight && created < o.jobs) {
        const job = (await sim(gh, "POST", "/jobs", { repo: "acme/app", labels: LABELS, durationMs: 1_000 })) as { id: number };
        open.add(job.id);
        created++;
      }
      await sleep(10);
      for (const id of open) {
        if (s.store.getJob(id)?.status !== "completed") continue;
        open.delete(id);
        doneAt.push(Date.now());
        lastProgress = Date.now();
        const n = doneAt.length;
        // Timed while inFlight jobs run (not in the final drain), one sample per job.
        if (created < o.jobs) {
          await nextTask();
          const t0 = performance.now();
          void s.pipeline.reconcile();
          const t1 = performance.now();
          renderStatusPage(s.snapshot());
          const t2 = performance.now();
          reconcileMs.push(t1 - t0);
          snapshotMs.push(t2 - t1);
        }
        if (n % o.sweepEvery === 0) {
          const t = performance.now();
          await s.recover();
          const r = await s.sweep();
          sweepMs.push(performance.now() - t);
          sweepActions += r.actions.length;
          sweepErrors += r.errors.length;
        }
        if (n === o.window) {
          // What one job takes while nothing is pruned yet: its three deliveries, its row and its runner's.
          bytesPerJob = usedBytesOf(join(config.stateDir, "pve-runners.sqlite")) / Math.max(1, held());
          retention.keepMs = o.keepWindows * (Date.now() - started);
          history.first = held();
          gc();
          mem0 = process.memoryUsage();
        }
        if (created === o.jobs && history.last === 0) history.last = held();
      }
      if (Date.now() - lastProgress > 120_000) throw new Error(`soak stalled: ${doneAt.length}/${o.jobs} jobs completed, ${open.size} open`);
    }
    // Every runner gone, then one last recovery and sweep, then a prune: the state the soak leaves.
    const deadline = Date.now() + 120_000;
    while (s.store.runners(LIVE_STATES).length > 0 && Date.now() < deadline) await sleep(50);
    await s.recover();
    const last = await s.sweep();
    sweepActions += last.actions.length;
    sweepErrors += last.errors.length;
    const seconds = (Date.now() - started) / 1000;
    gc();
    const mem1 = process.memoryUsage();

    const dbFile = join(config.stateDir, "pve-runners.sqlite");
    const size = (f: string) => {
      try {
        return statSync(f).size;
      } catch {
        return 0;
      }
    };
    const db = new Database(dbFile, { readonly: true });
    const count = (t: string) => (db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
    const rows = { deliveries: count("deliveries"), jobs: count("jobs"), runners: count("runners") };
    db.close();
    const usedBytes = usedBytesOf(dbFile);
    // How many jobs the retention window can hold at most: those completed within keepMs plus one
    // prune interval, and those open.
    const jobsInWindow = mostWithin(doneAt, retention.keepMs + o.pruneEveryMs) + o.inFlight;
    const emptyBytes = 64 * 1024;
    const boundBytes = emptyBytes + bytesPerJob * jobsInWindow;

    const pveCts = await runnerContainers(config.proxmox.endpoint, secrets.pveApiToken, config.proxmox.node);
    const stackDirs = await import("node:fs/promises").then((f) => f.readdir(join(config.stateDir, "runners")).then((d) => d.length, () => 0));
    const regs = (await sim(gh, "GET", "/runners")) as Array<{ removedAt?: string | null }>;
    const w = Math.min(o.window, Math.floor(reconcileMs.length / 2));
    const result: SoakResult = {
      options: o,
      stateOnTmpfs: TMPFS !== null,
      seconds,
      completed: doneAt.length,
      keepMs: retention.keepMs,
      history,
      heapGrowth: mem0 ? mem1.heapUsed - mem0.heapUsed : NaN,
      rssGrowth: mem0 ? mem1.rss - mem0.rss : NaN,
      reconcile: { first: summarize(reconcileMs.slice(0, w)), last: summarize(reconcileMs.slice(-w)) },
      snapshot: { first: summarize(snapshotMs.slice(0, w)), last: summarize(snapshotMs.slice(-w)) },
      sweep: { first: sweepMs[0] ?? NaN, last: sweepMs.at(-1) ?? NaN, passes: sweepMs.length + 1, actions: sweepActions, errors: sweepErrors },
      db: { fileBytes: size(dbFile), walBytes: size(dbFile + "-wal"), usedBytes, rows, bytesPerJob, jobsInWindow, boundBytes },
      leftovers: { liveRunners: s.store.runners(LIVE_STATES).length, containers: pveCts, stackDirs, registrations: regs.filter((r) => !r.removedAt).length },
      standIn: { ...terraform.counts },
    };
    const mb = (b: number) => `${(b / 1024 / 1024).toFixed(2)} MB`;
    const summary =
      `soak: ${result.completed} jobs in ${seconds.toFixed(0)} s (${o.inFlight} at a time; apply/destroy by an in-process stand-in); ` +
      `heap ${mb(result.heapGrowth)}, RSS ${mb(result.rssGrowth)} after job ${o.window}; ` +
      `reconcile p50 ${result.reconcile.first.p50.toFixed(3)} → ${result.reconcile.last.p50.toFixed(3)} ms, snapshot p50 ${result.snapshot.first.p50.toFixed(3)} → ${result.snapshot.last.p50.toFixed(3)} ms; ` +
      `history held ${history.first} → ${history.last} runners; SQLite ${mb(result.db.fileBytes)} + WAL ${mb(result.db.walBytes)}, rows ${JSON.stringify(rows)}; left: ${JSON.stringify(result.leftovers)}; sweeps ${result.sweep.passes}, actions ${sweepActions}, errors ${sweepErrors}`;
    return { result, summary };
  } finally {
    await service?.stop().catch(() => undefined);
    await world.stop();
  }
}

/** Bytes in the SQLite file's pages in use (not on the free list). */
function usedBytesOf(file: string): number {
  const db = new Database(file, { readonly: true });
  try {
    const pragma = (p: string) => Number(db.pragma(p, { simple: true }));
    return (pragma("page_count") - pragma("freelist_count")) * pragma("page_size");
  } finally {
    db.close();
  }
}

/** Runner containers (not templates) left on the listener's node. */
async function runnerContainers(endpoint: string, token: string, node: string): Promise<number> {
  const pve = new ProxmoxApi({ endpoint, token, logger: pino({ level: "silent" }) });
  return (await pve.listContainers(node)).filter((c) => !(c as { template?: unknown }).template).length;
}
