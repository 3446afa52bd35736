// Benchmarks print figures, never pass/fail. Each figure is a ratio measured in this one run:
// ours against an ideal or a baseline on the same machine, so numbers travel between machines.
//
//   npm run bench
import { performance } from "node:perf_hooks";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import express from "express";
import type { AddressInfo } from "node:net";
import { sign } from "@octokit/webhooks-methods";
import { pino } from "pino";
import { synthRunnerStack, type RunnerStackSpec } from "../stacks/runner-stack.js";
import { Store } from "../listener/store.js";
import { webhookRouter } from "../listener/webhook.js";

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
const fmt = (ms: number) => `${ms.toFixed(3)} ms`;

async function benchSynth(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "bench-synth-"));
  const spec: RunnerStackSpec = { runnerName: "runner-bench", labelSet: "s", endpoint: "https://pve:8006/", node: "pve", templateVmid: 9000, pool: "ci", bridge: "vmbr1", vlan: 30, linkedClone: true, cores: 2, memoryMb: 2048, swapMb: 512 };
  const n = 300;
  synthRunnerStack(join(dir, "warm"), spec);
  const heap0 = process.memoryUsage().heapUsed;
  const ours: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    synthRunnerStack(join(dir, `s${i}`), { ...spec, runnerName: `runner-b${i}` });
    ours.push(performance.now() - t);
  }
  const heap1 = process.memoryUsage().heapUsed;
  // Ideal: write the same JSON straight to disk, no CDK involved.
  const json = JSON.stringify({ resource: { x: spec } }, null, 2);
  const ideal: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    mkdirSync(join(dir, `i${i}`, "stacks", "runner"), { recursive: true });
    writeFileSync(join(dir, `i${i}`, "stacks", "runner", "cdk.tf.json"), json);
    ideal.push(performance.now() - t);
  }
  rmSync(dir, { recursive: true, force: true });
  console.log(`runner stack synth (n=${n}): p50 ${fmt(pct(ours, 50))}, p95 ${fmt(pct(ours, 95))}; plain JSON write p50 ${fmt(pct(ideal, 50))}; ratio ours/ideal p50 ${(pct(ours, 50) / pct(ideal, 50)).toFixed(1)}x; heap growth ${((heap1 - heap0) / n / 1024).toFixed(1)} KiB/synth`);
}

async function benchWebhookAck(): Promise<void> {
  const secret = "bench-secret";
  const store = new Store(join(mkdtempSync(join(tmpdir(), "bench-db-")), "db.sqlite"));
  const app = express();
  app.use(webhookRouter("/hook", { secret, bodyLimitBytes: 1 << 20, store, logger: pino({ level: "silent" }), onDelivery: () => {} }));
  app.post("/baseline", express.raw({ type: () => true }), (_req, res) => void res.status(202).json({ ok: true }));
  const server = app.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const n = 300;
  const run = async (path: string) => {
    const xs: number[] = [];
    for (let i = 0; i < n; i++) {
      const body = JSON.stringify({ action: "queued", workflow_job: { id: i + 1, run_id: 1, run_attempt: 1, status: "queued", labels: ["self-hosted"] }, repository: { full_name: "acme/app", owner: { login: "acme" } } });
      const headers = { "content-type": "application/json", "x-github-event": "workflow_job", "x-github-delivery": `00000000-0000-0000-0000-${String(i).padStart(12, "0")}${path.length}`, "x-hub-signature-256": await sign(secret, body) };
      const t = performance.now();
      const res = await fetch(base + path, { method: "POST", body, headers });
      await res.arrayBuffer();
      xs.push(performance.now() - t);
    }
    return xs;
  };
  await run("/baseline");
  const baseline = await run("/baseline");
  const ours = await run("/hook");
  server.close();
  store.close();
  console.log(`webhook ack (n=${n}, verify + durable insert, synchronous=FULL): p50 ${fmt(pct(ours, 50))}, p99 ${fmt(pct(ours, 99))}; bare express 202 p50 ${fmt(pct(baseline, 50))}; ratio p50 ${(pct(ours, 50) / pct(baseline, 50)).toFixed(1)}x (GitHub allows 10 000 ms)`);
}

await benchSynth();
await benchWebhookAck();
