// The fake GitHub's REST API as the real listener will use it: @octokit/rest + @octokit/auth-app
// pointed at the sim, unmodified.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createAppAuth } from "@octokit/auth-app";
import { Octokit } from "@octokit/rest";
import { SignJWT, importPKCS8 } from "jose";
import { createPrivateKey } from "node:crypto";
import { GitHubSim } from "../../sim/github/index.js";
import { decodeJitConfig } from "../../sim/github/jit.js";
import { RunnerSession } from "../../sim/github/runner-client.js";

const LABELS = ["self-hosted", "linux", "x64"];
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

function installationClient(sim: GitHubSim, installationId: number): Octokit {
  return new Octokit({ log: quiet, baseUrl: sim.url, authStrategy: createAppAuth, auth: { appId: sim.appId, privateKey: sim.appPrivateKeyPem, installationId } });
}

function appClient(sim: GitHubSim): Octokit {
  return new Octokit({ log: quiet, baseUrl: sim.url, authStrategy: createAppAuth, auth: { appId: sim.appId, privateKey: sim.appPrivateKeyPem } });
}

async function status(p: Promise<unknown>): Promise<{ status: number; message: string; headers: Record<string, string> }> {
  try {
    await p;
    return { status: 200, message: "", headers: {} };
  } catch (err) {
    const e = err as { status: number; response?: { data?: { message?: string }; headers: Record<string, string> } };
    return { status: e.status, message: e.response?.data?.message ?? "", headers: e.response?.headers ?? {} };
  }
}

async function signJwt(sim: GitHubSim, claims: { iat: number; exp: number; iss: string | number }, pem = sim.appPrivateKeyPem): Promise<string> {
  const pkcs8 = createPrivateKey(pem).export({ type: "pkcs8", format: "pem" }) as string;
  return new SignJWT({}).setProtectedHeader({ alg: "RS256" }).setIssuedAt(claims.iat).setExpirationTime(claims.exp).setIssuer(String(claims.iss)).sign(await importPKCS8(pkcs8, "RS256"));
}

