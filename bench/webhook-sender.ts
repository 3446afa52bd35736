// The open-loop webhook sender of bench/webhook-load.ts, run in a worker thread so its clock and
// event loop are not the listener's: a listener stall shows up as latency, never as a slower sender.
//
// Open loop: request i is due at t0 + i / rate whatever happened to earlier ones (no waiting for
// answers), and its latency is counted from when it was DUE, not from when it went out, so a
// stalled sender or a queue of sockets cannot hide latency (no coordinated omission).
//
// Importing this module does nothing; it acts only when started as the bench's worker.
import { Agent, request } from "node:http";
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { readdir, readFile } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { sign } from "@octokit/webhooks-methods";

export const SENDER_KIND = "pve-runners-webhook-sender";

export interface SenderConfig {
  kind: typeof SENDER_KIND;
  /** Full webhook URL (http only). */
  url: string;
  secret: string;
  rate: number;
  seconds: number;
  /** Unsigned, un-timed requests sent one by one before the window (connection set-up, JIT warm-up). */
  warmup: number;
  /** First workflow_job id of the junk payloads (distinct per phase so phases never collide). */
  jobIdBase: number;
  /** Process whose descendants are counted (terraform, provider stand-ins) while sending. */
  rootPid: number;
  timeoutMs: number;
}

export interface ProcSample {
  at: number;
  terraform: number;
  provider: number;
  other: number;
  /** Of terraform + provider: those under SCHED_IDLE, and those in the root's session (so in its autogroup). */
  heavyIdle: number;
  heavyInRootSession: number;
}

export interface SenderResult {
  guids: string[];
  /** Per request (window only): ms from due time to the end of the answer; NaN when it failed. */
  latencyFromDue: Float64Array;
  /** Per request: ms from the actual write to the end of the answer; NaN when it failed. */
  latencyFromSend: Float64Array;
  /** Per request: ms the send started after its due time. */
  sendLag: Float64Array;
  /** Per request: HTTP status, 0 when no answer. */
  status: Uint16Array;
  /** Absolute (epoch ms) due time of each request, to line latency up with other events. */
  dueEpochMs: Float64Array;
  errors: Record<string, number>;
  /** First send to last send, ms. */
  sendSpanMs: number;
  /** Answers of the warm-up requests (their GUIDs are the first `warmup` entries of `guids`). */
  warmupStatus: number[];
  sockets: number;
  procs: ProcSample[];
}

type Json = Record<string, any>;

/** A realistic workflow_job body (GitHub's example, ~6 KB) made not-ours: an unlisted repository, or labels no set has. */
function junkPayloads(n: number, jobIdBase: number): string[] {
  const require = createRequire(import.meta.url);
  const index = require("@octokit/webhooks-examples/api.github.com/index.json") as { name: string; examples: Json[] }[];
  const examples = index.find((e) => e.name === "workflow_job")?.examples ?? [];
  const template = examples.find((e) => e.action === "queued") ?? examples[0];
  if (!template) throw new Error("@octokit/webhooks-examples has no workflow_job example");
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = structuredClone(template);
    const jobId = jobIdBase + i;
    p.action = "queued";
    p.workflow_job = { ...p.workflow_job, id: jobId, run_id: jobId, run_attempt: 1, status: "queued", conclusion: null, runner_name: null, runner_id: null };
    if (i % 2 === 0) {
      // Not in the allowlist (world: orgs [acme], repos [solo/dotfiles]); labels that would match.
      p.repository = { ...p.repository, full_name: `intruder/repo-${i % 17}`, name: `repo-${i % 17}`, owner: { ...p.repository.owner, login: "intruder", type: "Organization" } };
      p.workflow_job.labels = ["self-hosted", "linux", "x64"];
    } else {
      // An allowed repository, labels no label set has.
      p.repository = { ...p.repository, full_name: "acme/app", name: "app", owner: { ...p.repository.owner, login: "acme", type: "Organization" } };
      p.workflow_job.labels = ["self-hosted", "windows", "gpu"];
    }
    out.push(JSON.stringify(p));
  }
  return out;
}

/** Descendants of `root` by kind: terraform itself, the provider stand-in (node under terraform), anything else. */
async function sampleProcs(root: number): Promise<Omit<ProcSample, "at">> {
  const parent = new Map<number, number>();
  const comm = new Map<number, string>();
  const cmd = new Map<number, string>();
  const policy = new Map<number, number>();
  const session = new Map<number, number>();
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((d) => /^\d+$/.test(d)).map(Number);
  await Promise.all(
    pids.map(async (pid) => {
      const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
      const close = stat.lastIndexOf(")");
      if (close < 0) return;
      comm.set(pid, stat.slice(stat.indexOf("(") + 1, close));
      const rest = stat.slice(close + 2).split(" "); // rest[0] is field 3
      parent.set(pid, Number(rest[4 - 3]));
      session.set(pid, Number(rest[6 - 3]));
      policy.set(pid, Number(rest[41 - 3]));
    }),
  );
  const out = { terraform: 0, provider: 0, other: 0, heavyIdle: 0, heavyInRootSession: 0 };
  const heavy = (pid: number) => {
    if (policy.get(pid) === 5) out.heavyIdle++; // SCHED_IDLE
    if (session.get(pid) === session.get(root)) out.heavyInRootSession++;
  };
  for (const pid of pids) {
    let p = parent.get(pid);
    let underRoot = false;
    for (let hops = 0; p !== undefined && p > 1 && hops < 50; hops++, p = parent.get(p)) {
      if (p === root) {
        underRoot = true;
        break;
      }
    }
    if (!underRoot) continue;
    const c = comm.get(pid) ?? "";
    if (c === "terraform") {
      out.terraform++;
      heavy(pid);
    } else {
      if (!cmd.has(pid)) cmd.set(pid, (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).replace(/\0/g, " "));
      if (/provider/.test(cmd.get(pid)!)) {
        out.provider++;
        heavy(pid);
      } else out.other++;
    }
  }
  return out;
}

