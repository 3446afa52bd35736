// `pve-runners demo`: the main job, end to end, on the embedded stand-in world.
// Real listener, real terraform, the provider stand-in, the PVE simulator and the fake GitHub.
// Exits 0 only if every job ran on a runner made for it or for its label set, and nothing is left:
// no container, no GitHub registration, no stack directory.
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { startWorld, DEMO_LABEL_SETS } from "../sim/world.js";
import { startService } from "../listener/app/service.js";
import { LIVE_STATES, type RunnerRow } from "../listener/store/store.js";
import { REDACT_PATHS } from "./log.js";
import { SIM_TOKENS, SIM_NODE } from "../sim/pve/index.js";
import type { SimJob } from "../sim/github/index.js";
import { plural } from "./text.js";

export interface DemoOptions {
  jobs: number;
  /** Start without a template and build it through the template stack first. */
  buildTemplate?: boolean;
  timeScale: number;
  timeoutMs: number;
  logger: Logger;
  out: (line: string) => void;
}

export interface DemoResult {
  jobs: number;
  served: number;
  containersLeft: number;
  runnersLeft: number;
  stackDirsLeft: number;
  ok: boolean;
}

const JOB_MIX = [
  { repo: "acme/app", labels: ["self-hosted", "linux"] },
  { repo: "acme/app", labels: ["self-hosted", "linux", "x64", "large"] },
  { repo: "acme/infra", labels: ["self-hosted", "linux", "x64"] },
  { repo: "solo/dotfiles", labels: ["self-hosted", "linux"] },
];

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const started = Date.now();
  const t = () => `${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s`;
  o.out(`demo: starting the stand-in world (time scale ${o.timeScale})`);
  const world = await startWorld({ timeScale: o.timeScale, logger: o.logger, ...(o.buildTemplate ? { templates: [] } : {}) });
  if (o.buildTemplate) {
    try {
      o.out(`demo: building the template with the template stack (terraform, root@pam, pct)`);
      const { buildDemoTemplate } = await import("./demo-template.js");
      const built = await buildDemoTemplate(world, o.logger.child({ part: "template" }));
      o.out(`template: built ${built.node}/${built.vmid}, runner ${built.runnerVersion}`);
    } catch (err) {
      o.out(`demo: ${(err as Error).message}`);
      await world.stop();
      return { jobs: 0, served: 0, containersLeft: 0, runnersLeft: 0, stackDirsLeft: 0, ok: false };
    }
  }
  let unwatch = () => {};
  const service = await startService(world.config, world.secrets, o.logger.child({ part: "listener" }), {
    helperEnv: world.helperEnv, terraformEnv: world.terraformEnv,
    onlinePollMs: 100,
    retryBackoffMs: 200,
    githubThrottle: false,
  });
  try {
    world.github.setWebhook(service.url + world.config.github.webhookPath, world.secrets.webhookSecret);
    o.out(`demo: listener ${service.url}, PVE ${world.pve.url}, GitHub ${world.github.url}`);
    const created: SimJob[] = [];
    for (let i = 0; i < o.jobs; i++) {
      const spec = JOB_MIX[i % JOB_MIX.length];
      const job = await world.github.createJob({ ...spec, durationMs: 4000, workflowName: "demo", jobName: `build-${i + 1}` });
      created.push(job);
      o.out(`${t()} job ${job.id} queued in ${spec.repo} runs-on [${spec.labels.join(", ")}]`);
    }

    // Progress: every change of a runner's state as it happens (the store tells), and of a job's as
    // GitHub shows it (polled). A job's first line is the one printed when it was queued.
    const seen = new Map<string, string>(created.map((j) => [`j:${j.id}`, "queued"]));
    const report = (key: string, state: string, line: string) => {
      if (seen.get(key) === state) return;
      seen.set(key, state);
      o.out(`${t()} ${line}`);
    };
    for (const r of service.store.runners()) report(`r:${r.name}`, r.state, runnerLine(r));
    unwatch = service.store.watchRunners((r) => report(`r:${r.name}`, r.state, runnerLine(r)));
    const deadline = Date.now() + o.timeoutMs;
    for (;;) {
      const jobs = world.github.jobs().filter((j) => created.some((c) => c.id === j.id));
      for (const j of jobs) report(`j:${j.id}`, j.status, `job ${j.id} ${j.status}${j.runnerName ? ` on ${j.runnerName}` : ""}${j.conclusion ? ` (${j.conclusion})` : ""}`);
      const allDone = jobs.every((j) => j.status === "completed");
      const live = service.store.runners(LIVE_STATES);
      if (allDone && live.length === 0) break;
      if (Date.now() > deadline) {
        o.out(`demo: timed out with ${jobs.filter((j) => j.status !== "completed").length} jobs unfinished and ${live.length} runners live`);
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }

    // Verify against the outside world, not our own records.
    const runnersByName = new Map(service.store.runners().map((r) => [r.name, r]));
    const jobs = world.github.jobs().filter((j) => created.some((c) => c.id === j.id));
    let served = 0;
    o.out("demo: job       labels                                runner            made for   conclusion");
    for (const j of jobs) {
      const r = j.runnerName ? runnersByName.get(j.runnerName) : undefined;
      // GitHub gives a job to any idle runner whose labels include all of the job's: a runner of
      // another (larger) set may take it, and the job it was made for gets a new one.
      const set = DEMO_LABEL_SETS.find((s) => s.name === r?.labelSet);
      const fits = !!set && j.labels.every((l) => set.labels.some((x) => x.toLowerCase() === l.toLowerCase()));
      const ok = j.status === "completed" && j.conclusion === "success" && !!r && fits;
      if (ok) served++;
      o.out(`demo: ${String(j.id).padEnd(9)} ${j.labels.join(",").padEnd(37)} ${(j.runnerName ?? "-").padEnd(17)} ${String(r?.madeForJob ?? "-").padEnd(10)} ${j.conclusion ?? j.status}${ok ? "" : "  <- NOT SERVED"}`);
    }
    const cts = (await (
      await fetch(`${world.pve.url}/api2/json/nodes/${SIM_NODE}/lxc`, { headers: { authorization: `PVEAPIToken=${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}` } })
    ).json()) as { data: Array<{ vmid: number; template?: number }> };
    const containersLeft = cts.data.filter((c) => !c.template).length;
    const runnersLeft = world.github.runners().filter((r) => !r.removedAt).length;
    const stackDirsLeft = (await readdir(join(world.config.stateDir, "runners")).catch(() => [])).length;
    const result = { jobs: created.length, served, containersLeft, runnersLeft, stackDirsLeft, ok: served === created.length && containersLeft === 0 && runnersLeft === 0 && stackDirsLeft === 0 };
    if (stackDirsLeft) o.out(`demo: ${plural(stackDirsLeft, "stack directory", "stack directories")} left behind`);
    o.out(`demo: ${plural(result.jobs, "job")}, ${result.served} served, ${plural(containersLeft, "container")} left, ${plural(runnersLeft, "runner")} left`);
    return result;
  } finally {
    unwatch();
    await service.stop();
    await world.stop();
  }
}

