// Operators' view on the world: /metrics shows every phase, the admin API and CLI show and steer
// the listener (drain survives a restart), and a whole job's logs hold no secret.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { startE2E, settled, waitFor } from "./harness.js";
import { startAdmin } from "../../listener/http/admin.js";
import { Metrics } from "../../listener/metrics/metrics.js";
import type { StatusSnapshot } from "../../listener/http/status.js";

const cli = fileURLToPath(new URL("../../cli/main.js", import.meta.url));
/** Async: the admin server under test runs in this process, so a blocking spawnSync would starve it. */
const runCliEnv = (env: NodeJS.ProcessEnv, ...args: string[]) =>
  new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [cli, ...args], { encoding: "utf8", env: { PATH: process.env.PATH, ...env } }, (err, stdout, stderr) => resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });

const TOKEN = "a-long-admin-token-0123456789abcdef";

/** An admin listener in this process, with hooks that record what they were asked. */
async function startTestAdmin(o: { allowedHosts?: string[] } = {}) {
  const metrics = new Metrics({ runnersByState: () => ({}), lanes: () => ({}), queuedJobs: () => 0, githubRateLimitRemaining: () => null, draining: () => false });
  const drained: boolean[] = [];
  const swept: boolean[] = [];
  const admin = await startAdmin({
    host: "127.0.0.1", port: 0, token: TOKEN, allowedHosts: o.allowedHosts, metrics, logger: pino({ level: "silent" }),
    hooks: {
      snapshot: () => ({ counts: {}, runners: [{ name: "runner-1" }] }) as unknown as StatusSnapshot,
      setDraining: (on) => void drained.push(on),
      sweep: async (dryRun) => (swept.push(dryRun), {}),
      renderPage: (s) => `<!doctype html><p>${s.runners[0].name}</p>`,
    },
  });
  return { ...admin, drained, swept };
}

