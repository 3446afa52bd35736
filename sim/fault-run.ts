// The fault run: the real listener as its own process (`pve-runners serve`), killed with SIGKILL at
// random points and restarted, while the fake GitHub drops and duplicates webhooks and answers
// 5xx/429, and the PVE simulator fails operations. Afterwards, with faults still on, the sweeper
// must settle it: every job served, no container, no registration, no stack dir.
// Used by `npm run fault-run` (figures) and test/e2e/fault-run.test.ts (assertions).
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { readdir } from "node:fs/promises";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { startWorld, type World } from "./world.js";
import { createRng } from "./github/rng.js";
import { Store } from "../listener/store/store.js";

export interface FaultRunOptions {
  jobs: number;
  /** How many times the listener is SIGKILLed (then restarted). */
  kills: number;
  webhookDropRate: number;
  webhookDuplicateRate: number;
  pveErrorRate: number;
  githubErrorRate: number;
  timeScale: number;
  timeoutMs: number;
  seed: number;
  out?: (line: string) => void;
  /** Called after the run, before the world is removed: tests inspect what it left (logs, state). */
  inspect?: (w: { dir: string; stateDir: string; listenerLog: string; secrets: World["secrets"] }) => Promise<void>;
}

export const FAULT_RUN_DEFAULTS: FaultRunOptions = {
  jobs: 24,
  kills: 4,
  webhookDropRate: 0.2,
  webhookDuplicateRate: 0.2,
  pveErrorRate: 0.1,
  githubErrorRate: 0.05,
  timeScale: 0.05,
  timeoutMs: 600_000,
  seed: 7,
};

export interface FaultRunResult {
  jobs: number;
  served: number;
  containersLeft: number;
  registrationsLeft: number;
  stackDirsLeft: number;
  kills: number;
  runnersMade: number;
  runnersFailed: number;
  applyRetries: number;
  deliveries: number;
  deliveriesDropped: number;
  deliveriesDuplicated: number;
  redeliveries: number;
  pveTasksFailed: number;
  pveTasks: number;
  /** From the first job queued until everything settled. */
  settleMs: number;
  ok: boolean;
}

const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), import.meta.url.endsWith(".ts") ? ".." : "../..");
const JOB_MIX = [
  { repo: "acme/app", labels: ["self-hosted", "linux"] },
  { repo: "acme/infra", labels: ["self-hosted", "linux", "x64", "large"] },
  { repo: "solo/dotfiles", labels: ["self-hosted", "linux", "x64", "docker"] },
];

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

