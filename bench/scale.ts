// Scale benchmarks on the stand-in world with realistic latencies (clone 2 s, start 1.5 s, boot
// 3 s, multiplied by the time scale), each printed beside the ideal it is measured against:
//   burst     N jobs over T templates × M nodes: time until every job started ÷ (clones per lane
//             back to back + one start + one boot)
//   single    one job, queued → started ÷ (clone + start + boot), with terraform's share
//   warm      one job taken by a warm-pool member, queued → started ÷ (start + boot)
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { startE2E, waitFor, quietLogger, type E2E } from "../test/e2e/harness.js";
import type { Logger } from "pino";
import type { SimNodeSpec, SimTemplateSpec } from "../sim/pve/index.js";

export const REALISTIC = { cloneMs: 2_000, startMs: 1_500, bootMs: 3_000 };

export interface ScaleFigure {
  name: string;
  /** Seconds, wall clock. */
  measured: number;
  ideal: number;
  ratio: number;
  detail: string;
}

const GiB = 1024 ** 3;

export interface WorldShape {
  timeScale: number;
  nodes: SimNodeSpec[];
  templates: SimTemplateSpec[];
  maxRunners: number;
  warm?: number;
  /** false: the lane is held around each whole apply (the design before the clone gate). */
  cloneGate?: boolean;
  /** terraform.binary instead of terraform from PATH (bench/run-cost.ts's measuring wrapper). */
  terraformBinary?: string;
  /** terraform.sharedProvider: one provider process every terraform run attaches to. */
  sharedProvider?: boolean;
  /** Where the listener and the stand-ins log (bench/timeline.ts); silent by default. */
  logger?: Logger;
}

export async function world(shape: WorldShape): Promise<E2E> {
  const multiNode = new Set(shape.templates.map((t) => t.node)).size > 1;
  return startE2E({
    timeScale: shape.timeScale,
    logger: shape.logger ?? quietLogger(),
    pve: { nodes: shape.nodes, templates: shape.templates, latencyMs: { cloneLinked: REALISTIC.cloneMs, start: REALISTIC.startMs, jitter: 0 }, guest: { bootMs: REALISTIC.bootMs } },
    configPatch: (c) => {
      c.proxmox.templates = shape.templates;
      delete c.proxmox.templateVmid;
      // pct reaches only the listener's own node; several nodes need the API delivery.
      if (multiNode) c.delivery = { mode: "env" };
      c.limits = { maxRunners: shape.maxRunners, maxRunnersPerRepo: shape.maxRunners };
      c.labelSets = [{ name: "bench", labels: ["self-hosted", "linux", "bench"], cores: 1, memoryMb: 512, swapMb: 0, maxRunners: shape.maxRunners, warm: shape.warm ?? 0 }];
      c.timeouts = { apply: 600, destroy: 600, boot: 600, idle: 900 };
      // Two applies per lane: one cloning, one getting ready behind it.
      c.terraform.maxConcurrent = Math.max(2, 2 * shape.templates.length);
      if (shape.terraformBinary) c.terraform.binary = shape.terraformBinary;
      if (shape.sharedProvider) c.terraform.sharedProvider = true;
    },
    overrides: { onlinePollMs: 50, cloneGate: shape.cloneGate },
  }).then(async (e) => {
    // As a listener that has been up a while: its start-up `terraform init` is done.
    await e.service.terraformInitialised;
    return e;
  });
}

/**
 * Queues `n` jobs and resolves with each one's queued → started time in ms, taken here with a
 * 10 ms watch (GitHub's timestamps have whole seconds, and it sets started_at on queued jobs too).
 */