interface Prepared {
  bodies: string[];
  guids: string[];
  sigs: string[];
}

/** Bodies and signatures are made before the window: signing is GitHub's cost, not the listener's. */
async function prepare(cfg: SenderConfig): Promise<Prepared> {
  const n = Math.max(1, Math.round(cfg.rate * cfg.seconds));
  const bodies = junkPayloads(cfg.warmup + n, cfg.jobIdBase);
  const guids = bodies.map(() => randomUUID());
  const sigs = await Promise.all(bodies.map((b) => sign(cfg.secret, b)));
  return { bodies, guids, sigs };
}

async function run(cfg: SenderConfig, { bodies, guids, sigs }: Prepared): Promise<SenderResult> {
  const target = new URL(cfg.url);
  const n = bodies.length - cfg.warmup;
  // GitHub keeps no connection open between deliveries, but a local sender that opened one socket
  // per request would measure TCP set-up; keep-alive with an open-ended pool keeps it open loop.
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });
  let sockets = 0;

  const post = (i: number, onDone: (status: number, err?: string) => void): void => {
    const body = bodies[i];
    const req = request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          "user-agent": "GitHub-Hookshot/bench",
          "x-github-event": "workflow_job",
          "x-github-delivery": guids[i],
          "x-github-hook-id": "1",
          "x-hub-signature-256": sigs[i],
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => finish(res.statusCode ?? 0));
        res.on("error", (e) => finish(0, e.message));
      },
    );
    req.on("socket", (s) => {
      if (!(s as { __counted?: boolean }).__counted) {
        (s as { __counted?: boolean }).__counted = true;
        sockets++;
      }
    });
    // One deadline for the whole exchange, connect included (req.setTimeout starts only once connected).
    const deadline = setTimeout(() => req.destroy(new Error(`no answer in ${cfg.timeoutMs} ms`)), cfg.timeoutMs);
    let settled = false;
    const finish = (status: number, err?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      onDone(status, err);
    };
    req.on("error", (e) => finish(0, (e as NodeJS.ErrnoException).code ?? e.message));
    req.end(body);
  };

  const warmupStatus: number[] = [];
  for (let i = 0; i < cfg.warmup; i++) warmupStatus.push(await new Promise<number>((r) => post(i, (s) => r(s))));

  const latencyFromDue = new Float64Array(n).fill(NaN);
  const latencyFromSend = new Float64Array(n).fill(NaN);
  const sendLag = new Float64Array(n);
  const status = new Uint16Array(n);
  const dueEpochMs = new Float64Array(n);
  const errors: Record<string, number> = {};
  const procs: ProcSample[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const at = Date.now();
      procs.push({ at, ...(await sampleProcs(cfg.rootPid)) });
      await new Promise((r) => setTimeout(r, Math.max(0, 250 - (Date.now() - at))));
    }
  })();

  const interval = 1000 / cfg.rate;
  const t0 = performance.now() + 20;
  const epoch0 = performance.timeOrigin + t0;
  let next = 0;
  let finished = 0;
  let firstSend = NaN;
  let lastSend = NaN;
  await new Promise<void>((resolveAll) => {
    const fire = (k: number) => {
      const due = t0 + k * interval;
      const sent = performance.now();
      if (k === 0) firstSend = sent;
      lastSend = sent;
      sendLag[k] = sent - due;
      dueEpochMs[k] = epoch0 + k * interval;
      post(cfg.warmup + k, (st, err) => {
        const end = performance.now();
        status[k] = st;
        if (err) errors[err] = (errors[err] ?? 0) + 1;
        else {
          latencyFromDue[k] = end - due;
          latencyFromSend[k] = end - sent;
        }
        if (++finished === n) resolveAll();
      });
    };
    const pump = () => {
      const now = performance.now();
      while (next < n && t0 + next * interval <= now) fire(next++);
      if (next < n) setTimeout(pump, Math.max(0, t0 + next * interval - performance.now()));
    };
    setTimeout(pump, Math.max(0, t0 - performance.now()));
  });
  sampling = false;
  await sampler;
  agent.destroy();
  return { guids, latencyFromDue, latencyFromSend, sendLag, status, dueEpochMs, errors, sendSpanMs: lastSend - firstSend, warmupStatus, sockets, procs };
}

if (!isMainThread && parentPort && (workerData as SenderConfig | undefined)?.kind === SENDER_KIND) {
  const port = parentPort;
  const cfg = workerData as SenderConfig;
  const fail = (err: unknown) => port.postMessage({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  prepare(cfg).then((prepared) => {
    port.once("message", () => {
      run(cfg, prepared).then(
        (r) => port.postMessage({ ok: true, result: r }, [r.latencyFromDue.buffer, r.latencyFromSend.buffer, r.sendLag.buffer, r.status.buffer, r.dueEpochMs.buffer] as ArrayBuffer[]),
        fail,
      );
    });
    port.postMessage({ ready: true });
  }, fail);
}