export class ListenerProcess {
  private child: ChildProcess | null = null;
  constructor(
    private readonly world: World,
    private readonly logFile: string,
    /** A command the listener runs under (e.g. a system call filter launcher, ending in "--"). */
    private readonly prefix: string[] = [],
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const env = this.world.serveEnv;
    const log = createWriteStream(this.logFile, { flags: "a" });
    const [cmd, ...args] = [...this.prefix, process.execPath, join(repoRoot, "dist", "cli", "main.js"), "serve", "--config", this.world.configFile];
    const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    this.child = child;
    const url = `http://127.0.0.1:${this.world.config.listener.port}/healthz`;
    for (let i = 0; i < 200; i++) {
      if (child.exitCode !== null) throw new Error(`listener exited with ${child.exitCode} at start; see ${this.logFile}`);
      if (await fetch(url).then((r) => r.ok, () => false)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`listener did not come up; see ${this.logFile}`);
  }

  /** SIGKILL: no cleanup, no graceful stop; terraform runs it started go on on their own. */
  kill(): Promise<void> {
    return this.signal("SIGKILL");
  }

  stop(): Promise<void> {
    return this.signal("SIGTERM");
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill(sig);
    await exited;
  }
}

export async function runFaultRun(o: FaultRunOptions): Promise<FaultRunResult> {
  const out = o.out ?? (() => {});
  const rng = createRng(o.seed);
  const port = await freePort();
  const world = await startWorld({
    timeScale: o.timeScale,
    logger: pino({ level: "silent" }),
    configPatch: (c) => {
      c.listener = { host: "127.0.0.1", port };
      c.limits = { maxRunners: 8, maxRunnersPerRepo: 6 };
      c.timeouts = { apply: 120, destroy: 120, boot: 20, idle: 30 };
      c.sweeper = { enabled: true, schedule: "*/2 * * * * *", grace: 5, lookback: 3600, repoWindow: 3600 };
      c.log = { level: "info" };
    },
  });
  const listener = new ListenerProcess(world, join(world.dir, "listener.log"));
  let kills = 0;
  let keep = false;
  const started = Date.now();
  try {
    world.github.setWebhook(`http://127.0.0.1:${port}${world.config.github.webhookPath}`, world.secrets.webhookSecret);
    await listener.start();
    world.github.setFaults({ rate: o.githubErrorRate, statuses: [500, 502, 503, 429], retryAfterSeconds: 1, webhook: { dropRate: o.webhookDropRate, duplicateRate: o.webhookDuplicateRate } });
    const e = o.pveErrorRate;
    // The random rate may by chance fail nothing in a short run; the first clone always fails, so
    // every run with PVE faults on exercises a failed task.
    world.pve.setFaults({ errorRate: { clone: e, start: e, stop: e, shutdown: e, destroy: e, config: e }, ...(e > 0 ? { next: { op: "clone" as const, count: 1 } } : {}) });
    out(`fault-run: ${o.jobs} jobs, webhooks dropped ${o.webhookDropRate * 100}% and duplicated ${o.webhookDuplicateRate * 100}%, PVE failing ${o.pveErrorRate * 100}%, GitHub 5xx/429 ${o.githubErrorRate * 100}%, ${o.kills} SIGKILLs`);

    // Jobs arrive over a while; kills land at random points among them.
    const killAt = new Set(Array.from({ length: o.kills }, () => Math.floor(rng() * o.jobs)));
    while (killAt.size < Math.min(o.kills, o.jobs)) killAt.add(Math.floor(rng() * o.jobs));
    const jobIds: number[] = [];
    for (let i = 0; i < o.jobs; i++) {
      const spec = JOB_MIX[i % JOB_MIX.length];
      const job = await world.github.createJob({ ...spec, durationMs: 10_000 + Math.floor(rng() * 20_000), workflowName: "fault-run", jobName: `job-${i + 1}` });
      jobIds.push(job.id);
      await new Promise((r) => setTimeout(r, 200 + rng() * 600));
      if (killAt.has(i)) {
        await new Promise((r) => setTimeout(r, rng() * 1500));
        await listener.kill();
        kills++;
        out(`fault-run: ${((Date.now() - started) / 1000).toFixed(1)}s listener SIGKILLed (${kills}/${o.kills}), down ${(1 + rng() * 2).toFixed(1)}s`);
        await new Promise((r) => setTimeout(r, 1000 + rng() * 2000));
        await listener.start();
      }
    }

    const deadline = started + o.timeoutMs;
    let lastReport = 0;
    for (;;) {
      const jobs = world.github.jobs().filter((j) => jobIds.includes(j.id));
      const done = jobs.filter((j) => j.status === "completed").length;
      const cts = world.pve.containers().filter((c) => !c.template).length;
      const regs = world.github.runners().filter((r) => !r.removedAt).length;
      const dirs = (await readdir(join(world.config.stateDir, "runners")).catch(() => [])).length;
      if (done === jobIds.length && cts === 0 && regs === 0 && dirs === 0) break;
      if (Date.now() - lastReport > 10_000) {
        lastReport = Date.now();
        out(`fault-run: ${((Date.now() - started) / 1000).toFixed(1)}s ${done}/${jobIds.length} jobs completed, ${cts} containers, ${regs} registrations, ${dirs} stack dirs`);
      }
      if (Date.now() > deadline) {
        out(`fault-run: gave up after ${o.timeoutMs / 1000}s; listener log: ${join(world.dir, "listener.log")}`);
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    const settleMs = Date.now() - started;
    await listener.stop();

    const store = new Store(join(world.config.stateDir, "pve-runners.sqlite"));
    const runners = store.runners();
    store.close();
    const ours = new Set(runners.map((r) => r.name));
    const jobs = world.github.jobs().filter((j) => jobIds.includes(j.id));
    const served = jobs.filter((j) => j.status === "completed" && j.conclusion === "success" && j.runnerName && ours.has(j.runnerName)).length;
    const deliveries = world.github.deliveries();
    const tasks = world.pve.tasks();
    const result: FaultRunResult = {
      jobs: jobIds.length,
      served,
      containersLeft: world.pve.containers().filter((c) => !c.template).length,
      registrationsLeft: world.github.runners().filter((r) => !r.removedAt).length,
      stackDirsLeft: (await readdir(join(world.config.stateDir, "runners")).catch(() => [])).length,
      kills,
      runnersMade: runners.length,
      runnersFailed: runners.filter((r) => r.state === "failed").length,
      applyRetries: runners.reduce((n, r) => n + r.attempts, 0),
      deliveries: deliveries.length,
      deliveriesDropped: deliveries.filter((d) => d.dropped).length,
      deliveriesDuplicated: deliveries.filter((d) => d.duplicate).length,
      redeliveries: deliveries.filter((d) => d.redelivery).length,
      pveTasks: tasks.length,
      pveTasksFailed: tasks.filter((t) => t.status === "stopped" && t.exitstatus !== "OK").length,
      settleMs,
      ok: false,
    };
    result.ok = result.served === result.jobs && result.containersLeft === 0 && result.registrationsLeft === 0 && result.stackDirsLeft === 0;
    if (!result.ok) {
      keep = true;
      out(`fault-run: NOT settled; kept ${world.dir} (listener.log, state/)`);
      for (const j of jobs.filter((x) => !(x.status === "completed" && x.conclusion === "success"))) out(`fault-run:   job ${j.id} ${j.status} ${j.conclusion ?? ""} ${j.runnerName ?? ""}`);
    }
    out(
      `fault-run: ${result.jobs} jobs, ${result.served} served; ${result.containersLeft} containers, ${result.registrationsLeft} registrations, ${result.stackDirsLeft} stack dirs left; ` +
        `${result.kills} SIGKILLs; ${result.runnersMade} runners made (${(result.runnersMade / result.jobs).toFixed(2)} per job), ${result.runnersFailed} given up, ${result.applyRetries} apply/delivery retries; ` +
        `${result.deliveries} deliveries: ${result.deliveriesDropped} dropped, ${result.deliveriesDuplicated} duplicated, ${result.redeliveries} redelivered; ` +
        `PVE tasks ${result.pveTasksFailed}/${result.pveTasks} failed; settled in ${(result.settleMs / 1000).toFixed(1)}s`,
    );
    await o.inspect?.({ dir: world.dir, stateDir: world.config.stateDir, listenerLog: join(world.dir, "listener.log"), secrets: world.secrets });
    return result;
  } finally {
    await listener.stop().catch(() => {});
    await world.stop({ keep });
  }
}
