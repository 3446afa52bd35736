// Missed-webhook recovery against the fake GitHub: failed deliveries are redelivered with their
// GUID, queued jobs the inbox never heard of are fed into demand, stale queued jobs are corrected.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import express from "express";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { GitHubSim } from "../../sim/github/index.js";
import { GitHubAdapter } from "../../listener/adapters/github/github.js";
import { Store } from "../../listener/store/store.js";
import { Recovery, feedUnseenQueuedJobs, refreshStaleQueued, type RecoveryReport } from "../../sweeper/recovery.js";

const log = pino({ level: "silent" });
const SECRET = "recovery-test-webhook-secret";
const emptyReport = (): RecoveryReport => ({ deliveriesSeen: 0, redelivered: 0, reposChecked: 0, queuedSeen: 0, jobsFed: 0, staleFixed: 0, errors: [] });

describe("missed-webhook recovery", () => {
  // 0.2: GitHub's 10 s delivery deadline becomes 2 s, ample for this receiver on a busy machine
  // (at 0.01 it was 100 ms, and a slow answer made the redelivery fail and go out twice).
  const sim = new GitHubSim({ timeScale: 0.2, webhookSecret: SECRET });
  let receiver: Server;
  let received: Array<{ guid: string; action: string; jobId: number }> = [];
  let github: GitHubAdapter;

  before(async () => {
    await sim.start(0, "127.0.0.1");
    const app = express();
    app.post("/hook", express.json(), (req, res) => {
      received.push({ guid: String(req.headers["x-github-delivery"]), action: req.body.action, jobId: req.body.workflow_job.id });
      res.status(202).end();
    });
    receiver = app.listen(0, "127.0.0.1");
    await new Promise((r) => receiver.once("listening", r));
    sim.setWebhook(`http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`, SECRET);
    github = new GitHubAdapter({ appId: sim.appId, privateKey: sim.appPrivateKeyPem, baseUrl: sim.url, apiVersion: "2022-11-28", runnerGroupId: 1, logger: log, throttle: false });
  });
  after(async () => {
    receiver.close();
    await sim.stop();
  });

  /** A queued job whose `queued` delivery GitHub failed to deliver (dropped). */
  async function jobWithLostQueued() {
    sim.setFaults({ webhook: { dropNext: 1 } });
    const job = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 60_000 });
    await sim.settle();
    sim.clearFaults();
    const failed = sim.deliveries().find((d) => (d.request.payload as { workflow_job: { id: number } }).workflow_job.id === job.id && d.action === "queued");
    assert.ok(failed && failed.status !== "OK", "the fake GitHub recorded a failed delivery");
    return { job, failed };
  }

  test("a dropped queued delivery is redelivered once, with the same GUID, and never again", async () => {
    received = [];
    const store = new Store(":memory:");
    const { job, failed } = await jobWithLostQueued();
    assert.equal(received.length, 0);

    const handed: string[] = [];
    const recovery = new Recovery({ store, github, logger: log, onDelivery: async (g) => void handed.push(g) }, { lookbackMs: 3_600_000, repoWindowMs: 3_600_000, staleQueuedMs: 3_600_000 });
    const r1 = await recovery.run();
    await sim.settle();
    assert.equal(r1.redelivered, 1, JSON.stringify(r1));
    assert.deepEqual(received.map((x) => [x.guid, x.action, x.jobId]), [[failed.guid, "queued", job.id]], "redelivered with the original GUID");

    // The redelivery succeeded: a second pass leaves it alone.
    const r2 = await recovery.run();
    await sim.settle();
    assert.equal(r2.redelivered, 0);
    assert.equal(received.length, 1);
    sim.cancelJob(job.id);
    store.close();
  });

  test("a failed delivery the inbox already holds is not redelivered", async () => {
    received = [];
    const store = new Store(":memory:");
    const { job, failed } = await jobWithLostQueued();
    // e.g. the listener recorded it but answered too late for GitHub.
    store.recordDelivery({ guid: failed.guid, event: "workflow_job", action: "queued", jobId: job.id, payload: "{}" });
    const recovery = new Recovery({ store, github, logger: log, onDelivery: async () => {} }, { lookbackMs: 3_600_000, repoWindowMs: 3_600_000, staleQueuedMs: 3_600_000 });
    const r = await recovery.run();
    assert.equal(r.redelivered, 0, JSON.stringify(r));
    sim.cancelJob(job.id);
    store.close();
  });

  test("queued jobs never heard of are fed through the inbox once; known ones are not", async () => {
    const store = new Store(":memory:");
    sim.setFaults({ webhook: { dropRate: 1 } });
    const unseen = await sim.createJob({ repo: "acme/infra", labels: ["self-hosted", "linux", "x64"], durationMs: 60_000 });
    const known = await sim.createJob({ repo: "acme/infra", labels: ["self-hosted", "linux"], durationMs: 60_000 });
    await sim.settle();
    sim.clearFaults();
    store.applyJobEvent({ jobId: known.id, runId: known.runId, runAttempt: 1, repo: "acme/infra", owner: "acme", installationId: null, labels: known.labels, labelSet: "linux", scope: "repo:acme/infra", status: "queued", runnerName: null, conclusion: null });

    const handed: string[] = [];
    const deps = { store, github, logger: log, onDelivery: async (g: string) => void handed.push(g) };
    const report = emptyReport();
    await feedUnseenQueuedJobs(deps, [{ repo: "acme/infra", installationId: null }], report);
    assert.equal(report.reposChecked, 1);
    assert.ok(report.queuedSeen >= 2, JSON.stringify(report));
    assert.equal(report.jobsFed, 1);
    assert.deepEqual(handed, [`reconciled-${unseen.id}`]);
    const payload = JSON.parse(store.unprocessedDeliveries().find((d) => d.guid === handed[0])!.payload);
    assert.equal(payload.action, "queued");
    assert.deepEqual(payload.workflow_job.labels, unseen.labels);
    assert.equal(payload.repository.full_name, "acme/infra");

    // Not yet applied by a pipeline here, but recorded: the next pass does not feed it twice.
    const again = emptyReport();
    await feedUnseenQueuedJobs(deps, [{ repo: "acme/infra", installationId: null }], again);
    assert.equal(again.jobsFed, 0);
    sim.cancelJob(unseen.id);
    sim.cancelJob(known.id);
    store.close();
  });

  test("a job we hold as queued that GitHub has finished stops counting as demand", async () => {
    let clock = Date.now();
    const store = new Store(":memory:", () => clock);
    const job = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 60_000 });
    store.applyJobEvent({ jobId: job.id, runId: job.runId, runAttempt: 1, repo: "acme/app", owner: "acme", installationId: null, labels: job.labels, labelSet: "linux", scope: "repo:acme/app", status: "queued", runnerName: null, conclusion: null });
    sim.cancelJob(job.id); // and its `completed` delivery was lost
    const deps = { store, github, logger: log, onDelivery: async () => {} };
    const fresh = emptyReport();
    await refreshStaleQueued(deps, 60_000, fresh, clock);
    assert.equal(fresh.staleFixed, 0, "young queued jobs are not asked about");
    clock += 120_000;
    const stale = emptyReport();
    await refreshStaleQueued(deps, 60_000, stale, clock);
    assert.equal(stale.staleFixed, 1);
    assert.equal(store.getJob(job.id)?.status, "completed");
    assert.equal(store.queuedJobs().length, 0);
    store.close();
  });
});
