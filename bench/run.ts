// Benchmarks print figures, never pass/fail. Each figure is a ratio measured in this one run:
// ours against an ideal or a baseline on the same machine, so numbers travel between machines.
//
//   npm run bench                  the full set (about 5 minutes)
//   npm run bench -- --short       CI's short mode: the same figures, smaller (about 1.5 minutes)
//   npm run bench -- --only burst,warm
//   npm run bench -- --only runcost      CPU per runner life, per terraform command and provider start
//   npm run bench -- --only soak         10,000 jobs (1,000 with --short) leave no trace
//
// Needs node --expose-gc (the npm script passes it) for the memory figure.
import { benchBurst, benchSingle, benchWarm, type ScaleFigure } from "./scale.js";
import { benchWebhookLoad, benchWebhookOwnProcess } from "./webhook-load.js";
import { benchSynthMemory } from "./synth-memory.js";
import { benchRunCost } from "./run-cost.js";
import { benchSoak } from "./soak.js";

const args = process.argv.slice(2);
const short = args.includes("--short");
const onlyArg = args[args.indexOf("--only") + 1];
const only = args.includes("--only") && onlyArg ? new Set(onlyArg.split(",")) : null;
const wanted = (name: string) => !only || only.has(name);

interface Row {
  figure: string;
  measured: string;
  against: string;
  ratio: string;
  target: string;
  detail: string;
}
const rows: Row[] = [];
const s = (x: number) => `${x.toFixed(2)} s`;
const x = (r: number) => `${r.toFixed(2)}`;

function scaleRow(f: ScaleFigure, target: string): void {
  rows.push({ figure: f.name, measured: s(f.measured), against: `ideal ${s(f.ideal)}`, ratio: x(f.ratio), target, detail: f.detail });
  console.log(`${f.name}: ${s(f.measured)} vs ideal ${s(f.ideal)} → ${x(f.ratio)}  (${f.detail})`);
}

const started = Date.now();
console.log(`pve-runners bench (${short ? "short" : "full"} mode), ${new Date().toISOString()}`);

