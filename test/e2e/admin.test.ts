// Operators' view on the world: /metrics shows every phase, the admin API and CLI show and steer
// the listener (drain survives a restart), and a whole job's logs hold no secret.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { startE2E, settled, waitFor } from "./harness.js";
import { startAdmin } from "../../listener/admin.js";
import { Metrics } from "../../listener/metrics.js";
import type { StatusSnapshot } from "../../listener/status.js";

const cli = fileURLToPath(new URL("../../cli/main.js", import.meta.url));
/** Async: the admin server under test runs in this process, so a blocking spawnSync would starve it. */
const runCli = (...args: string[]) =>
  new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [cli, ...args], { encoding: "utf8" }, (err, stdout, stderr) => resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });

describe("admin API, metrics, CLI", { concurrency: 1 }, () => {
  test("a token is required when configured, compared whole; strict headers; no CORS", async () => {
    const metrics = new Metrics({ runnersByState: () => ({}), lanes: () => ({}), queuedJobs: () => 0, githubRateLimitRemaining: () => null, draining: () => false });
    const admin = await startAdmin({
      host: "127.0.0.1", port: 0, token: "a-long-admin-token-0123456789abcdef", metrics, logger: pino({ level: "silent" }),
      hooks: { snapshot: () => ({ counts: {} }) as unknown as StatusSnapshot, setDraining: () => {}, sweep: async () => ({}) },
    });
    try {
      const get = (path: string, auth?: string) => fetch(admin.url + path, { headers: { ...(auth ? { authorization: auth } : {}), origin: "https://evil.example" } });
      for (const auth of [undefined, "Bearer wrong", "Bearer a-long-admin-token-0123456789abcde", "Basic a-long-admin-token-0123456789abcdef"]) {
        const r = await get("/api/status", auth);
        assert.equal(r.status, 401, `auth ${auth}`);
      }
      const ok = await get("/metrics", "Bearer a-long-admin-token-0123456789abcdef");
      assert.equal(ok.status, 200);
      assert.match(await ok.text(), /pve_runners_phase_seconds/);
      for (const [h, v] of [["x-content-type-options", "nosniff"], ["x-frame-options", "DENY"], ["cache-control", "no-store"]]) assert.equal(ok.headers.get(h), v);
      assert.match(ok.headers.get("content-security-policy") ?? "", /default-src 'none'/);
      assert.equal(ok.headers.get("access-control-allow-origin"), null, "no CORS");
    } finally {
      await admin.close();
    }
  });

  test("a job's life in /metrics and the admin API; drain holds across a restart; the CLI shows it", async () => {
    const e = await startE2E();
    try {
      const admin = () => e.service.adminUrl!;
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1000 });
      await settled(e, [job.id]);
      const m = await (await fetch(admin() + "/metrics")).text();
      for (const phase of ["lane_wait", "apply", "start", "jit_delivery", "boot", "queued_to_started", "job_run", "destroy", "runner_lifetime"])
        assert.match(m, new RegExp(`pve_runners_phase_seconds_count\\{phase="${phase}"\\} [1-9]`), `phase ${phase} observed`);
      assert.match(m, /pve_runners_terraform_seconds_count\{command="apply",result="ok"\} 1/);
      assert.match(m, /pve_runners_job_events_total\{action="queued",outcome="ours"\} 1/);
      assert.match(m, /pve_runners_webhook_deliveries_total\{result="accepted"\} [3-9]/);
      assert.match(m, /pve_runners_runners\{state="gone"\} 1/);
      assert.match(m, /pve_runners_github_ratelimit_remaining \d+/);

      const s = (await (await fetch(admin() + "/api/status")).json()) as StatusSnapshot;
      assert.equal(s.counts.liveRunners, 0);
      assert.equal(s.jobs[0].jobId, job.id);
      assert.equal(s.runners[0].state, "gone");

      const page = await fetch(admin() + "/");
      assert.match(page.headers.get("content-type") ?? "", /text\/html/);
      const html = await page.text();
      assert.ok(html.includes(s.runners[0].name), "the status page lists the runner");
      assert.ok(html.includes(`/acme/app/actions/runs/${s.jobs[0].runId}/job/${job.id}`), "with a link to the job on GitHub");

      // The CLI, against the running listener.
      const status = await runCli("status", "--config", e.world.configFile, "--url", admin());
      assert.equal(status.status, 0, status.stderr);
      assert.match(status.stdout, /^pve-runners \d+\.\d+\.\d+, up /);
      assert.match(status.stdout, /live runners: 0/);
      assert.match(status.stdout, new RegExp(`${s.runners[0].name}\\s+linux-small\\s+gone`));
      const runners = await runCli("runners", "--config", e.world.configFile, "--url", admin());
      assert.match(runners.stdout, /^RUNNER\s+SET\s+STATE/);
      const jobs = await runCli("jobs", "--config", e.world.configFile, "--url", admin(), "--json");
      assert.equal((JSON.parse(jobs.stdout) as Array<{ jobId: number }>)[0].jobId, job.id);

      const drain = await runCli("drain", "--config", e.world.configFile, "--url", admin());
      assert.equal(drain.status, 0, drain.stderr);
      await e.restart();
      assert.equal(e.service.pipeline.isDraining(), true, "draining survives a restart");
      const held = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 500 });
      await e.world.github.settle();
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(e.service.store.runners(["requested", "provisioning", "booting"]).length, 0, "no runner while draining");
      const resume = await runCli("resume", "--config", e.world.configFile, "--url", e.service.adminUrl!);
      assert.equal(resume.status, 0, resume.stderr);
      await settled(e, [held.id]);
      assert.equal(e.world.github.jobs().find((j) => j.id === held.id)?.conclusion, "success");
    } finally {
      await e.stop();
    }
  });

  test("no secret in the logs of a whole job, its stack dir, terraform state or the SQLite store", async () => {
    const lines: string[] = [];
    const e = await startE2E({ logger: pino({ level: "trace" }, { write: (l: string) => void lines.push(l) }) });
    try {
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 60_000 });
      await waitFor("runner busy", () => e.service.store.runners(["busy"])[0], 60_000, 20);
      // Stack dir and state while the runner lives.
      const files: string[] = [];
      const walk = (d: string) => {
        for (const n of readdirSync(d)) {
          const p = join(d, n);
          if (statSync(p).isDirectory()) {
            if (n !== ".terraform") walk(p);
          } else files.push(p);
        }
      };
      walk(join(e.world.config.stateDir, "runners"));
      const stackText = files.map((f) => readFileSync(f, "latin1")).join("\n");
      await settled(e, [job.id]);
      const sqlite = ["pve-runners.sqlite", "pve-runners.sqlite-wal"].map((f) => join(e.world.config.stateDir, f)).filter(existsSync).map((f) => readFileSync(f, "latin1")).join("\n");
      const logs = lines.join("");
      assert.ok(logs.includes("JIT runner config minted"), "the logs cover the whole life");
      const pveSecret = e.world.secrets.pveApiToken.split("=")[1];
      const keyLine = e.world.secrets.githubAppPrivateKey.split("\n")[1];
      for (const [where, text] of [["logs", logs], ["stack dir and state", stackText], ["SQLite", sqlite]] as const) {
        assert.ok(!text.includes(pveSecret), `PVE token secret in ${where}`);
        assert.ok(!text.includes(e.world.secrets.webhookSecret), `webhook secret in ${where}`);
        assert.ok(!text.includes(keyLine), `App private key in ${where}`);
        assert.doesNotMatch(text, /ghs_[A-Za-z0-9]{20,}/, `installation token in ${where}`);
        // A JIT config is a long base64 blob; nothing of that shape belongs in any of these.
        assert.doesNotMatch(text, /[A-Za-z0-9+/]{400,}={0,2}/, `a JIT-config-like blob in ${where}`);
      }
    } finally {
      await e.stop();
    }
  });
});
