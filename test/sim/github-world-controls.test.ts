// World controls of the fake GitHub for acceptance tests: REST faults that fire after the handler
// acted (the effect is real, the answer lost), holding/releasing/ordering webhook deliveries, and
// sending an arbitrary payload through the signed dispatcher.
import { beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createAppAuth } from "@octokit/auth-app";
import { Octokit } from "@octokit/rest";
import { verify } from "@octokit/webhooks-methods";
import { GitHubSim } from "../../sim/github/index.js";
import { type RecordedRequest } from "../../sim/github/recorder.js";
import { githubSimFixture } from "../fixtures/github-sim.js";

const SECRET = "world-controls";
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const jobIdOf = (r: RecordedRequest) => (r.json.workflow_job as { id?: number } | undefined)?.id;

describe("fake GitHub: world controls", () => {
  const github = githubSimFixture({ timeScale: 0.01, seed: 3 }, SECRET);
  const { sim, hooks } = github;
  let n = 0;

  beforeEach(async () => {
    sim.clearFaults();
    sim.unholdDeliveries();
    await sim.releaseDeliveries();
    await sim.settle();
  });

  const mint = (name: string) => github.gh.rest.actions.generateRunnerJitconfigForRepo({ owner: "acme", repo: "app", name, runner_group_id: 1, labels: ["self-hosted", "wc"] });
  const statusOf = (p: Promise<{ status: number }>) => p.then((r) => r.status, (e: { status?: number }) => e.status ?? -1);
  const live = async (name: string) => (await github.gh.rest.actions.listSelfHostedRunnersForRepo({ owner: "acme", repo: "app", name })).data.runners;

  test("after-effect 5xx on generate-jitconfig: the runner is registered, the client gets 502; the next call answers again", async () => {
    sim.setFaults({ after: [{ method: "POST", path: "/actions/runners/generate-jitconfig$", count: 1, status: 502 }] });
    const name = `wc-${++n}`;
    const err = (await mint(name).catch((e: unknown) => e)) as { status: number; response?: { data: { message: string } } };
    assert.equal(err.status, 502);
    assert.equal(err.response?.data.message, "Server Error");
    assert.equal((await live(name)).length, 1, "the effect is real: the runner exists");
    assert.equal(await statusOf(mint(name)), 409, "a retry with the same name finds it registered");
    const other = await mint(`wc-${++n}`);
    assert.equal(other.status, 201, "count spent: answers come through again");
    assert.ok(other.data.encoded_jit_config);
  });

  test("after-effect drop on runner delete: the connection is reset, the runner is gone", async () => {
    const { data } = await mint(`wc-${++n}`);
    sim.setFaults({ after: [{ method: "DELETE", path: "/actions/runners/\\d+$", count: 1, drop: true }] });
    const err = (await github.gh.rest.actions.deleteSelfHostedRunnerFromRepo({ owner: "acme", repo: "app", runner_id: data.runner.id }).catch((e: unknown) => e)) as { status?: number; message: string };
    assert.equal(err.status, 500, "octokit reports a failed request (no HTTP answer)");
    assert.match(err.message, /socket|reset|fetch failed|other side closed/i);
    assert.equal(await statusOf(github.gh.rest.actions.getSelfHostedRunnerForRepo({ owner: "acme", repo: "app", runner_id: data.runner.id })), 404, "deleted anyway");
  });

  test("after-effect faults: only 2xx answers of the matching method and path, and a failed call does not spend the count", async () => {
    sim.setFaults({ after: [{ method: "DELETE", path: "/actions/runners/\\d+$", count: 1, status: 500 }] });
    assert.equal(await statusOf(github.gh.rest.actions.deleteSelfHostedRunnerFromRepo({ owner: "acme", repo: "app", runner_id: 424242 })), 404, "a 404 stays a 404");
    const { data } = await mint(`wc-${++n}`);
    assert.equal(await statusOf(github.gh.rest.actions.getSelfHostedRunnerForRepo({ owner: "acme", repo: "app", runner_id: data.runner.id })), 200, "GET is another route");
    assert.equal(await statusOf(github.gh.rest.actions.deleteSelfHostedRunnerFromRepo({ owner: "acme", repo: "app", runner_id: data.runner.id })), 500);
    const after = sim.faults().after as Array<{ remaining: number; fired: number }>;
    assert.deepEqual(after.map((a) => [a.remaining, a.fired]), [[0, 1]]);
  });

  test("after-effect rate is seeded: the same seed loses the same answers", async () => {
    const pattern = async () => {
      const s = new GitHubSim({ timeScale: 0.01, seed: 99 });
      await s.start(0, "127.0.0.1");
      try {
        const a = new Octokit({ log: quiet, baseUrl: s.url, authStrategy: createAppAuth, auth: { appId: s.appId, privateKey: s.appPrivateKeyPem } });
        s.setFaults({ after: [{ method: "GET", path: "^/app$", rate: 0.5 }] });
        const out: number[] = [];
        for (let i = 0; i < 16; i++) out.push(await statusOf(a.rest.apps.getAuthenticated()));
        return out;
      } finally {
        await s.stop();
      }
    };
    const a = await pattern();
    assert.deepEqual(await pattern(), a);
    assert.ok(a.includes(502) && a.includes(200), a.join(","));
  });

  test("after-effect faults over the control API: POST /_sim/faults {after}, GET shows them, DELETE clears", async () => {
    const set = await fetch(`${sim.url}/_sim/faults`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ after: [{ path: "generate-jitconfig$", count: 2, status: 503 }] }) });
    assert.equal(set.status, 200);
    assert.deepEqual(((await set.json()) as { after: unknown[] }).after, [{ path: "generate-jitconfig$", rate: 0, count: 2, status: 503, drop: false, remaining: 2, fired: 0 }]);
    assert.equal(await statusOf(mint(`wc-${++n}`)), 503);
    assert.equal((await fetch(`${sim.url}/_sim/faults`, { method: "DELETE" })).status, 204);
    assert.equal(await statusOf(mint(`wc-${++n}`)), 201);
    const bad = await fetch(`${sim.url}/_sim/faults`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ after: [{ path: "x", status: 404 }] }) });
    assert.equal(bad.status, 400, "only 5xx replace an answer");
    const badRe = await fetch(`${sim.url}/_sim/faults`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ after: [{ path: "(" }] }) });
    assert.equal(badRe.status, 400, "a path that is no regex is refused");
  });

  test("hold: matching deliveries wait; release sends the chosen ones in the chosen order; the rest stay held", async () => {
    const rule = sim.holdDeliveries({ event: "workflow_job", action: "queued" });
    const jobs = [];
    for (let i = 0; i < 3; i++) jobs.push(await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "held"] }));
    await sim.settle();
    const ids = jobs.map((j) => j.id);
    assert.deepEqual(hooks.received.filter((r) => ids.includes(jobIdOf(r)!)), [], "nothing sent yet");
    const held = sim.heldDeliveries();
    assert.deepEqual(held.map((h) => [h.jobId, h.action, h.event, h.ruleId]), ids.map((id) => [id, "queued", "workflow_job", rule.id]));

    const sent = await sim.releaseDeliveries([held[2].heldId, held[0].heldId]);
    assert.deepEqual(sent.map((d) => [d.guid, d.status, d.redelivery]), [[held[2].guid, "OK", false], [held[0].guid, "OK", false]]);
    const got = hooks.received.filter((r) => ids.includes(jobIdOf(r)!));
    assert.deepEqual(got.map((r) => [jobIdOf(r), r.headers["x-github-delivery"]]), [[ids[2], held[2].guid], [ids[0], held[0].guid]], "in the order asked");
    assert.deepEqual(sim.heldDeliveries().map((h) => h.jobId), [ids[1]], "the one not named is still held");
    await assert.rejects(sim.releaseDeliveries([held[0].heldId]), /no held delivery/, "released ones are gone from the held list");

    sim.unholdDeliveries(rule.id);
    sim.cancelJob(ids[0]);
    await hooks.waitFor(() => hooks.actionsFor(ids[0]).includes("completed"));
    await sim.releaseDeliveries();
    assert.deepEqual(hooks.actionsFor(ids[1]), ["queued"]);
    for (const id of ids.slice(1)) sim.cancelJob(id);
  });

  test("hold by job id: only that job's deliveries are held, and they skip webhook faults", async () => {
    const a = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "held-a"] });
    sim.holdDeliveries({ jobId: a.id + 1 });
    sim.setFaults({ webhook: { dropRate: 1 } });
    const b = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "held-b"] });
    sim.cancelJob(a.id);
    await sim.settle();
    assert.deepEqual(sim.heldDeliveries().map((h) => h.jobId), [b.id]);
    assert.ok(sim.deliveries().some((d) => d.dropped && (d.request.payload.workflow_job as { id: number }).id === a.id), "others meet the faults");
    const [d] = await sim.releaseDeliveries();
    assert.deepEqual([d.status, d.dropped], ["OK", false], "a held delivery is sent as it is, no fault");
    assert.deepEqual(hooks.actionsFor(b.id), ["queued"]);
    sim.cancelJob(b.id);
  });

  test("hold and release over the control API", async () => {
    const post = (path: string, body: unknown) => fetch(`${sim.url}/_sim/webhooks${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const rule = (await (await post("/hold", { action: "queued" })).json()) as { id: number; action: string };
    assert.equal(rule.action, "queued");
    const j1 = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "http1"] });
    const j2 = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "http2"] });
    const held = (await (await fetch(`${sim.url}/_sim/webhooks/held`)).json()) as Array<{ heldId: number; jobId: number }>;
    assert.deepEqual(held.map((h) => h.jobId), [j1.id, j2.id]);
    assert.equal((await post("/release", { ids: [9999] })).status, 404);
    const res = await post("/release", { ids: [held[1].heldId, held[0].heldId] });
    assert.equal(res.status, 200);
    assert.deepEqual(((await res.json()) as Array<{ status: string }>).map((d) => d.status), ["OK", "OK"]);
    const order = hooks.received.filter((r) => [j1.id, j2.id].includes(jobIdOf(r)!)).map(jobIdOf);
    assert.deepEqual(order, [j2.id, j1.id]);
    assert.equal((await fetch(`${sim.url}/_sim/webhooks/hold/${rule.id}`, { method: "DELETE" })).status, 204);
    assert.deepEqual(sim.state().holds, []);
    assert.equal((await post("/hold", { nope: 1 })).status, 400);
    sim.cancelJob(j1.id);
    sim.cancelJob(j2.id);
  });

  test("send: an arbitrary payload, signed, with every header, recorded, and redelivered with its GUID", async () => {
    const payload = { action: "queued", workflow_job: { id: 77_000_001, labels: ["anything"] }, repository: { id: 123, full_name: "acme/app" }, installation: { id: 4242 }, extra: "kept" };
    const guid = "0a1b2c3d-0000-4000-8000-00000000abcd";
    const d = await sim.sendWebhook(payload, { event: "workflow_job", guid });
    assert.ok(d);
    assert.deepEqual([d.guid, d.event, d.action, d.installationId, d.repositoryId, d.status, d.redelivery], [guid, "workflow_job", "queued", 4242, 123, "OK", false]);
    const [req] = hooks.received.filter((r) => r.headers["x-github-delivery"] === guid);
    assert.equal(req.raw, JSON.stringify(payload), "the payload as given");
    assert.equal(await verify(SECRET, req.raw, String(req.headers["x-hub-signature-256"])), true);
    assert.match(String(req.headers["x-hub-signature"]), /^sha1=[0-9a-f]{40}$/);
    assert.equal(req.headers["x-github-event"], "workflow_job");
    assert.equal(req.headers["x-github-hook-installation-target-type"], "integration");
    assert.match(String(req.headers["user-agent"]), /^GitHub-Hookshot\//);

    const listed = (await github.app.request("GET /app/hook/deliveries", { per_page: 100 })).data as Array<{ id: number; guid: string }>;
    const entry = listed.find((x) => x.guid === guid);
    assert.ok(entry, "listed by the deliveries API");
    assert.equal((await github.app.request("POST /app/hook/deliveries/{delivery_id}/attempts", { delivery_id: entry.id })).status, 202);
    await hooks.waitFor((all) => all.filter((r) => r.headers["x-github-delivery"] === guid).length === 2);
    const again = hooks.received.filter((r) => r.headers["x-github-delivery"] === guid)[1];
    assert.equal(again.raw, req.raw, "redelivered: same GUID, same payload");

    const viaHttp = await fetch(`${sim.url}/_sim/webhooks/send`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ event: "ping", payload: { zen: "Keep it logically awesome." } }) });
    assert.equal(viaHttp.status, 201);
    const sent = (await viaHttp.json()) as { guid: string; event: string; status_code: number };
    assert.equal(sent.event, "ping");
    const ping = hooks.received.find((r) => r.headers["x-github-delivery"] === sent.guid);
    assert.equal(ping?.headers["x-github-event"], "ping");
  });
});