describe("fake GitHub REST", () => {
  const sim = new GitHubSim({ timeScale: 0.01 });
  let acme: Octokit;
  let app: Octokit;
  before(async () => {
    await sim.start(0, "127.0.0.1");
    acme = installationClient(sim, 4242);
    app = appClient(sim);
  });
  after(() => sim.stop());

  test("App JWT: GET /app, installations, installation lookups", async () => {
    const me = await app.rest.apps.getAuthenticated();
    assert.equal(me.data?.id, sim.appId);
    const list = await app.rest.apps.listInstallations();
    assert.deepEqual(list.data.map((i) => i.id).sort(), [4242, 4343]);
    assert.equal((await app.rest.apps.getRepoInstallation({ owner: "acme", repo: "app" })).data.id, 4242);
    assert.equal((await app.rest.apps.getOrgInstallation({ org: "ACME" })).data.id, 4242);
    assert.equal((await app.rest.apps.getUserInstallation({ username: "solo" })).data.id, 4343);
    assert.equal((await status(app.rest.apps.getRepoInstallation({ owner: "acme", repo: "nope" }))).status, 404);
    assert.equal((await status(app.rest.apps.getOrgInstallation({ org: "solo" }))).status, 404, "a user account is not an org");
  });

  test("installation token: 201 with expiry in an hour, permissions", async () => {
    const res = await app.rest.apps.createInstallationAccessToken({ installation_id: 4242 });
    assert.equal(res.status, 201);
    assert.match(res.data.token, /^ghs_[A-Za-z0-9]{36}$/);
    const ttl = Date.parse(res.data.expires_at) - Date.now();
    assert.ok(ttl > 59 * 60_000 && ttl <= 3600_000, `ttl ${ttl}`);
    assert.equal(res.data.permissions?.organization_self_hosted_runners, "write");
    assert.equal(res.data.permissions?.administration, "write");
  });

  test("bad JWTs get 401 with GitHub's messages", async () => {
    const now = Math.floor(Date.now() / 1000);
    const call = (jwt: string) => status(new Octokit({ log: quiet, baseUrl: sim.url, auth: jwt }).request("GET /app", { headers: { authorization: `Bearer ${jwt}` } }));
    const other = createPrivateKey({ key: (await import("node:crypto")).generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }) as string });
    const badSig = await call(await signJwt(sim, { iat: now - 30, exp: now + 500, iss: sim.appId }, other.export({ type: "pkcs8", format: "pem" }) as string));
    assert.deepEqual([badSig.status, badSig.message], [401, "A JSON web token could not be decoded"]);
    const expired = await call(await signJwt(sim, { iat: now - 900, exp: now - 300, iss: sim.appId }));
    assert.equal(expired.status, 401);
    assert.match(expired.message, /'Expiration time' claim \('exp'\) must be a numeric value/);
    const tooLong = await call(await signJwt(sim, { iat: now - 30, exp: now + 3600, iss: String(sim.appId) }));
    assert.deepEqual([tooLong.status, tooLong.message], [401, "'Expiration time' claim ('exp') is too far in the future"]);
    const wrongIss = await call(await signJwt(sim, { iat: now - 30, exp: now + 500, iss: 999 }));
    assert.equal(wrongIss.status, 401);
    const ok = await call(await signJwt(sim, { iat: now - 30, exp: now + 500, iss: String(sim.appId) }));
    assert.equal(ok.status, 200, "iss may be a string");
    assert.equal((await call("not.a.jwt")).status, 401);
  });

  test("no auth → 401 Requires authentication; unknown token → Bad credentials; unknown route → 404", async () => {
    const anon = await fetch(`${sim.url}/repos/acme/app/actions/runners`);
    assert.equal(anon.status, 401);
    assert.equal(((await anon.json()) as { message: string }).message, "Requires authentication");
    const bad = await fetch(`${sim.url}/repos/acme/app/actions/runners`, { headers: { authorization: "token ghs_nope" } });
    assert.equal(bad.status, 401);
    assert.equal(((await bad.json()) as { message: string }).message, "Bad credentials");
    const { data } = await app.rest.apps.createInstallationAccessToken({ installation_id: 4242 });
    const missing = await fetch(`${sim.url}/no/such/route`, { headers: { authorization: `token ${data.token}` } });
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { message: string }).message, "Not Found");
  });

  test("an installation's token cannot reach another installation's repo (404) or org (403)", async () => {
    const solo = installationClient(sim, 4343);
    assert.equal((await status(solo.rest.actions.listSelfHostedRunnersForRepo({ owner: "acme", repo: "app" }))).status, 404);
    assert.equal((await status(solo.rest.actions.listSelfHostedRunnersForOrg({ org: "acme" }))).status, 403);
    assert.equal((await status(acme.rest.actions.listSelfHostedRunnersForRepo({ owner: "solo", repo: "dotfiles" }))).status, 404);
    assert.equal((await solo.rest.actions.listSelfHostedRunnersForRepo({ owner: "solo", repo: "dotfiles" })).status, 200);
  });

  test("expired installation token → 401 Bad credentials", async () => {
    const { data } = await app.rest.apps.createInstallationAccessToken({ installation_id: 4343 });
    const url = `${sim.url}/repos/solo/dotfiles/actions/runners`;
    assert.equal((await fetch(url, { headers: { authorization: `Bearer ${data.token}` } })).status, 200, "Bearer ghs_ works too");
    sim.expireTokens(4343);
    const res = await fetch(url, { headers: { authorization: `token ${data.token}` } });
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { message: string }).message, "Bad credentials");
  });

  test("generate-jitconfig: 201 shape, decodable config pointing at the sim", async () => {
    const res = await acme.rest.actions.generateRunnerJitconfigForRepo({ owner: "acme", repo: "app", name: "runner-shape", runner_group_id: 1, labels: LABELS });
    assert.equal(res.status, 201);
    const r = res.data.runner;
    assert.equal(r.name, "runner-shape");
    assert.equal(r.os, "unknown");
    assert.equal(r.status, "offline");
    assert.equal(r.busy, false);
    assert.deepEqual(r.labels.map((l) => [l.name, l.type]), [
      ["self-hosted", "read-only"],
      ["linux", "read-only"],
      ["x64", "read-only"],
    ]);
    const cfg = decodeJitConfig(res.data.encoded_jit_config);
    assert.equal(cfg.runner.agentId, r.id);
    assert.equal(cfg.runner.serverUrl, sim.url);
    assert.ok(cfg.credentials.data.token.length >= 32);
  });

  test("generate-jitconfig: 409 duplicate with the real message, 422 on 0 or 101 labels or bad group", async () => {
    const args = { owner: "acme", repo: "app", name: "runner-dup", runner_group_id: 1, labels: LABELS };
    await acme.rest.actions.generateRunnerJitconfigForRepo(args);
    const dup = await status(acme.rest.actions.generateRunnerJitconfigForRepo(args));
    assert.deepEqual([dup.status, dup.message], [409, "Already exists - A runner with the name runner-dup already exists."]);
    // Same name in another scope (the org) is fine.
    assert.equal((await acme.rest.actions.generateRunnerJitconfigForOrg({ org: "acme", name: "runner-dup", runner_group_id: 2, labels: LABELS })).status, 201);
    const none = await status(acme.rest.actions.generateRunnerJitconfigForRepo({ ...args, name: "r0", labels: [] }));
    assert.deepEqual([none.status, none.message], [422, "Validation Failed"]);
    const many = Array.from({ length: 101 }, (_, i) => `l${i}`);
    assert.equal((await status(acme.rest.actions.generateRunnerJitconfigForRepo({ ...args, name: "r101", labels: many }))).status, 422);
    assert.equal((await acme.rest.actions.generateRunnerJitconfigForRepo({ ...args, name: "r100", labels: many.slice(0, 100) })).status, 201);
    assert.equal((await status(acme.rest.actions.generateRunnerJitconfigForRepo({ ...args, name: "rg", runner_group_id: 2 }))).status, 422, "repo runners live in group 1");
    assert.equal((await status(acme.rest.actions.generateRunnerJitconfigForOrg({ org: "acme", name: "rg", runner_group_id: 7, labels: LABELS }))).status, 422);
    const noGroup = await status(acme.request("POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig", { owner: "acme", repo: "app", name: "ng", labels: LABELS } as never));
    assert.equal(noGroup.status, 422, "runner_group_id is required");
  });

  test("runner groups of an org", async () => {
    const res = await acme.request("GET /orgs/{org}/actions/runner-groups", { org: "acme" });
    const groups = (res.data as { runner_groups: { id: number; name: string; default: boolean }[] }).runner_groups;
    assert.deepEqual(groups.map((g) => [g.id, g.name, g.default]), [
      [1, "Default", true],
      [2, "ci", false],
    ]);
  });

  test("list runners: name filter, Link paging, paginate gets them all", async () => {
    for (let i = 0; i < 7; i++) {
      await acme.rest.actions.generateRunnerJitconfigForRepo({ owner: "acme", repo: "infra", name: `page-${i}`, runner_group_id: 1, labels: LABELS });
    }
    const first = await acme.rest.actions.listSelfHostedRunnersForRepo({ owner: "acme", repo: "infra", per_page: 3 });
    assert.equal(first.data.total_count, 7);
    assert.equal(first.data.runners.length, 3);
    assert.match(first.headers.link ?? "", /page=2>; rel="next"/);
    assert.match(first.headers.link ?? "", /page=3>; rel="last"/);
    const all = await acme.paginate(acme.rest.actions.listSelfHostedRunnersForRepo, { owner: "acme", repo: "infra", per_page: 2 });
    assert.deepEqual(all.map((r) => r.name).sort(), Array.from({ length: 7 }, (_, i) => `page-${i}`));
    assert.ok(all.every((r) => r.ephemeral === true && r.status === "offline"));
    const named = await acme.rest.actions.listSelfHostedRunnersForRepo({ owner: "acme", repo: "infra", name: "page-4" });
    assert.deepEqual([named.data.total_count, named.data.runners[0]?.name], [1, "page-4"]);
  });

  test("delete: 204, 404 afterwards; 422 while busy; 404 once auto-removed after its job", async () => {
    const idle = await acme.rest.actions.generateRunnerJitconfigForRepo({ owner: "acme", repo: "app", name: "del-idle", runner_group_id: 1, labels: ["self-hosted", "del"] });
    const id = idle.data.runner.id;
    assert.equal((await acme.rest.actions.deleteSelfHostedRunnerFromRepo({ owner: "acme", repo: "app", runner_id: id })).status, 204);
    assert.equal((await status(acme.rest.actions.getSelfHostedRunnerForRepo({ owner: "acme", repo: "app", runner_id: id }))).status, 404);
    assert.equal((await status(acme.rest.actions.deleteSelfHostedRunnerFromRepo({ owner: "acme", repo: "app", runner_id: id }))).status, 404);
    await assert.rejects(RunnerSession.connect(idle.data.encoded_jit_config), (e: { status: number }) => e.status === 410);

    const busy = await acme.rest.actions.generateRunnerJitconfigForRepo({ owner: "acme", repo: "app", name: "del-busy", runner_group_id: 1, labels: ["self-hosted", "del"] });
    const session = await RunnerSession.connect(busy.data.encoded_jit_config);
    const job = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "del"], durationMs: 30_000 }); // 300 ms at this scale
    const s = await session.state(5_000, "idle");
    assert.deepEqual(s, { state: "busy", job_id: job.id });
    const busyRunner = await acme.rest.actions.getSelfHostedRunnerForRepo({ owner: "acme", repo: "app", runner_id: busy.data.runner.id });
    assert.deepEqual([busyRunner.data.status, busyRunner.data.busy], ["online", true]);
    const refused = await status(acme.rest.actions.deleteSelfHostedRunnerFromRepo({ owner: "acme", repo: "app", runner_id: busy.data.runner.id }));
    assert.equal(refused.status, 422);
    assert.match(refused.message, /Runner "del-busy" is still running a job/);
    assert.equal((await session.untilFinished(5_000)).state, "done");
    assert.equal((await status(acme.rest.actions.getSelfHostedRunnerForRepo({ owner: "acme", repo: "app", runner_id: busy.data.runner.id }))).status, 404);
  });

  test("jobs and runs endpoints", async () => {
    const job = await sim.createJob({ repo: "acme/infra", labels: ["self-hosted", "nobody-has-this"], workflowName: "Deploy" });
    const j = await acme.rest.actions.getJobForWorkflowRun({ owner: "acme", repo: "infra", job_id: job.id });
    assert.equal(j.data.status, "queued");
    assert.equal(j.data.runner_id, null);
    assert.equal(j.data.runner_name, null);
    assert.deepEqual(j.data.labels, ["self-hosted", "nobody-has-this"]);
    assert.equal(j.data.workflow_name, "Deploy");
    const runs = await acme.rest.actions.listWorkflowRunsForRepo({ owner: "acme", repo: "infra", status: "queued" });
    assert.ok(runs.data.workflow_runs.some((r) => r.id === job.runId));
    const jobs = await acme.rest.actions.listJobsForWorkflowRun({ owner: "acme", repo: "infra", run_id: job.runId });
    assert.deepEqual(jobs.data.jobs.map((x) => x.id), [job.id]);
    assert.equal((await status(acme.rest.actions.getJobForWorkflowRun({ owner: "acme", repo: "app", job_id: job.id }))).status, 404, "job of another repo");
    sim.cancelJob(job.id);
    const cancelled = await acme.rest.actions.getJobForWorkflowRun({ owner: "acme", repo: "infra", job_id: job.id });
    assert.deepEqual([cancelled.data.status, cancelled.data.conclusion], ["completed", "cancelled"]);
  });

  test("every response carries rate-limit headers and a request id; the budget runs out with 403", async () => {
    const res = await acme.rest.actions.listSelfHostedRunnersForOrg({ org: "acme" });
    for (const h of ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-used", "x-ratelimit-reset", "x-ratelimit-resource", "x-github-request-id"]) {
      assert.ok(res.headers[h], `missing ${h}`);
    }
    assert.match(String(res.headers["content-type"]), /^application\/json; charset=utf-8$/);
    const before = Number(res.headers["x-ratelimit-remaining"]);
    const again = await acme.rest.actions.listSelfHostedRunnersForOrg({ org: "acme" });
    assert.equal(Number(again.headers["x-ratelimit-remaining"]), before - 1);

    const small = new GitHubSim({ rateLimit: 3, appPrivateKeyPem: sim.appPrivateKeyPem });
    await small.start(0, "127.0.0.1");
    try {
      const gh = installationClient(small, 4343);
      for (let i = 0; i < 3; i++) await gh.rest.actions.listSelfHostedRunnersForRepo({ owner: "solo", repo: "dotfiles" });
      const over = await status(gh.rest.actions.listSelfHostedRunnersForRepo({ owner: "solo", repo: "dotfiles" }));
      assert.equal(over.status, 403);
      assert.equal(over.headers["x-ratelimit-remaining"], "0");
      assert.match(over.message, /API rate limit exceeded/);
    } finally {
      await small.stop();
    }
  });

  test("fault injection: next-N switch, 429 and secondary-limit 403 carry retry-after", async () => {
    const { data } = await app.rest.apps.createInstallationAccessToken({ installation_id: 4242 });
    const get = () => fetch(`${sim.url}/orgs/acme/actions/runners`, { headers: { authorization: `token ${data.token}` } });
    await fetch(`${sim.url}/_sim/faults`, { method: "POST", body: JSON.stringify({ next: { count: 2, status: 429 }, retryAfterSeconds: 3 }) });
    for (let i = 0; i < 2; i++) {
      const r = await get();
      assert.equal(r.status, 429);
      assert.ok(Number(r.headers.get("retry-after")) >= 1);
      assert.ok(r.headers.get("x-ratelimit-limit"));
      assert.match(((await r.json()) as { message: string }).message, /secondary rate limit/);
    }
    assert.equal((await get()).status, 200, "the switch is spent");
    sim.setFaults({ rate: 1, statuses: [403], paths: "^/orgs/" });
    const r403 = await get();
    assert.equal(r403.status, 403);
    assert.ok(r403.headers.get("retry-after"));
    assert.equal((await fetch(`${sim.url}/repos/acme/app/actions/runners`, { headers: { authorization: `token ${data.token}` } })).status, 200, "paths filter");
    sim.setFaults({ statuses: [502] });
    assert.equal((await get()).status, 502);
    assert.equal((await fetch(`${sim.url}/_sim/faults`, { method: "DELETE" })).status, 204);
    assert.equal((await get()).status, 200);
  });
});