/** Why a runner went without a job, in words (the reasons the pipeline records). */
const WHY: Record<string, string> = {
  surplus: "not needed: its job ran on another runner and no queued job wants it",
  "idle timeout": "idle for too long",
  "not needed": "not needed: its job was served before it was made",
};

export function runnerLine(r: RunnerRow): string {
  const why = r.lastError ? (WHY[r.lastError] ?? `error: ${r.lastError}`) : "";
  const ends = r.state === "destroying" || r.state === "gone" || r.state === "failed";
  return `${r.name} ${r.state}${r.vmid ? ` (CT ${r.vmid})` : ""}${r.jobId ? ` job ${r.jobId}` : r.madeForJob && r.state === "requested" ? ` for job ${r.madeForJob}` : ""}${ends && why ? ` — ${why}` : ""}`;
}

/**
 * The listener's log in the demo: warnings and errors as lines for people (a label set that
 * overlaps another, a missing privilege), not JSON in the middle of the progress. LOG_LEVEL set:
 * the JSON log as usual.
 */
export function demoLogger(out: (line: string) => void): Logger {
  return pino(
    { level: "warn", redact: { paths: REDACT_PATHS, censor: "[redacted]" } },
    {
      write(line: string) {
        try {
          const e = JSON.parse(line) as { level: number; msg: string; runner?: string };
          out(`       ${e.level >= 50 ? "error" : "note"}: ${e.msg}${e.runner ? ` (${e.runner})` : ""}`);
        } catch {
          out(line.trimEnd());
        }
      },
    },
  );
}