/** A request with exactly these headers (fetch would not let a test set Host or Sec-Fetch-Site). */
function raw(base: string, method: string, path: string, headers: Record<string, string>, body?: string) {
  const u = new URL(base);
  return new Promise<{ status: number; headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method, path, headers: { ...(body !== undefined ? { "content-length": String(Buffer.byteLength(body)) } : {}), ...headers }, setHost: !("host" in headers) }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** The browser's login: the session cookie the form answer sets. */
async function login(base: string, token = TOKEN): Promise<string> {
  const r = await raw(base, "POST", "/login", { "content-type": "application/x-www-form-urlencoded" }, `token=${encodeURIComponent(token)}`);
  assert.equal(r.status, 303, r.body);
  return String(r.headers["set-cookie"]).split(";")[0];
}

describe("admin API, metrics, CLI", { concurrency: 1 }, () => {
  test("the token is always required, compared whole; strict headers; no CORS", async () => {
    const admin = await startTestAdmin();
    try {
      for (const auth of [undefined, "Bearer wrong", `Bearer ${TOKEN.slice(0, -1)}`, `Basic ${TOKEN}`, `Bearer ${TOKEN} x`]) {
        const r = await raw(admin.url, "GET", "/api/status", { ...(auth ? { authorization: auth } : {}), origin: "https://evil.example" });
        assert.equal(r.status, 401, `auth ${auth}`);
      }
      const ok = await raw(admin.url, "GET", "/metrics", { authorization: `Bearer ${TOKEN}` });
      assert.equal(ok.status, 200);
      assert.match(ok.body, /pve_runners_phase_seconds/);
      for (const [h, v] of [["x-content-type-options", "nosniff"], ["x-frame-options", "DENY"], ["cache-control", "no-store"]]) assert.equal(ok.headers[h], v);
      assert.match(String(ok.headers["content-security-policy"]), /default-src 'none'/);
      assert.equal(ok.headers["access-control-allow-origin"], undefined, "no CORS");
    } finally {
      await admin.close();
    }
  });

  test("DNS rebinding: only the bind address, loopback names and admin.allowedHosts are answered (421)", async () => {
    const admin = await startTestAdmin({ allowedHosts: ["Runners-Admin.example.net"] });
    const port = new URL(admin.url).port;
    try {
      const auth = { authorization: `Bearer ${TOKEN}` };
      // An SSH forward changes the port; the name is what a rebinding page cannot fake.
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, "localhost:9000", `[::1]:${port}`, "runners-admin.example.net", `RUNNERS-ADMIN.example.net:${port}`]) {
        const r = await raw(admin.url, "GET", "/api/status", { ...auth, host });
        assert.equal(r.status, 200, `Host: ${host}`);
      }
      for (const host of ["rebind.evil.example", `rebind.evil.example:${port}`, "127.0.0.1.evil.example", "localhost.evil.example", "evil@127.0.0.1", "127.0.0.1/x", ""]) {
        for (const headers of [{ host }, { ...auth, host }]) {
          const r = await raw(admin.url, "GET", "/api/status", headers);
          assert.equal(r.status, 421, `Host: ${host}`);
          assert.doesNotMatch(r.body, /runners/, "nothing of the snapshot");
        }
      }
      assert.equal((await raw(admin.url, "POST", "/api/drain", { ...auth, host: "rebind.evil.example", "content-type": "application/json" }, "{}")).status, 421);
      assert.equal(admin.drained.length, 0);
    } finally {
      await admin.close();
    }
  });

  test("CSRF: a state-changing request needs a JSON body (415) from this origin (403), whatever it carries", async () => {
    const admin = await startTestAdmin();
    const host = new URL(admin.url).host;
    try {
      const cookie = await login(admin.url);
      const json = { "content-type": "application/json" };
      const auths: Record<string, string>[] = [{ authorization: `Bearer ${TOKEN}` }, { cookie }];
      for (const [i, auth] of auths.entries()) {
        // A <form enctype="text/plain"> or a no-cors fetch: no preflight, so the body type is the line.
        for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", undefined]) {
          const r = await raw(admin.url, "POST", "/api/drain", { ...auth, ...(type ? { "content-type": type } : {}) }, "{}");
          assert.equal(r.status, 415, `${type} with ${Object.keys(auth)[0]}`);
        }
        const froms: Record<string, string>[] = [
          { origin: "https://evil.example", "sec-fetch-site": "cross-site" },
          { origin: "https://evil.example" },
          { origin: "null" },
          // Another port on the same host is the same site: SameSite=Strict still sends the cookie.
          { origin: "http://127.0.0.1:3000", "sec-fetch-site": "same-site" },
          { origin: "http://127.0.0.1:3000" },
          { "sec-fetch-site": "same-site" },
          { "sec-fetch-site": "cross-site" },
        ];
        for (const from of froms) {
          for (const type of ["text/plain", "application/json"]) {
            const r = await raw(admin.url, "POST", "/api/drain", { ...auth, ...from, "content-type": type }, "{}");
            assert.equal(r.status, 403, `${JSON.stringify(from)} ${type}`);
          }
        }
        assert.equal(admin.drained.length, i, "no attack drained it");
        const same = await raw(admin.url, "POST", "/api/drain", { ...auth, ...json, origin: `http://${host}`, "sec-fetch-site": "same-origin" }, "{}");
        assert.equal(same.status, 200, same.body);
      }
      const cli = await raw(admin.url, "POST", "/api/resume", { authorization: `Bearer ${TOKEN}`, ...json }, "{}");
      assert.equal(cli.status, 200, "the CLI's request: bearer, JSON, no Origin");
      assert.deepEqual(admin.drained, [true, true, false]);
      assert.equal((await raw(admin.url, "POST", "/api/sweep", { authorization: `Bearer ${TOKEN}`, ...json }, '{"dryRun":true}')).status, 200);
      assert.equal((await raw(admin.url, "POST", "/api/sweep?dryRun=1", { authorization: `Bearer ${TOKEN}`, ...json }, "{}")).status, 200);
      assert.equal((await raw(admin.url, "POST", "/api/sweep", { authorization: `Bearer ${TOKEN}`, ...json }, "{}")).status, 200);
      assert.deepEqual(admin.swept, [true, true, false]);
      const bad = await raw(admin.url, "POST", "/api/drain", { authorization: `Bearer ${TOKEN}`, ...json }, "{not json");
      assert.equal(bad.status, 400);
      assert.match(bad.headers["content-type"] ?? "", /application\/json/, "one JSON line, not an HTML error page");
      assert.doesNotMatch(bad.body, /not json/, "the body is not echoed");
    } finally {
      await admin.close();
    }
  });

  test("browsers log in with the token in a form body: an HttpOnly SameSite=Strict session cookie, not the token", async () => {
    const admin = await startTestAdmin();
    try {
      const page = await raw(admin.url, "GET", "/", {});
      assert.equal(page.status, 401);
      assert.match(page.headers["content-type"] ?? "", /text\/html/);
      assert.match(page.body, /<form method="post" action="\/login">/);
      assert.match(String(page.headers["content-security-policy"]), /form-action 'self'/);
      assert.doesNotMatch(page.body, /runner-1/, "no status without the token");
      const form = { "content-type": "application/x-www-form-urlencoded" };
      const wrong = await raw(admin.url, "POST", "/login", form, "token=wrong-token-0123456789abcdef");
      assert.equal(wrong.status, 401);
      assert.equal(wrong.headers["set-cookie"], undefined);
      assert.equal((await raw(admin.url, "POST", "/login", { ...form, origin: "https://evil.example" }, `token=${TOKEN}`)).status, 403, "no cross-site login");
      const ok = await raw(admin.url, "POST", "/login", form, `token=${encodeURIComponent(TOKEN)}`);
      assert.equal(ok.status, 303);
      assert.equal(ok.headers.location, "/");
      const set = String(ok.headers["set-cookie"]);
      assert.match(set, /^pve_runners_admin=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict$/);
      assert.ok(!set.includes(TOKEN), "the cookie is not the token");
      const cookie = set.split(";")[0];
      const status = await raw(admin.url, "GET", "/", { cookie });
      assert.equal(status.status, 200);
      assert.match(status.body, /runner-1/);
      assert.equal((await raw(admin.url, "GET", "/api/status", { cookie: `${cookie.slice(0, -1)}A` })).status, 401, "a forged cookie");
    } finally {
      await admin.close();
    }
  });

  test("a job's life in /metrics and the admin API; drain holds across a restart; the CLI shows it", async () => {
    const e = await startE2E();
    try {
      const admin = () => e.service.adminUrl!;
      const token = e.world.secrets.adminToken!;
      const tokenFile = join(e.world.dir, "credentials", "admin-token");
      const auth = { headers: { authorization: `Bearer ${token}` } };
      // The CLI finds the token through the config (${CREDENTIALS_DIRECTORY}/admin-token by default).
      const runCli = (...args: string[]) => runCliEnv({ CREDENTIALS_DIRECTORY: join(e.world.dir, "credentials") }, ...args);

      // The attacks of issue 14, against the real service on loopback: each answered 200 on main.
      assert.equal((await fetch(admin() + "/api/status")).status, 401, "no token, loopback");
      assert.equal((await fetch(admin() + "/api/drain", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).status, 401, "no token, loopback");
      const u = new URL(admin());
      const csrf = await raw(admin(), "POST", "/api/drain", { "content-type": "text/plain", origin: "https://evil.example", "sec-fetch-site": "cross-site" }, "x");
      assert.equal(csrf.status, 403, "a cross-site text/plain drain");
      const rebind = await raw(admin(), "GET", "/api/status", { host: `rebind.evil.example:${u.port}` });
      assert.equal(rebind.status, 421, "a rebinding Host");
      assert.equal(e.service.pipeline.isDraining(), false);

      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1000 });
      await settled(e, [job.id]);
      const m = await (await fetch(admin() + "/metrics", auth)).text();
      for (const phase of ["lane_wait", "apply", "start", "jit_delivery", "boot", "queued_to_started", "job_run", "destroy", "runner_lifetime"])
        assert.match(m, new RegExp(`pve_runners_phase_seconds_count\\{phase="${phase}"\\} [1-9]`), `phase ${phase} observed`);
      assert.match(m, /pve_runners_terraform_seconds_count\{command="apply",result="ok"\} 1/);
      assert.match(m, /pve_runners_job_events_total\{action="queued",outcome="ours"\} 1/);
      assert.match(m, /pve_runners_webhook_deliveries_total\{result="accepted"\} [3-9]/);
      assert.match(m, /pve_runners_runners\{state="gone"\} 1/);
      assert.match(m, /pve_runners_github_ratelimit_remaining \d+/);

      const s = (await (await fetch(admin() + "/api/status", auth)).json()) as StatusSnapshot;
      assert.equal(s.counts.liveRunners, 0);
      assert.equal(s.jobs[0].jobId, job.id);
      assert.equal(s.runners[0].state, "gone");

      const page = await fetch(admin() + "/", auth);
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
      // Or from --token-file, or PVE_RUNNERS_ADMIN_TOKEN_FILE; without any it says where it looked.
      const runners = await runCliEnv({}, "runners", "--config", e.world.configFile, "--url", admin(), "--token-file", tokenFile);
      assert.equal(runners.status, 0, runners.stderr);
      assert.match(runners.stdout, /^RUNNER\s+SET\s+STATE/);
      const jobs = await runCliEnv({ PVE_RUNNERS_ADMIN_TOKEN_FILE: tokenFile }, "jobs", "--config", e.world.configFile, "--url", admin(), "--json");
      assert.equal((JSON.parse(jobs.stdout) as Array<{ jobId: number }>)[0].jobId, job.id);

      const none = await runCliEnv({}, "status", "--config", e.world.configFile, "--url", admin());
      assert.equal(none.status, 2);
      assert.match(none.stderr, /^pve-runners: cannot read the admin token \/etc\/pve-runners\/credentials\/admin-token \(ENOENT\): run as root, or point --token-file or PVE_RUNNERS_ADMIN_TOKEN_FILE at a copy you can read\n$/);
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