if (wanted("burst")) {
  const o = short ? { jobs: 12, nodes: 2, templatesPerNode: 2, timeScale: 0.5 } : { jobs: 50, nodes: 2, templatesPerNode: 2, timeScale: 1 };
  scaleRow(await benchBurst(o), "≤ 1.10");
  scaleRow(await benchBurst({ ...o, sharedProvider: true }), "≤ 1.10");
  if (!short) scaleRow(await benchBurst({ ...o, cloneGate: false }), "(baseline: lane held around each whole apply)");
}
if (wanted("single")) {
  scaleRow(await benchSingle({ timeScale: short ? 0.5 : 1 }), "≤ 1.10");
  scaleRow(await benchSingle({ timeScale: short ? 0.5 : 1, sharedProvider: true }), "≤ 1.10");
}
if (wanted("warm")) scaleRow(await benchWarm({ timeScale: short ? 0.5 : 1 }), "—");
if (wanted("runcost")) {
  // Twice: each terraform run starting its own providers (the default), then terraform.sharedProvider.
  for (const sharedProvider of [false, true]) {
    const r = await benchRunCost({ timeScale: short ? 0.5 : 1, sharedProvider });
    console.log(r.summary);
    const f = (v: number) => v.toFixed(2);
    const perApplyDestroy = ["apply", "destroy"].map((c) => `${r.commands.find((x) => x.command === c)?.runs ?? 0}`).join("/");
    const others = r.commands.filter((c) => c.command !== "apply" && c.command !== "destroy");
    const mode = sharedProvider ? ", shared provider" : "";
    rows.push({
      figure: `CPU per runner life (apply + destroy), terraform${mode}`,
      measured: `${f(r.terraformCpu)} CPU-s in ${r.commands.reduce((a, c) => a + c.runs, 0)} processes`,
      against: `0.3 CPU-s (orchestration, stand-ins excluded); floor: bare \`terraform version\` ${f(r.bareTerraformCpu)} CPU-s × processes`,
      ratio: `${x(r.terraformCpu / 0.3)} (${x(r.terraformCpu / (r.bareTerraformCpu * r.commands.reduce((a, c) => a + c.runs, 0)))} × floor)`,
      target: "≤ 1.00; 1 process per apply and per destroy",
      detail: `processes per apply/destroy ${perApplyDestroy}${others.length ? `; also ${others.map((c) => `${c.runs}× ${c.command}`).join(", ")}` : ""}; ${r.commands.map((c) => `${c.command} ${f(c.terraformCpu)} s`).join(", ")}; listener and in-process stand-ins ${f(r.listenerAndStandInsCpu)} s`,
    });
    if (!sharedProvider) {
      const each = r.providerStarts ? r.providerCpu / r.providerStarts : NaN;
      rows.push({
        figure: "provider stand-in: CPU per start (in a runner life)",
        measured: `${f(each)} CPU-s × ${r.providerStarts} starts = ${f(r.providerCpu)} s`,
        against: `bare \`node -e ""\` ${f(r.bareNodeStartCpu)} CPU-s`,
        ratio: x(each / r.bareNodeStartCpu),
        target: "≤ 0.05 CPU-s per start (a Go provider)",
        detail: r.commands.map((c) => `${c.command}: ${c.providerStarts} starts`).join(", "),
      });
    } else {
      rows.push({
        figure: "provider stand-in in a runner life, shared provider",
        measured: `${f(r.providerCpu)} CPU-s in ${r.providerStarts} starts`,
        against: "the same life with a provider per run (row above)",
        ratio: "",
        target: "0 starts per run",
        detail: "one -debug provider process serves every terraform run (TF_REATTACH_PROVIDERS); its CPU read from /proc over the life",
      });
    }
  }
}
if (wanted("webhook")) {
  const o = short ? { deliveriesPerSecond: 100, seconds: 3, applies: 8, timeScale: 0.5 } : { deliveriesPerSecond: 500, seconds: 10, applies: 50, timeScale: 1 };
  const { result: r, summary } = await benchWebhookLoad(o);
  console.log(summary);
  const lat = r.ours.side.latency;
  rows.push({
    figure: `webhook ack, ${o.deliveriesPerSecond}/s for ${o.seconds} s while ${o.applies} applies run`,
    measured: `p50 ${lat.p50.toFixed(1)} ms, p99 ${lat.p99.toFixed(1)} ms`,
    against: `bare express p99 ${r.baseline.latency.p99.toFixed(1)} ms`,
    ratio: `p99 ${x(r.ratio.p99)}`,
    target: "p99 < 20 ms, 0 lost",
    detail: `lost ${r.ours.lost.lost}/${r.ours.lost.guids} (acked but not stored: ${r.ours.lost.ackedNotInStore}); idle listener p99 ${r.idle.side.latency.p99.toFixed(1)} ms`,
  });
  // As in production: the listener alone in its process; the stand-ins, the sender and terraform elsewhere.
  const own = await benchWebhookOwnProcess(o);
  console.log(own.summary);
  rows.push({
    figure: `the same, listener in its own process (pve-runners serve)`,
    measured: `p50 ${own.side.latency.p50.toFixed(1)} ms, p99 ${own.side.latency.p99.toFixed(1)} ms`,
    against: `bare express p99 ${own.baselineP99.toFixed(1)} ms`,
    ratio: `p99 ${x(own.side.latency.p99 / own.baselineP99)}`,
    target: "p99 < 20 ms, 0 lost",
    detail: `lost ${own.lost}/${own.guids} (acked but not stored: ${own.ackedNotInStore}); no applies p99 ${own.idle.side.latency.p99.toFixed(1)} ms; terraform lowered by: ${own.mechanism}`,
  });
}
if (wanted("memory")) {
  const { result: r, summary } = await benchSynthMemory({ synths: short ? 1_000 : 10_000 });
  console.log(summary);
  if (r.error === undefined) {
    const mb = (b: number) => `${b < 0 ? "-" : "+"}${(Math.abs(b) / 1024 / 1024).toFixed(2)} MB`;
    rows.push({
      figure: `memory after ${r.options.synths} synthesized stacks`,
      measured: `heap ${mb(r.ours.heapGrowth)}, RSS ${mb(r.ours.rssGrowthExNewSpace)} (excl. V8 young gen)`,
      against: `plain JSON writes: heap ${mb(r.baseline.heapGrowth)}`,
      ratio: `leaky variant ${x(r.ratio.leakyPerSynthOverOurs)}× ours`,
      target: "growth < 5 MB",
      detail: `synth p50 ${r.ours.time.p50.toFixed(2)} ms (${x(r.ratio.timeP50)}× a plain write); an attribute token leaks ${(r.leaky.heapGrowthPerIteration / 1024).toFixed(1)} KiB/synth`,
    });
  } else rows.push({ figure: "memory", measured: "not measured", against: "", ratio: "", target: "", detail: r.error });
}
if (wanted("soak")) {
  const { result: r, summary } = await benchSoak(short ? { jobs: 1_000, inFlight: 8, window: 200, keepWindows: 2, pruneEveryMs: 1_000, sweepEvery: 100, timeScale: 0.01 } : { jobs: 10_000, inFlight: 16, window: 1_000, keepWindows: 3, pruneEveryMs: 3_000, sweepEvery: 500, timeScale: 0.01 });
  console.log(summary);
  const mb = (b: number) => `${b < 0 ? "-" : "+"}${(Math.abs(b) / 1024 / 1024).toFixed(2)} MB`;
  const p50 = (a: { p50: number }) => `${a.p50.toFixed(3)} ms`;
  const left = r.leftovers;
  rows.push({
    figure: `soak: ${r.completed} jobs, ${r.options.inFlight} at a time (apply/destroy: in-process stand-in)`,
    measured: `heap ${mb(r.heapGrowth)}, RSS ${mb(r.rssGrowth)} after GC, job ${r.options.window} → end`,
    against: "20 MB",
    ratio: x(Math.max(r.heapGrowth, r.rssGrowth) / (20 * 1024 * 1024)),
    target: "< 1.00",
    detail: `${r.seconds.toFixed(0)} s; webhook route, store, reconcile, recovery, ${r.sweep.passes} sweeps (${r.sweep.actions} actions, ${r.sweep.errors} errors) real; left: ${left.liveRunners} live runners, ${left.containers} containers, ${left.stackDirs} stack dirs, ${left.registrations} registrations`,
  });
  rows.push({
    figure: `soak: reconcile and status snapshot, last ${r.options.window} jobs vs first`,
    measured: `reconcile p50 ${p50(r.reconcile.last)}, snapshot + page p50 ${p50(r.snapshot.last)}`,
    against: `first: ${p50(r.reconcile.first)}, ${p50(r.snapshot.first)}`,
    ratio: `${x(r.reconcile.last.p50 / r.reconcile.first.p50)}, ${x(r.snapshot.last.p50 / r.snapshot.first.p50)}`,
    target: "≤ 1.20",
    detail: `against ${r.history.first} → ${r.history.last} runner records held; means ${r.reconcile.first.mean.toFixed(3)} → ${r.reconcile.last.mean.toFixed(3)} ms, ${r.snapshot.first.mean.toFixed(3)} → ${r.snapshot.last.mean.toFixed(3)} ms; sweep + recovery pass ${r.sweep.first.toFixed(0)} → ${r.sweep.last.toFixed(0)} ms`,
  });
  const MB = (b: number) => `${(b / 1024 / 1024).toFixed(2)} MB`;
  rows.push({
    figure: `soak: SQLite at the end, retention shortened to ${(r.keepMs / 1000).toFixed(0)} s (pruned every ${r.options.pruneEveryMs / 1000} s)`,
    measured: `${MB(r.db.fileBytes)} + WAL ${MB(r.db.walBytes)}`,
    against: `retention bound ${MB(r.db.boundBytes)}`,
    ratio: x(r.db.fileBytes / r.db.boundBytes),
    target: "≤ 1.00",
    detail: `holds ${r.db.rows.jobs} jobs, ${r.db.rows.deliveries} deliveries, ${r.db.rows.runners} runners; bound: ${r.db.jobsInWindow} jobs (most done within retention + one interval, plus those open) × ${(r.db.bytesPerJob / 1024).toFixed(1)} KiB/job; unpruned ${r.completed} jobs would take ${MB(r.completed * r.db.bytesPerJob)}`,
  });
}

console.log(`\n| figure | measured | against | ratio | target | detail |\n|---|---|---|---|---|---|`);
for (const r of rows) console.log(`| ${r.figure} | ${r.measured} | ${r.against} | ${r.ratio} | ${r.target} | ${r.detail} |`);
console.log(`\nbench done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
// Child processes and timers of the stand-ins must not keep a finished bench alive.
process.exit(0);
