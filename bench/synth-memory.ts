// Memory over many in-process runner-stack synths (the listener synthesizes one per runner, for
// months): heap and RSS after a full GC, before and after N synths, against a baseline loop that
// writes the same JSON with plain fs (no CDK). Figures, never pass/fail.
//
// A second, smaller run shows the known leak for contrast: an attribute token (`container
// .getStringAttribute("id")` in a TerraformOutput) stays in cdktn's process-global token map for
// good (~8.5 KB per synth, as this bench measures). Our stack uses a literal reference instead.
//
// Needs `node --expose-gc`; without it the result says so and nothing is measured.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { getHeapSpaceStatistics } from "node:v8";
import { App, TerraformOutput } from "cdktn";
import { RUNNER_STACK_NAME, RunnerStack, synthRunnerStack, type RunnerStackSpec } from "../stacks/runner-stack.js";
import { fmtMB, fmtMs, fmtX, ratio, summarize, type Summary } from "./stats.js";

export interface SynthMemoryOptions {
  /** Synths of our stack (and of the plain-write baseline) after the warm-up. */
  synths: number;
  /** Synths of the leaking variant (default: min(2000, synths)). */
  leakySynths?: number;
  /** Untimed, unmeasured synths first (default 200). */
  warmup?: number;
}

export interface MemoryRun {
  n: number;
  /** After gc(), before and after the n iterations, bytes. */
  heapBefore: number;
  heapAfter: number;
  rssBefore: number;
  rssAfter: number;
  heapGrowth: number;
  rssGrowth: number;
  heapGrowthPerIteration: number;
  /** V8's committed heap and memory outside it (Buffers, native), growth over the run, bytes. */
  heapTotalGrowth: number;
  externalGrowth: number;
  /** Growth over the second half only (after gc at n/2): a one-off step (young generation sized up, code compiled) shows in the first half only, a leak in both. */
  heapGrowthSecondHalf: number;
  rssGrowthSecondHalf: number;
  /**
   * Growth of V8's young generation (new space, committed): V8 doubles it under allocation
   * pressure up to a fixed cap, and it is empty after gc, so it is RSS but not a leak.
   */
  newSpaceGrowth: number;
  /** RSS growth less the young generation's: what a leak outside the heap would show in. */
  rssGrowthExNewSpace: number;
  /** ms per iteration (synth, or the plain write). */
  time: Summary;
  /** Sum of the iteration times (GC between halves excluded), ms. */
  wallMs: number;
}

export type SynthMemoryResult =
  | { error: string }
  | {
      error?: undefined;
      options: Required<SynthMemoryOptions>;
      /** synthRunnerStack, distinct runner names, into a small set of reused dirs. */
      ours: MemoryRun;
      /** The same files (cdk.tf.json, manifest.json) written with plain fs. */
      baseline: MemoryRun;
      /** Our stack plus a TerraformOutput of an attribute token: the leak mechanism. */
      leaky: MemoryRun;
      /** Ours minus the plain-write baseline (a ratio to a baseline near zero means nothing), MB. */
      excessOverBaselineMB: { heap: number; rss: number; rssSecondHalf: number; rssExNewSpace: number };
      ratio: {
        timeP50: number;
        timeP95: number;
        /** Heap growth per synth, leaky / ours (ours floored at 1 byte). */
        leakyPerSynthOverOurs: number;
        /** Heap growth per synth, leaky / the ~8.5 KB per synth this bench first measured for it. */
        leakyPerSynthOverFirstMeasured: number;
      };
      /** Ours' growth over the issue's target of 5 MB per 10,000 synths, scaled to n. */
      target: { heapGrowthMB: number; oursOverTarget: number; rssOverTarget: number; rssExNewSpaceOverTarget: number };
      /** Heap growth of ours over `synths`, extrapolated at the leaky variant's rate. */
      leakyExtrapolatedMB: number;
      durationsMs: { ours: number; baseline: number; leaky: number; total: number };
    };

const DIRS = 8;
const MB = 1024 * 1024;

const baseSpec: RunnerStackSpec = {
  runnerName: "runner-00000000",
  labelSet: "linux-small",
  controllerId: "0000000000000000",
  endpoint: "https://pve.example:8006/",
  node: "pve",
  templateVmid: 9000,
  pool: "ci",
  bridge: "vmbr1",
  vlan: 30,
  linkedClone: true,
  cores: 2,
  memoryMb: 2048,
  swapMb: 512,
};