export async function runJobs(e: E2E, n: number, timeoutMs: number, durationMs = 60_000): Promise<{ ms: number[]; firstQueuedAt: number; lastStartedAt: number }> {
  const queuedAt = new Map<number, number>();
  const startedAt = new Map<number, number>();
  const watch = setInterval(() => {
    for (const j of e.world.github.jobs()) if (queuedAt.has(j.id) && !startedAt.has(j.id) && (j.status === "in_progress" || j.status === "completed")) startedAt.set(j.id, Date.now());
  }, 10);
  try {
    for (let i = 0; i < n; i++) {
      const t = Date.now();
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux", "bench"], durationMs });
      queuedAt.set(job.id, t);
    }
    await waitFor("every job started", () => startedAt.size === n, timeoutMs, 20);
  } finally {
    clearInterval(watch);
  }
  const ids = [...queuedAt.keys()];
  return { ms: ids.map((id) => startedAt.get(id)! - queuedAt.get(id)!), firstQueuedAt: Math.min(...queuedAt.values()), lastStartedAt: Math.max(...startedAt.values()) };
}

/** CPU seconds of this process and of its finished children (terraform and the provider processes it runs). */
/**
 * CPU seconds (utime + stime) of a running process, or 0 when none: the shared provider is not a
 * reaped child while it runs, so cpuSeconds().children never counts it.
 */
export function processCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const rest = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(rest[11]) + Number(rest[12])) / 100; // fields 14 and 15
  } catch {
    return 0;
  }
}

/** cpuSeconds() with the shared provider's CPU (if one runs) counted among the children. */
async function cpuWithShared(e: E2E): Promise<{ own: number; children: number }> {
  const c = cpuSeconds();
  return { own: c.own, children: c.children + processCpuSeconds(await e.service.sharedProviderPid()) };
}

export function cpuSeconds(): { own: number; children: number } {
  const u = process.cpuUsage();
  const own = (u.user + u.system) / 1e6;
  try {
    // /proc/self/stat fields 16 and 17 (after the command name): cutime and cstime, in clock ticks (100/s).
    const rest = readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" ");
    return { own, children: (Number(rest[13]) + Number(rest[14])) / 100 };
  } catch {
    return { own, children: NaN };
  }
}

export async function benchBurst(o: { jobs: number; nodes: number; templatesPerNode: number; timeScale: number; cloneGate?: boolean; sharedProvider?: boolean }): Promise<ScaleFigure> {
  // The first node is the listener's own ("pve", as the world's config says).
  const nodes = Array.from({ length: o.nodes }, (_, i) => ({ name: i === 0 ? "pve" : `pve${i + 1}`, memoryBytes: 256 * GiB, cpus: 32 }));
  const templates = nodes.flatMap((n, i) => Array.from({ length: o.templatesPerNode }, (_, k) => ({ node: n.name, vmid: 9000 + i * 10 + k })));
  const e = await world({ timeScale: o.timeScale, nodes, templates, maxRunners: o.jobs, cloneGate: o.cloneGate, sharedProvider: o.sharedProvider });
  try {
    const cpu0 = await cpuWithShared(e);
    const run = await runJobs(e, o.jobs, 600_000);
    const cpu1 = await cpuWithShared(e);
    const makespan = run.lastStartedAt - run.firstQueuedAt;
    const lanes = templates.length;
    const s = o.timeScale;
    const ideal = (Math.ceil(o.jobs / lanes) * REALISTIC.cloneMs + REALISTIC.startMs + REALISTIC.bootMs) * s;
    // The CPU floor: all the CPU the burst burned, spread perfectly over the cores.
    const floorMs = ((cpu1.children - cpu0.children + cpu1.own - cpu0.own) / availableParallelism()) * 1000;
    const perNode = nodes.map((n) => `${n.name} ${e.service.store.runners().filter((r) => r.node === n.name).length}`).join(", ");
    return {
      name: `burst: ${o.jobs} jobs, ${o.templatesPerNode} templates × ${o.nodes} nodes${o.cloneGate === false ? ", lane around whole applies" : ""}${o.sharedProvider ? ", shared provider" : ""}`,
      measured: makespan / 1000,
      ideal: ideal / 1000,
      ratio: makespan / ideal,
      detail: `${lanes} lanes, ${Math.ceil(o.jobs / lanes)} clones each; runners per node: ${perNode}; CPU in the burst: terraform and providers ${(cpu1.children - cpu0.children).toFixed(1)} s, listener and stand-ins ${(cpu1.own - cpu0.own).toFixed(1)} s: on ${availableParallelism()} cores no schedule beats ${(floorMs / 1000).toFixed(1)} s (the CPU floor); ratio to the larger of ideal and floor: ${(makespan / Math.max(ideal, floorMs)).toFixed(2)}`,
    };
  } finally {
    await e.stop();
  }
}

