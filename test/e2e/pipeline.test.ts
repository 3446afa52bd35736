// The main job end to end: fake GitHub → real listener → real terraform → provider stand-in → PVE simulator.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import express from "express";
import type { AddressInfo } from "node:net";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { sign } from "@octokit/webhooks-methods";
import { startE2E, waitFor, settled, containersLeft, registrationsLeft, type E2E } from "./harness.js";

async function withE2E(fn: (e: E2E) => Promise<void>, o?: Parameters<typeof startE2E>[0]): Promise<void> {
  const e = await startE2E(o);
  try {
    await fn(e);
  } finally {
    await e.stop();
  }
}

async function nothingLeft(e: E2E): Promise<void> {
  assert.deepEqual(await containersLeft(e), [], "no container left");
  assert.deepEqual(registrationsLeft(e), [], "no GitHub registration left");
  assert.deepEqual(await readdir(join(e.world.config.stateDir, "runners")).catch(() => []), [], "no stack dir left");
}

describe("pipeline end to end", { concurrency: 1 }, () => {
  test("a single job gets a fresh runner that is destroyed after it", () =>
    withE2E(async (e) => {
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1500 });
      await settled(e, [job.id]);
      const done = e.world.github.jobs().find((j) => j.id === job.id)!;
      assert.equal(done.conclusion, "success");
      const runner = e.service.store.getRunner(done.runnerName!);
      assert.ok(runner, "the job ran on a runner we made");
      assert.equal(runner.madeForJob, job.id);
      assert.equal(runner.labelSet, "linux-small");
      assert.equal(runner.state, "gone");
      await nothingLeft(e);
    }));

  test("a burst of 20 jobs over 3 label sets: each served by a runner of its set, nothing left", () =>
    withE2E(async (e) => {
      const sets = [["self-hosted", "linux"], ["self-hosted", "linux", "x64", "large"], ["self-hosted", "docker"]];
      const setLabels = new Map(e.world.config.labelSets.map((s) => [s.name, s.labels.map((l) => l.toLowerCase())]));
      const jobs = [];
      for (let i = 0; i < 20; i++) jobs.push(await e.world.github.createJob({ repo: i % 2 ? "acme/app" : "acme/infra", labels: sets[i % 3], durationMs: 1000 }));
      await settled(e, jobs.map((j) => j.id), 240_000);
      for (const [i, j] of jobs.entries()) {
        const done = e.world.github.jobs().find((x) => x.id === j.id)!;
        assert.equal(done.conclusion, "success", `job ${j.id}`);
        // GitHub's rule: any idle runner whose labels include all of the job's. A [self-hosted, linux]
        // job may take a linux-docker runner; the docker job then gets a runner made anew.
        const ran = e.service.store.getRunner(done.runnerName!);
        assert.ok(ran, `job ${j.id} ran on a runner of ours`);
        assert.ok(sets[i % 3].every((l) => setLabels.get(ran.labelSet)!.includes(l)), `job ${j.id} [${sets[i % 3]}] ran on ${ran.labelSet}, whose labels include the job's`);
      }
      // One runner per job: no runner ran two jobs, none was wasted beyond the jobs' count.
      const used = new Set(e.world.github.jobs().map((j) => j.runnerName));
      assert.equal(used.size, 20);
      await nothingLeft(e);
    }, { configPatch: (c) => (c.limits = { maxRunners: 10, maxRunnersPerRepo: 10 }) }));

  test("duplicated and reordered deliveries change nothing", () =>
    withE2E(async (e) => {
      e.world.github.setFaults({ webhook: { duplicateRate: 1, reorderRate: 0.5 } });
      const jobs = [];
      for (let i = 0; i < 4; i++) jobs.push(await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1000 }));
      await settled(e, jobs.map((j) => j.id));
      assert.ok(e.world.github.deliveries().length >= 24, "every event was delivered twice");
      const made = e.service.store.runners();
      assert.ok(made.length >= 4 && made.length <= 5, `runners made: ${made.length} (duplicates must not double the supply)`);
      await nothingLeft(e);
    }));

  test("completed before in_progress: the runner is still torn down, the late in_progress is ignored", async () => {
    // A reordering proxy between GitHub and the listener holds every in_progress until its job's completed has passed.
    const held = new Map<number, () => Promise<void>>();
    let listener = "";
    const proxy = express();
    proxy.post("/", express.raw({ type: () => true }), async (req, res) => {
      const body = req.body as Buffer;
      const p = JSON.parse(body.toString());
      const forward = async () => {
        const headers: Record<string, string> = {};
        for (const h of ["content-type", "x-github-event", "x-github-delivery", "x-hub-signature-256"]) headers[h] = String(req.headers[h]);
        await fetch(listener, { method: "POST", body, headers });
      };
      res.status(202).end();
      if (p.action === "in_progress") held.set(p.workflow_job.id, forward);
      else {
        await forward();
        if (p.action === "completed") await held.get(p.workflow_job.id)?.();
      }
    });
    const server = proxy.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    try {
      await withE2E(async (e) => {
        listener = e.service.url + e.world.config.github.webhookPath;
        e.world.github.setWebhook(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, e.world.secrets.webhookSecret);
        const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1000 });
        await settled(e, [job.id]);
        await waitFor("late in_progress forwarded", () => held.has(job.id));
        await new Promise((r) => setTimeout(r, 300));
        const row = e.service.store.getJob(job.id)!;
        assert.equal(row.status, "completed");
        assert.equal(e.service.store.runners([ "busy"]).length, 0);
        await nothingLeft(e);
      });
    } finally {
      server.close();
    }
  });

  test("the runner made for one job may run another: teardown follows runner_name, every job is served", () =>
    withE2E(async (e) => {
      // Job A's queued webhook is lost: the listener only hears of job B and makes a runner for B.
      e.world.github.setFaults({ webhook: { dropNext: 1 } });
      const a = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1000 });
      const b = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1000 });
      // GitHub gives the older job A to the first idle matching runner: the one made for B.
      // (Job time is scaled down: A may already be completed when we look.)
      await waitFor("A started", () => e.world.github.jobs().find((j) => j.id === a.id)?.runnerName);
      const ranA = e.world.github.jobs().find((j) => j.id === a.id)!.runnerName!;
      assert.equal(e.service.store.getRunner(ranA)?.madeForJob, b.id);
      await settled(e, [a.id, b.id]);
      const ranB = e.world.github.jobs().find((j) => j.id === b.id)!;
      assert.equal(ranB.conclusion, "success", "B still got a runner of its own");
      assert.notEqual(ranB.runnerName, ranA);
      await nothingLeft(e);
    }));

  test("a job cancelled while queued: no runner is left behind", () =>
    withE2E(async (e) => {
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1000 });
      await waitFor("runner requested", () => e.service.store.runners().length > 0);
      e.world.github.cancelJob(job.id);
      await settled(e, [job.id]);
      assert.equal(e.world.github.jobs().find((j) => j.id === job.id)!.conclusion, "cancelled");
      await nothingLeft(e);
    }));

  test("an apply that fails is destroyed and retried", () =>
    withE2E(async (e) => {
      e.world.pve.setFaults({ errorRate: { clone: 1 } });
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1000 });
      await waitFor("a failed attempt", () => e.service.store.runners().some((r) => r.attempts >= 1));
      e.world.pve.clearFaults();
      await settled(e, [job.id]);
      const done = e.world.github.jobs().find((j) => j.id === job.id)!;
      assert.equal(done.conclusion, "success");
      assert.ok(e.service.store.getRunner(done.runnerName!)!.attempts >= 1, "served after a retry");
      await nothingLeft(e);
    }));

  test("a listener restart between queued and completed loses nothing", () =>
    withE2E(async (e) => {
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 3000 });
      await waitFor("runner provisioning", () => e.service.store.runners(["provisioning", "booting"]).length > 0);
      await e.restart();
      await settled(e, [job.id]);
      assert.equal(e.world.github.jobs().find((j) => j.id === job.id)!.conclusion, "success");
      await nothingLeft(e);
    }));

  test("unknown labels and disallowed repositories are ignored, with the reason logged", () =>
    withE2E(async (e) => {
      const other = await e.world.github.createJob({ repo: "acme/app", labels: ["ubuntu-latest"], durationMs: 500 });
      const foreign = await e.world.github.createJob({ repo: "evil/fork", labels: ["self-hosted", "linux"], durationMs: 500 }).catch(() => null);
      await e.world.github.settle();
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(e.service.store.runners().length, 0, "no runner made");
      assert.equal(e.service.store.getJob(other.id)?.labelSet, null);
      if (foreign) assert.equal(e.service.store.getJob(foreign.id)?.labelSet ?? null, null);
      await nothingLeft(e);
    }, { configPatch: (c) => (c.allow = { repos: ["acme/app"] }) }));

  test("a bad signature is rejected and has no side effect", () =>
    withE2E(async (e) => {
      const body = JSON.stringify({ action: "queued", workflow_job: { id: 999, run_id: 1, run_attempt: 1, status: "queued", labels: ["self-hosted", "linux"] }, repository: { full_name: "acme/app", owner: { login: "acme" } } });
      const res = await fetch(e.service.url + e.world.config.github.webhookPath, {
        method: "POST",
        body,
        headers: { "content-type": "application/json", "x-github-event": "workflow_job", "x-github-delivery": "abcdef01-0000-0000-0000-000000000000", "x-hub-signature-256": await sign("not-the-secret", body) },
      });
      assert.equal(res.status, 401);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(e.service.store.getJob(999), undefined);
      assert.equal(e.service.store.runners().length, 0);
    }));
});
