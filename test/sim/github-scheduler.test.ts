// GitHub's job assignment as the fake reproduces it (docs.github.com, "Using self-hosted runners in a workflow": routing): any idle online runner
// whose labels include all of the job's labels, FIFO, one job per JIT runner, then removal.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createAppAuth } from "@octokit/auth-app";
import { Octokit } from "@octokit/rest";
import { GitHubSim, type SimJob } from "../../sim/github/index.js";
import { WebhookRecorder } from "../../sim/github/recorder.js";
import { RunnerSession } from "../../sim/github/runner-client.js";

const SCALE = 0.01; // 1 simulated second = 10 ms
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

describe("fake GitHub scheduler", () => {
  const sim = new GitHubSim({ timeScale: SCALE, jitExpiryMs: 60_000, lostRunnerMs: 5_000 });
  const hooks = new WebhookRecorder();
  let gh: Octokit;
  let n = 0;

  before(async () => {
    await sim.start(0, "127.0.0.1");
    sim.setWebhook(await hooks.start(), "s3cret");
    gh = new Octokit({ log: quiet, baseUrl: sim.url, authStrategy: createAppAuth, auth: { appId: sim.appId, privateKey: sim.appPrivateKeyPem, installationId: 4242 } });
  });
  after(async () => {
    await sim.stop();
    await hooks.stop();
  });
  beforeEach(() => sim.clearFaults());

  async function mint(labels: string[], opts: { repo?: string; org?: boolean; name?: string } = {}) {
    const name = opts.name ?? `runner-${++n}`;
    const res = opts.org
      ? await gh.rest.actions.generateRunnerJitconfigForOrg({ org: "acme", name, runner_group_id: 1, labels })
      : await gh.rest.actions.generateRunnerJitconfigForRepo({ owner: "acme", repo: (opts.repo ?? "acme/app").split("/")[1], name, runner_group_id: 1, labels });
    return { id: res.data.runner.id, name, jit: res.data.encoded_jit_config };
  }

  const job = (id: number): SimJob => {
    const j = sim.jobs().find((x) => x.id === id);
    assert.ok(j, `job ${id}`);
    return j;
  };

  async function until(pred: () => boolean, ms = 3_000): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error("condition not met");
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  test("the runner minted for job B runs job A; webhooks name it; it is removed afterwards", async () => {
    const a = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 10_000 });
    const b = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 10_000 });
    const forB = await mint(["self-hosted", "linux", "x64"], { name: `for-job-${b.id}` });
    assert.equal(job(a.id).status, "queued");
    const session = await RunnerSession.connect(forB.jit);
    assert.equal(session.runnerId, forB.id);
    const busy = await session.state(2_000, "idle");
    assert.deepEqual(busy, { state: "busy", job_id: a.id }, "oldest queued job first, whichever runner it was made for");
    const running = job(a.id);
    assert.deepEqual([running.status, running.runnerId, running.runnerName, running.runnerGroupId, running.runnerGroupName], ["in_progress", forB.id, forB.name, 1, "Default"]);
    assert.equal(job(b.id).status, "queued", "one job per runner");

    assert.deepEqual(await session.untilFinished(1_000), { state: "done", job_id: a.id });
    assert.deepEqual([job(a.id).status, job(a.id).conclusion], ["completed", "success"]);
    assert.equal((await gh.rest.actions.getSelfHostedRunnerForRepo({ owner: "acme", repo: "app", runner_id: forB.id }).catch((e: { status: number }) => e)).status, 404);

    await hooks.waitFor(() => hooks.actionsFor(a.id).includes("completed"));
    const events = hooks.received.filter((r) => (r.json.workflow_job as { id: number }).id === a.id);
    const byAction = Object.fromEntries(events.map((e) => [e.json.action, e.json.workflow_job as Record<string, unknown>]));
    assert.equal(byAction.queued.runner_name, null);
    assert.equal(byAction.queued.runner_id, null);
    assert.equal(byAction.in_progress.runner_name, forB.name);
    assert.equal(byAction.in_progress.status, "in_progress");
    assert.equal(byAction.completed.runner_name, forB.name);
    assert.equal(byAction.completed.conclusion, "success");

    // Job B still waits for a runner; a fresh one takes it.
    const next = await mint(["self-hosted", "linux"]);
    const s2 = await RunnerSession.connect(next.jit);
    assert.equal((await s2.state(2_000, "idle")).job_id, b.id);
    sim.cancelJob(b.id);
    assert.equal((await s2.untilFinished(1_000)).state, "done", "cancelling an in-progress job ends its runner");
    assert.deepEqual([job(b.id).status, job(b.id).conclusion], ["completed", "cancelled"]);
  });

  test("labels: the runner must have every job label (case-insensitive); extra runner labels are fine", async () => {
    const runner = await mint(["self-hosted", "Linux", "x64", "lbl-test"]);
    const gpu = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "lbl-test", "gpu"] });
    const session = await RunnerSession.connect(runner.jit);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(job(gpu.id).status, "queued", "a job needing a label the runner lacks stays queued");
    assert.equal((await session.state()).state, "idle");
    const fits = await sim.createJob({ repo: "acme/app", labels: ["SELF-HOSTED", "linux", "LBL-TEST"], durationMs: 1_000 });
    assert.deepEqual(await session.state(2_000, "idle"), { state: "busy", job_id: fits.id });
    await session.untilFinished(1_000);
    sim.cancelJob(gpu.id);
  });

  test("scope: repo runners serve their repo only; org runners serve every repo of the org", async () => {
    const appOnly = await mint(["self-hosted", "scope-test"], { repo: "acme/app" });
    const s1 = await RunnerSession.connect(appOnly.jit);
    const infraJob = await sim.createJob({ repo: "acme/infra", labels: ["self-hosted", "scope-test"], durationMs: 1_000 });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(job(infraJob.id).status, "queued");
    const orgRunner = await mint(["self-hosted", "scope-test"], { org: true });
    const s2 = await RunnerSession.connect(orgRunner.jit);
    assert.equal((await s2.state(2_000, "idle")).job_id, infraJob.id);
    await s2.untilFinished(1_000);
    assert.equal((await s1.state()).state, "idle");
    await s1.disconnect();
  });

  test("FIFO: with one runner, the older of two queued jobs runs first", async () => {
    const older = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "fifo"], durationMs: 1_000 });
    const newer = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "fifo"], durationMs: 1_000 });
    const r = await mint(["self-hosted", "fifo"]);
    const s = await RunnerSession.connect(r.jit);
    assert.equal((await s.untilFinished(1_000)).job_id, older.id);
    assert.equal(job(newer.id).status, "queued");
    sim.cancelJob(newer.id);
  });

  test("cancel while queued: completed/cancelled with null runner fields, webhook says so", async () => {
    const j = await sim.createJob({ repo: "acme/infra", labels: ["self-hosted", "never"] });
    const c = sim.cancelJob(j.id);
    assert.deepEqual([c.status, c.conclusion, c.runnerId, c.runnerName], ["completed", "cancelled", null, null]);
    const [done] = (await hooks.waitFor(() => hooks.actionsFor(j.id).includes("completed"))).filter(
      (r) => (r.json.workflow_job as { id: number }).id === j.id && r.json.action === "completed",
    );
    const wj = done.json.workflow_job as Record<string, unknown>;
    assert.deepEqual([wj.conclusion, wj.runner_name, wj.runner_id], ["cancelled", null, null]);
  });

  test("an unused JIT runner expires: removed, connect → 410, guest sees gone", async () => {
    const r = await mint(["self-hosted", "expiry"]);
    const other = await mint(["self-hosted", "expiry"]);
    const session = await RunnerSession.connect(other.jit);
    await until(() => sim.runners().find((x) => x.id === r.id)?.removedReason === "expired", 3_000);
    await assert.rejects(RunnerSession.connect(r.jit), (e: { status: number }) => e.status === 410);
    assert.equal((await session.state()).state, "idle", "a connected idle runner does not expire");
    await gh.rest.actions.deleteSelfHostedRunnerFromRepo({ owner: "acme", repo: "app", runner_id: other.id });
    assert.equal((await session.state()).state, "gone", "deleted while idle");
  });

  test("runner protocol errors: foreign config 401, reuse 410, wrong RemoteAuth 401", async () => {
    const r = await mint(["self-hosted", "proto"]);
    const forged = Buffer.from(
      JSON.stringify({
        ".runner": Buffer.from(JSON.stringify({ agentId: r.id, agentName: r.name, poolId: 1, serverUrl: sim.url, gitHubUrl: "", workFolder: "_work", ephemeral: true })).toString("base64"),
        ".credentials": Buffer.from(JSON.stringify({ scheme: "OAuth", data: { clientId: "x", authorizationUrl: "", token: "forged" } })).toString("base64"),
      }),
    ).toString("base64");
    await assert.rejects(RunnerSession.connect(forged), (e: { status: number }) => e.status === 401);
    const bogus = await fetch(`${sim.url}/_sim/runner/connect`, { method: "POST", body: JSON.stringify({ jitconfig: "bm9wZQ==" }) });
    assert.equal(bogus.status, 401);
    const s = await RunnerSession.connect(r.jit);
    await assert.rejects(RunnerSession.connect(r.jit), (e: { status: number }) => e.status === 410);
    const wrong = await fetch(`${sim.url}/_sim/runner/${s.runnerId}/state`, { headers: { authorization: "RemoteAuth nope" } });
    assert.equal(wrong.status, 401);
    await s.disconnect();
    const listed = await gh.rest.actions.getSelfHostedRunnerForRepo({ owner: "acme", repo: "app", runner_id: r.id });
    assert.equal(listed.data.status, "offline");
  });

  test("long-poll waits for a change instead of answering at once", async () => {
    const r = await mint(["self-hosted", "poll"]);
    const s = await RunnerSession.connect(r.jit);
    const t0 = Date.now();
    const idle = await s.state(150);
    assert.equal(idle.state, "idle");
    assert.ok(Date.now() - t0 >= 140, "no change: waits the full window");
    const pending = s.state(3_000);
    await new Promise((res) => setTimeout(res, 30));
    const j = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "poll"], durationMs: 1_000 });
    assert.deepEqual(await pending, { state: "busy", job_id: j.id });
    await s.untilFinished(1_000);
  });

  test("a busy runner that disconnects fails its job after a short delay", async () => {
    const r = await mint(["self-hosted", "lost"]);
    const s = await RunnerSession.connect(r.jit);
    const j = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "lost"], durationMs: 600_000 });
    await s.state(2_000, "idle");
    await s.disconnect();
    assert.equal(job(j.id).status, "in_progress", "GitHub takes a moment to notice");
    await until(() => job(j.id).status === "completed");
    assert.equal(job(j.id).conclusion, "failure");
    await hooks.waitFor(() => hooks.actionsFor(j.id).includes("completed"));
  });

  test("environment-gated job: queued(waiting) → waiting → queued, only then assignable", async () => {
    const r = await mint(["self-hosted", "gated"]);
    const s = await RunnerSession.connect(r.jit);
    const j = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "gated"], environmentGated: true, approveAfterMs: null, durationMs: 1_000 });
    assert.equal(j.status, "waiting");
    await new Promise((res) => setTimeout(res, 50));
    assert.equal((await s.state()).state, "idle", "a waiting job is not assigned");
    sim.approveJob(j.id);
    assert.equal((await s.untilFinished(1_000)).job_id, j.id);
    await hooks.waitFor(() => hooks.actionsFor(j.id).length >= 5);
    const seen = hooks.received.filter((x) => (x.json.workflow_job as { id: number }).id === j.id).map((x) => `${String(x.json.action)}/${String((x.json.workflow_job as { status: string }).status)}`);
    assert.deepEqual(new Set(seen), new Set(["queued/waiting", "waiting/waiting", "queued/queued", "in_progress/in_progress", "completed/completed"]));
  });
});