const nameOf = (i: number) => `runner-${i.toString(16).padStart(8, "0")}`;

const newSpaceSize = () => getHeapSpaceStatistics().find((x) => x.space_name === "new_space")?.space_size ?? 0;

async function fullGc(gc: () => void): Promise<void> {
  for (let k = 0; k < 3; k++) {
    gc();
    // Let weak callbacks and finalizers run between passes.
    await new Promise((r) => setImmediate(r));
  }
}

async function measure(gc: () => void, n: number, warmup: number, step: (i: number) => void): Promise<MemoryRun> {
  for (let i = 0; i < warmup; i++) step(i);
  await fullGc(gc);
  const m0 = process.memoryUsage();
  const ns0 = newSpaceSize();
  let mHalf = m0;
  const half = Math.floor(n / 2);
  const times = new Float64Array(n);
  let wallMs = 0;
  for (let i = 0; i < n; i++) {
    if (i === half) {
      await fullGc(gc);
      mHalf = process.memoryUsage();
    }
    const t = performance.now();
    step(warmup + i);
    const dt = performance.now() - t;
    times[i] = dt;
    wallMs += dt;
  }
  await fullGc(gc);
  const m1 = process.memoryUsage();
  const ns1 = newSpaceSize();
  return {
    n,
    heapBefore: m0.heapUsed,
    heapAfter: m1.heapUsed,
    rssBefore: m0.rss,
    rssAfter: m1.rss,
    heapGrowth: m1.heapUsed - m0.heapUsed,
    rssGrowth: m1.rss - m0.rss,
    heapGrowthPerIteration: (m1.heapUsed - m0.heapUsed) / n,
    heapTotalGrowth: m1.heapTotal - m0.heapTotal,
    externalGrowth: m1.external - m0.external,
    heapGrowthSecondHalf: m1.heapUsed - mHalf.heapUsed,
    rssGrowthSecondHalf: m1.rss - mHalf.rss,
    newSpaceGrowth: ns1 - ns0,
    rssGrowthExNewSpace: m1.rss - m0.rss - (ns1 - ns0),
    time: summarize(times),
    wallMs,
  };
}

/** Our stack plus an output whose value is an attribute token: what the listener must not do. */
function synthLeaky(dir: string, spec: RunnerStackSpec): void {
  mkdirSync(dir, { recursive: true });
  const app = new App({ outdir: dir, skipValidation: true });
  const stack = new RunnerStack(app, spec);
  new TerraformOutput(stack, "leaky_id", { value: stack.container.getStringAttribute("id") });
  app.synth();
}