export async function benchSingle(o: { timeScale: number; sharedProvider?: boolean }): Promise<ScaleFigure> {
  const e = await world({ timeScale: o.timeScale, nodes: [{ name: "pve" }], templates: [{ node: "pve", vmid: 9000 }], maxRunners: 2, sharedProvider: o.sharedProvider });
  try {
    // Warm-up: the first apply pays terraform's one-time init in the shared dir.
    await runJobs(e, 1, 120_000, 100);
    await waitFor("warm-up runner gone", () => e.service.store.runners(["requested", "provisioning", "booting", "idle", "busy", "done", "destroying"]).length === 0, 120_000);
    // Watch the runner's states closely to split the time.
    const seen = new Map<string, number>();
    const watch = setInterval(() => {
      for (const r of e.service.store.runners(["provisioning", "booting", "idle", "busy"])) if (!seen.has(`${r.name}:${r.state}`)) seen.set(`${r.name}:${r.state}`, r.stateSince);
    }, 5);
    const cpu0 = await cpuWithShared(e);
    const { ms } = await runJobs(e, 1, 120_000, 100).finally(() => clearInterval(watch));
    const cpu1 = await cpuWithShared(e);
    const total = ms[0] / 1000;
    const name = e.world.github.jobs().at(-1)!.runnerName!;
    const applyS = ((seen.get(`${name}:booting`) ?? NaN) - (seen.get(`${name}:provisioning`) ?? NaN)) / 1000;
    const s = o.timeScale;
    const ideal = ((REALISTIC.cloneMs + REALISTIC.startMs + REALISTIC.bootMs) * s) / 1000;
    // What the apply spent beyond the clone itself (and bpg's one config PUT): terraform and the provider.
    const terraformOverhead = applyS - (REALISTIC.cloneMs * s) / 1000;
    return {
      name: `single job: queued → started${o.sharedProvider ? ", shared provider" : ""}`,
      measured: total,
      ideal,
      ratio: total / ideal,
      detail: `apply ${applyS.toFixed(2)} s of which the clone ${((REALISTIC.cloneMs * s) / 1000).toFixed(2)} s; terraform's share ${((terraformOverhead / total) * 100).toFixed(0)}% (${terraformOverhead.toFixed(2)} s; terraform and provider CPU ${(cpu1.children - cpu0.children).toFixed(2)} s)`,
    };
  } finally {
    await e.stop();
  }
}

export async function benchWarm(o: { timeScale: number }): Promise<ScaleFigure> {
  const e = await world({ timeScale: o.timeScale, nodes: [{ name: "pve" }], templates: [{ node: "pve", vmid: 9000 }], maxRunners: 3, warm: 1 });
  try {
    await waitFor("a warm-pool member ready", () => e.service.store.runners(["warm"]).length === 1, 120_000);
    const { ms } = await runJobs(e, 1, 120_000, 100);
    const total = ms[0] / 1000;
    const s = o.timeScale;
    const ideal = ((REALISTIC.startMs + REALISTIC.bootMs) * s) / 1000;
    const cold = ((REALISTIC.cloneMs + REALISTIC.startMs + REALISTIC.bootMs) * s) / 1000;
    return { name: "warm pool: queued → started", measured: total, ideal, ratio: total / ideal, detail: `ideal start + boot; a cold runner's ideal would be ${cold.toFixed(2)} s` };
  } finally {
    await e.stop();
  }
}
