import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import express from "express";
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { sign } from "@octokit/webhooks-methods";
import { pino } from "pino";
import { Store } from "../../../listener/store/store.js";
import { webhookRouter } from "../../../listener/http/webhook.js";
import { captureLog } from "../../fixtures/terraform/helpers.js";

const SECRET = "It's a Secret to Everybody";

function payload(action: string, jobId = 7, extra: Record<string, unknown> = {}) {
  return {
    action,
    workflow_job: { id: jobId, run_id: 70, run_attempt: 1, status: action, conclusion: null, labels: ["self-hosted", "linux"], runner_name: null, ...extra },
    repository: { full_name: "acme/app", owner: { login: "acme", type: "Organization" } },
    installation: { id: 4242 },
  };
}

describe("webhook receiver", () => {
  let server: Server;
  let base: string;
  let store: Store;
  const delivered: string[] = [];

  before(async () => {
    store = new Store(":memory:");
    const app = express();
    app.use(webhookRouter("/webhooks/github", { secret: SECRET, bodyLimitBytes: 64 * 1024, store, logger: pino({ level: "silent" }), onDelivery: (g) => delivered.push(g) }));
    // A body parser mounted AFTER the route must not affect it.
    app.use(express.json());
    server = app.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.close();
    store.close();
  });

  async function post(body: string, headers: Record<string, string>) {
    const res = await fetch(`${base}/webhooks/github`, { method: "POST", body, headers: { "content-type": "application/json", ...headers } });
    return { status: res.status, json: (await res.json().catch(() => null)) as any };
  }
  async function signed(body: string, guid: string, event = "workflow_job") {
    return post(body, { "x-github-event": event, "x-github-delivery": guid, "x-hub-signature-256": await sign(SECRET, body) });
  }

  test("a signed workflow_job is recorded before the 202 and handed on once", async () => {
    const body = JSON.stringify(payload("queued"));
    const r = await signed(body, "11111111-1111-1111-1111-111111111111");
    assert.equal(r.status, 202);
    assert.deepEqual(r.json, { accepted: true, duplicate: false });
    assert.ok(store.hasDelivery("11111111-1111-1111-1111-111111111111"));
    await new Promise((res) => setImmediate(res));
    assert.deepEqual(delivered, ["11111111-1111-1111-1111-111111111111"]);
    const again = await signed(body, "11111111-1111-1111-1111-111111111111");
    assert.equal(again.status, 202);
    assert.equal(again.json.duplicate, true);
    await new Promise((res) => setImmediate(res));
    assert.equal(delivered.length, 1, "a redelivered GUID is not processed twice");
  });

  test("a bad signature is rejected with 401 and leaves no trace", async () => {
    const body = JSON.stringify(payload("queued", 8));
    const bad = await sign("wrong secret", body);
    const r = await post(body, { "x-github-event": "workflow_job", "x-github-delivery": "22222222-2222-2222-2222-222222222222", "x-hub-signature-256": bad });
    assert.equal(r.status, 401);
    assert.equal(store.hasDelivery("22222222-2222-2222-2222-222222222222"), false);
    const missing = await post(body, { "x-github-event": "workflow_job", "x-github-delivery": "22222222-2222-2222-2222-222222222223" });
    assert.equal(missing.status, 401);
    // A signature over other bytes (the body re-serialised) does not pass either.
    const tampered = await post(body.replace('"queued"', '"completed"'), { "x-github-event": "workflow_job", "x-github-delivery": "22222222-2222-2222-2222-222222222224", "x-hub-signature-256": await sign(SECRET, body) });
    assert.equal(tampered.status, 401);
    assert.equal(store.unprocessedDeliveries().filter((d) => d.jobId === 8).length, 0);
  });

  test("clear 400/413/415 answers", async () => {
    assert.equal((await post("{}", { "x-github-event": "workflow_job" })).status, 401);
    const noGuid = JSON.stringify(payload("queued", 9));
    assert.equal((await post(noGuid, { "x-github-event": "workflow_job", "x-hub-signature-256": await sign(SECRET, noGuid) })).status, 400);
    const malformed = JSON.stringify({ action: "queued", workflow_job: { id: "x" } });
    const m = await signed(malformed, "33333333-3333-3333-3333-333333333333");
    assert.equal(m.status, 400);
    assert.match(m.json.error, /workflow_job/);
    const notJson = "not json";
    assert.equal((await signed(notJson, "33333333-3333-3333-3333-333333333334")).status, 400);
    const big = JSON.stringify({ ...payload("queued", 10), pad: "x".repeat(70 * 1024) });
    assert.equal((await signed(big, "33333333-3333-3333-3333-333333333335")).status, 413);
    const form = await fetch(`${base}/webhooks/github`, { method: "POST", body: "payload=%7B%7D", headers: { "content-type": "application/x-www-form-urlencoded" } });
    assert.equal(form.status, 415);
    assert.equal((await signed(JSON.stringify({ zen: "hi" }), "33333333-3333-3333-3333-333333333336", "ping")).status, 200);
    assert.equal((await signed(JSON.stringify({ action: "opened" }), "33333333-3333-3333-3333-333333333337", "issues")).status, 202);
    for (const g of ["33333333-3333-3333-3333-333333333333", "33333333-3333-3333-3333-333333333335", "33333333-3333-3333-3333-333333333337"]) assert.equal(store.hasDelivery(g), false);
  });
});