export async function benchSynthMemory(o: SynthMemoryOptions): Promise<{ result: SynthMemoryResult; summary: string }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc !== "function") {
    const error = "global.gc is missing: run node with --expose-gc (e.g. node --expose-gc dist/bench/run.js); heap growth without a forced GC measures the collector, not a leak";
    return { result: { error }, summary: `synth memory: not measured (${error})` };
  }
  const opts: Required<SynthMemoryOptions> = { synths: o.synths, leakySynths: o.leakySynths ?? Math.min(2000, o.synths), warmup: o.warmup ?? 200 };
  const tStart = performance.now();
  const root = mkdtempSync(join(tmpdir(), "bench-synth-mem-"));
  try {
    const dirs = Array.from({ length: DIRS }, (_, k) => join(root, `ours-${k}`));
    // The files one synth writes, for the baseline to write the same bytes.
    const probe = synthRunnerStack(join(root, "probe"), baseSpec);
    const tfJson = readFileSync(probe.file, "utf8");
    const manifest = readFileSync(join(root, "probe", "manifest.json"), "utf8");
    const baseDirs = Array.from({ length: DIRS }, (_, k) => join(root, `plain-${k}`));

    let t = performance.now();
    const ours = await measure(gc, opts.synths, opts.warmup, (i) => {
      synthRunnerStack(dirs[i % DIRS], { ...baseSpec, runnerName: nameOf(i) });
    });
    const dOurs = performance.now() - t;

    t = performance.now();
    const baseline = await measure(gc, opts.synths, opts.warmup, (i) => {
      const dir = baseDirs[i % DIRS];
      const stackDir = join(dir, "stacks", RUNNER_STACK_NAME);
      mkdirSync(stackDir, { recursive: true });
      writeFileSync(join(stackDir, "cdk.tf.json"), tfJson.replaceAll(baseSpec.runnerName, nameOf(i)));
      writeFileSync(join(dir, "manifest.json"), manifest);
    });
    const dBaseline = performance.now() - t;

    // Last: whatever it leaks stays for the rest of this process.
    t = performance.now();
    const leakyDirs = Array.from({ length: DIRS }, (_, k) => join(root, `leaky-${k}`));
    const leaky = await measure(gc, opts.leakySynths, opts.warmup, (i) => synthLeaky(leakyDirs[i % DIRS], { ...baseSpec, runnerName: nameOf(i) }));
    const dLeaky = performance.now() - t;

    // 5 MB over 10,000 synths, scaled to the n measured.
    const target = ((5 * MB) / 10_000) * opts.synths;
    const result: SynthMemoryResult = {
      options: opts,
      ours,
      baseline,
      leaky,
      excessOverBaselineMB: {
        heap: (ours.heapGrowth - baseline.heapGrowth) / MB,
        rss: (ours.rssGrowth - baseline.rssGrowth) / MB,
        rssSecondHalf: (ours.rssGrowthSecondHalf - baseline.rssGrowthSecondHalf) / MB,
        rssExNewSpace: (ours.rssGrowthExNewSpace - baseline.rssGrowthExNewSpace) / MB,
      },
      ratio: {
        timeP50: ratio(ours.time.p50, baseline.time.p50),
        timeP95: ratio(ours.time.p95, baseline.time.p95),
        leakyPerSynthOverOurs: ratio(leaky.heapGrowthPerIteration, Math.max(1, ours.heapGrowthPerIteration)),
        leakyPerSynthOverFirstMeasured: ratio(leaky.heapGrowthPerIteration, 8.5 * 1024),
      },
      target: { heapGrowthMB: target / MB, oursOverTarget: ours.heapGrowth / target, rssOverTarget: ours.rssGrowth / target, rssExNewSpaceOverTarget: ours.rssGrowthExNewSpace / target },
      leakyExtrapolatedMB: (leaky.heapGrowthPerIteration * opts.synths) / 1024 / 1024,
      durationsMs: { ours: dOurs, baseline: dBaseline, leaky: dLeaky, total: performance.now() - tStart },
    };
    return { result, summary: summaryLine(result) };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

function summaryLine(r: Exclude<SynthMemoryResult, { error: string }>): string {
  const kb = (b: number) => `${(b / 1024).toFixed(2)} KB`;
  const { ours, baseline, leaky } = r;
  return (
    `runner stack synth memory (n=${ours.n} after ${r.options.warmup} warm-up, after gc): heap ours ${fmtMB(ours.heapGrowth)} (${kb(ours.heapGrowthPerIteration)}/synth) vs plain fs write ${fmtMB(baseline.heapGrowth)}, ` +
    `ours/target ${r.target.heapGrowthMB.toFixed(2)} MB ${fmtX(r.target.oursOverTarget)}; RSS ours ${fmtMB(ours.rssGrowth)} of which young generation ${fmtMB(ours.newSpaceGrowth)} (rest ${fmtMB(ours.rssGrowthExNewSpace)}) vs plain ${fmtMB(baseline.rssGrowth)}; ` +
    `attribute-token variant (n=${leaky.n}) heap ${fmtMB(leaky.heapGrowth)} = ${kb(leaky.heapGrowthPerIteration)}/synth, ${fmtX(r.ratio.leakyPerSynthOverOurs, 0)} ours (→ ${r.leakyExtrapolatedMB.toFixed(1)} MB at n=${ours.n}); ` +
    `synth time p50 ${fmtMs(ours.time.p50, 3)}, p95 ${fmtMs(ours.time.p95, 3)} vs plain write p50 ${fmtMs(baseline.time.p50, 3)}, p95 ${fmtMs(baseline.time.p95, 3)}: ratio p50 ${fmtX(r.ratio.timeP50, 1)}, p95 ${fmtX(r.ratio.timeP95, 1)}`
  );
}
