// Loaded into the listener process (`pve-runners serve`) by the webhook bench only, with
// NODE_OPTIONS=--import: measures the listener's main thread from inside during the bench's window.
// The first SIGUSR2 opens the window, the second closes it and writes one JSON file
// (PVE_RUNNERS_BENCH_PROBE_OUT): event-loop delay and utilization, and a CPU profile of the main
// thread (node:inspector, 1 ms samples) summed by what the time went to. A profile sample is
// wall-clock time: it includes time the thread waited for a CPU or in a system call such as fsync;
// the bench splits those with the thread's scheduler accounting, read from outside.
//
// Importing this module anywhere else does nothing.
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { Session } from "node:inspector";
import { writeFileSync } from "node:fs";

export const PROBE_OUT_ENV = "PVE_RUNNERS_BENCH_PROBE_OUT";

export interface ProbeResult {
  windowMs: number;
  delayMs: { p50: number; p99: number; max: number };
  utilization: number;
  /** Profile time in the window by category, ms (outermost matching frame decides; see CATEGORIES). */
  breakdownMs: Record<string, number>;
}

interface CallFrame {
  functionName: string;
  url: string;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** In order: the first category any frame of a sample's stack matches names it. */
const CATEGORIES: Array<[string, (f: CallFrame) => boolean]> = [
  ["idle", (f) => f.functionName === "(idle)"],
  ["garbage collection", (f) => f.functionName === "(garbage collector)"],
  ["stack synthesis (cdktn)", (f) => /\/(cdktn|constructs)\/|runner-stack\.js|bpg-proxmox\.js/.test(f.url)],
  ["module loading", (f) => /internal\/modules\//.test(f.url)],
  ["child_process.spawn (terraform)", (f) => f.functionName === "spawn" && /child_process/.test(f.url)],
  ["webhook: record commit (SQLite; its WAL sync is off the loop)", (f) => f.functionName === "recordDeliveriesChecked"],
  ["pipeline: apply deliveries (SQLite, unsynced commit)", (f) => f.functionName === "applyDeliveries"],
  ["webhook: signature (HMAC)", (f) => /webhooks-methods/.test(f.url)],
  ["webhook: route (parse, validate)", (f) => /listener\/http\/webhook\.js$/.test(f.url)],
  ["http + express", (f) => /node:_http|\/(router|express|body-parser|raw-body)\//.test(f.url)],
  ["other SQLite (store reads and writes)", (f) => /better-sqlite3|listener\/store\/store\.js$/.test(f.url)],
  ["terraform adapter (pipes, JSON lines)", (f) => /listener\/adapters\/terraform\/terraform(-json)?\.js$/.test(f.url)],
  ["pipeline (reconcile, drivers)", (f) => /listener\/lifecycle\/(pipeline|job-events|demand|hold-back|runner-machine|provision|boot|teardown|failure-report)\.js$/.test(f.url)],
  ["clone gate (proxy)", (f) => /listener\/lifecycle\/clone-(gate|lane)\.js$/.test(f.url)],
  ["logging (pino)", (f) => /\/(pino|sonic-boom)\//.test(f.url)],
];

export function categorize(p: Profile): Record<string, number> {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const memo = new Map<number, string>();
  const categoryOf = (id: number): string => {
    const known = memo.get(id);
    if (known) return known;
    const frames: CallFrame[] = [];
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) frames.push(byId.get(at)!.callFrame);
    const hit = CATEGORIES.find(([, match]) => frames.some(match));
    const name = hit ? hit[0] : "other";
    memo.set(id, name);
    return name;
  };
  const out: Record<string, number> = {};
  // timeDeltas[i] is the time before sample i: sample i lasts until sample i+1.
  for (let i = 0; i < p.samples.length; i++) {
    const us = p.timeDeltas[i + 1] ?? 0;
    const c = categoryOf(p.samples[i]);
    out[c] = (out[c] ?? 0) + us / 1000;
  }
  return out;
}

function install(outFile: string): void {
  const session = new Session();
  session.connect();
  const loop = monitorEventLoopDelay({ resolution: 1 });
  let opened: { at: number; elu: ReturnType<typeof performance.eventLoopUtilization> } | null = null;
  process.on("SIGUSR2", () => {
    if (!opened) {
      session.post("Profiler.enable");
      session.post("Profiler.setSamplingInterval", { interval: 1000 });
      session.post("Profiler.start");
      loop.reset();
      loop.enable();
      opened = { at: performance.now(), elu: performance.eventLoopUtilization() };
      return;
    }
    const { at, elu } = opened;
    const utilization = performance.eventLoopUtilization(elu).utilization;
    loop.disable();
    session.post("Profiler.stop", (err, r) => {
      const result: ProbeResult = {
        windowMs: performance.now() - at,
        delayMs: { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
        utilization,
        breakdownMs: err ? {} : categorize(r.profile as unknown as Profile),
      };
      writeFileSync(outFile, JSON.stringify(result));
      // The whole profile too, for a look in Chrome's DevTools (PVE_RUNNERS_BENCH_PROBE_RAW: a directory).
      const raw = process.env.PVE_RUNNERS_BENCH_PROBE_RAW;
      if (raw && !err) writeFileSync(`${raw}/listener-${Date.now()}.cpuprofile`, JSON.stringify(r.profile));
    });
    opened = null;
  });
}

const out = process.env[PROBE_OUT_ENV];
if (out && process.argv.includes("serve")) install(out);