describe("store: job events only move forward", () => {
  test("duplicated and reordered events settle on the furthest state", () => {
    const store = new Store(":memory:");
    const base = { jobId: 1, runId: 1, runAttempt: 1, repo: "acme/app", owner: "acme", installationId: 1, labels: ["self-hosted"], labelSet: "s", scope: "repo:acme/app", conclusion: null };
    assert.equal(store.applyJobEvent({ ...base, status: "completed", runnerName: "runner-a", conclusion: "success" }).changed, true);
    assert.equal(store.applyJobEvent({ ...base, status: "in_progress", runnerName: "runner-a" }).changed, false);
    assert.equal(store.applyJobEvent({ ...base, status: "queued", runnerName: null }).changed, false);
    assert.equal(store.getJob(1)!.status, "completed");
    assert.equal(store.getJob(1)!.runnerName, "runner-a");
    // waiting → queued (an approval) is a dispute GitHub settles (test/listener/lifecycle/job-status.test.ts);
    // queued → in_progress learns the runner.
    store.applyJobEvent({ ...base, jobId: 2, status: "waiting", runnerName: null });
    assert.equal(store.applyJobEvent({ ...base, jobId: 2, status: "queued", runnerName: null }).disputed, true);
    store.settleJobStatus(2, "queued");
    assert.deepEqual(store.queuedJobs().map((j) => j.jobId), [2]);
    store.applyJobEvent({ ...base, jobId: 2, status: "in_progress", runnerName: "runner-b" });
    assert.equal(store.getJob(2)!.runnerName, "runner-b");
    assert.deepEqual(store.queuedJobs(), []);
    store.close();
  });

  test("a delivery survives a restart until it is marked processed", async () => {
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "store-"));
    try {
      const a = new Store(join(dir, "db.sqlite"));
      assert.equal(a.recordDelivery({ guid: "g1", event: "workflow_job", action: "queued", jobId: 1, payload: "{}" }), true);
      assert.equal(a.recordDelivery({ guid: "g1", event: "workflow_job", action: "queued", jobId: 1, payload: "{}" }), false);
      a.close();
      const b = new Store(join(dir, "db.sqlite"));
      assert.deepEqual(b.unprocessedDeliveries().map((d) => d.guid), ["g1"]);
      b.markProcessed("g1");
      assert.deepEqual(b.unprocessedDeliveries(), []);
      b.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// Issue 14: X-GitHub-Delivery is outside the HMAC, so a captured body can be sent again under a
// fresh GUID. It is answered 2xx (GitHub must never see an error from us) and not processed again.
describe("webhook replay under a new GUID", () => {
  let server: Server;
  let base: string;
  let store: Store;
  const delivered: string[] = [];
  const results: string[] = [];
  const log = captureLog();

  before(async () => {
    store = new Store(":memory:");
    const app = express();
    app.use(webhookRouter("/webhooks/github", { secret: SECRET, bodyLimitBytes: 64 * 1024, store, logger: log.logger, onDelivery: (g) => delivered.push(g), onResult: (r) => results.push(r) }));
    server = app.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.close();
    store.close();
  });

  async function signed(body: string, guid: string) {
    const res = await fetch(`${base}/webhooks/github`, { method: "POST", body, headers: { "content-type": "application/json", "x-github-event": "workflow_job", "x-github-delivery": guid, "x-hub-signature-256": await sign(SECRET, body) } });
    return { status: res.status, json: (await res.json().catch(() => null)) as { accepted?: boolean; duplicate?: boolean } | null };
  }

  test("the same signed body under a new GUID: 2xx, not recorded, not processed, logged", async () => {
    const body = JSON.stringify(payload("queued", 901));
    const first = await signed(body, "aaaaaaaa-0000-0000-0000-000000000001");
    assert.deepEqual([first.status, first.json], [202, { accepted: true, duplicate: false }]);
    store.markProcessed("aaaaaaaa-0000-0000-0000-000000000001");
    for (const guid of ["aaaaaaaa-0000-0000-0000-000000000002", "aaaaaaaa-0000-0000-0000-000000000003"]) {
      const replay = await signed(body, guid);
      assert.equal(replay.status, 202, "GitHub (or whoever) sees no error");
      assert.equal(store.hasDelivery(guid), false, "the replay is not recorded (so a restart does not process it either)");
    }
    await new Promise((res) => setImmediate(res));
    assert.deepEqual(delivered, ["aaaaaaaa-0000-0000-0000-000000000001"], "processed once");
    assert.deepEqual(results, ["accepted", "replay", "replay"]);
    const warned = log.lines.filter((l) => l.msg === "webhook replayed: a body already received under another delivery GUID; not processed again");
    assert.deepEqual(warned.map((l) => [l.level, l.delivery, l.job]), [
      [40, "aaaaaaaa-0000-0000-0000-000000000002", 901],
      [40, "aaaaaaaa-0000-0000-0000-000000000003", 901],
    ]);
    // A different body (another event of the same job) is new, and a replay in one batch is caught too.
    const other = JSON.stringify(payload("in_progress", 901));
    const [a, b] = await Promise.all([signed(other, "aaaaaaaa-0000-0000-0000-000000000004"), signed(other, "aaaaaaaa-0000-0000-0000-000000000005")]);
    assert.deepEqual([a.status, b.status], [202, 202]);
    await new Promise((res) => setImmediate(res));
    assert.equal(delivered.length, 2, "one of the two in_progress copies was processed");
    assert.equal([store.hasDelivery("aaaaaaaa-0000-0000-0000-000000000004"), store.hasDelivery("aaaaaaaa-0000-0000-0000-000000000005")].filter(Boolean).length, 1);
  });

  test("once the first delivery is past retention and pruned, the window has closed (the body is new again)", () => {
    const clock = { t: 1_000_000 };
    const s = new Store(":memory:", () => clock.t);
    try {
      const d = { guid: "bbbbbbbb-0000-0000-0000-000000000001", event: "workflow_job", action: "completed", jobId: 5, payload: "{}", bodySha: "ab".repeat(32) };
      assert.equal(s.recordDeliveryChecked(d), "fresh");
      assert.equal(s.recordDeliveryChecked(d), "duplicate");
      assert.equal(s.recordDeliveryChecked({ ...d, guid: "bbbbbbbb-0000-0000-0000-000000000002" }), "replay");
      s.markProcessed(d.guid);
      clock.t += 15 * 86_400_000;
      assert.equal(s.prune(clock.t - 14 * 86_400_000).deliveries, 1);
      assert.equal(s.recordDeliveryChecked({ ...d, guid: "bbbbbbbb-0000-0000-0000-000000000003" }), "fresh");
    } finally {
      s.close();
    }
  });
});
