// workflow_job webhook delivery: GitHub's headers and signature, the deliveries API with
// redelivery, and the injected faults (drop, duplicate, reorder) doing what they say.
import { beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { verify } from "@octokit/webhooks-methods";
import { type RecordedRequest } from "../../sim/github/recorder.js";
import { RunnerSession } from "../../sim/github/runner-client.js";
import { githubSimFixture } from "../fixtures/github-sim.js";

const SECRET = "It's a Secret to Everybody";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const jobIdOf = (r: RecordedRequest) => (r.json.workflow_job as { id: number }).id;

describe("fake GitHub webhooks", () => {
  const github = githubSimFixture({ timeScale: 0.01, seed: 7 }, SECRET);
  const { sim, hooks } = github;
  let n = 0;

  beforeEach(() => {
    sim.clearFaults();
    hooks.respond = () => ({ status: 200 });
  });

  async function runner(label: string): Promise<RunnerSession> {
    const res = await github.gh.rest.actions.generateRunnerJitconfigForRepo({ owner: "acme", repo: "app", name: `wh-${++n}`, runner_group_id: 1, labels: ["self-hosted", label] });
    return RunnerSession.connect(res.data.encoded_jit_config);
  }

  test("signed with X-Hub-Signature-256 over the raw body, with every GitHub header", async () => {
    const job = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "hdr"] });
    const [req] = (await hooks.waitFor(() => hooks.actionsFor(job.id).length === 1)).filter((r) => jobIdOf(r) === job.id);
    const h = req.headers;
    assert.equal(await verify(SECRET, req.raw, String(h["x-hub-signature-256"])), true);
    assert.equal(await verify("wrong secret", req.raw, String(h["x-hub-signature-256"])), false);
    assert.match(String(h["x-hub-signature"]), /^sha1=[0-9a-f]{40}$/);
    assert.equal(h["x-github-event"], "workflow_job");
    assert.match(String(h["x-github-delivery"]), UUID);
    assert.match(String(h["x-github-hook-id"]), /^\d+$/);
    assert.equal(h["x-github-hook-installation-target-type"], "integration");
    assert.equal(h["x-github-hook-installation-target-id"], String(sim.appId));
    assert.match(String(h["user-agent"]), /^GitHub-Hookshot\/[0-9a-f]+$/);
    assert.equal(h["content-type"], "application/json");

    const p = req.json as Record<string, any>;
    assert.equal(p.action, "queued");
    assert.equal(p.installation.id, 4242);
    assert.equal(p.repository.full_name, "acme/app");
    assert.deepEqual([p.repository.owner.login, p.repository.owner.type], ["acme", "Organization"]);
    assert.equal(p.organization.login, "acme");
    assert.equal(p.sender.type, "User");
    assert.deepEqual([p.workflow_job.id, p.workflow_job.run_id, p.workflow_job.run_attempt, p.workflow_job.status], [job.id, job.runId, 1, "queued"]);
    assert.deepEqual(p.workflow_job.labels, ["self-hosted", "hdr"]);
    // Every field of GitHub's own example payload is present.
    const example = (createRequire(import.meta.url)("@octokit/webhooks-examples/api.github.com/index.json") as { name: string; examples: Record<string, any>[] }[])
      .find((e) => e.name === "workflow_job")!.examples.find((e) => e.action === "completed")!;
    for (const k of Object.keys(example.workflow_job)) assert.ok(k in p.workflow_job, `workflow_job.${k}`);
    for (const k of Object.keys(example.repository)) assert.ok(k in p.repository, `repository.${k}`);
    sim.cancelJob(job.id);
  });

  test("user-owned repos carry no organization", async () => {
    const job = await sim.createJob({ repo: "solo/dotfiles", labels: ["self-hosted"] });
    const [req] = (await hooks.waitFor(() => hooks.actionsFor(job.id).length === 1)).filter((r) => jobIdOf(r) === job.id);
    assert.equal("organization" in req.json, false);
    assert.equal((req.json.installation as { id: number }).id, 4343);
    assert.equal((req.json.repository as { owner: { type: string } }).owner.type, "User");
    sim.cancelJob(job.id);
  });

  test("a dropped delivery is a failed entry in GET /app/hook/deliveries; redelivery keeps the GUID", async () => {
    sim.setFaults({ webhook: { dropNext: 1 } });
    const job = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "drop"] });
    await sim.settle();
    assert.deepEqual(hooks.actionsFor(job.id), [], "the receiver never saw it");
    const failed = (await github.app.request("GET /app/hook/deliveries", { per_page: 100 })).data as Array<Record<string, any>>;
    const entry = failed.find((d) => d.action === "queued" && d.status !== "OK" && !d.redelivery);
    assert.ok(entry, "failed delivery listed");
    assert.equal(entry.status_code, 0);
    assert.equal(entry.event, "workflow_job");
    assert.equal(entry.repository_id !== undefined && entry.installation_id, 4242);
    const filtered = (await github.app.request("GET /app/hook/deliveries", { status: "failure" })).data as Array<{ id: number }>;
    assert.ok(filtered.some((d) => d.id === entry.id));

    const redo = await github.app.request("POST /app/hook/deliveries/{delivery_id}/attempts", { delivery_id: entry.id });
    assert.equal(redo.status, 202);
    const [got] = (await hooks.waitFor(() => hooks.actionsFor(job.id).length === 1)).filter((r) => jobIdOf(r) === job.id);
    assert.equal(got.headers["x-github-delivery"], entry.guid);
    assert.equal(await verify(SECRET, got.raw, String(got.headers["x-hub-signature-256"])), true);
    await sim.settle();
    const after = (await github.app.request("GET /app/hook/deliveries")).data as Array<Record<string, any>>;
    const sameGuid = after.filter((d) => d.guid === entry.guid);
    assert.deepEqual(sameGuid.map((d) => [d.redelivery, d.status]), [
      [true, "OK"],
      [false, entry.status],
    ], "newest first: the redelivery is its own entry");
    const detail = (await github.app.request("GET /app/hook/deliveries/{delivery_id}", { delivery_id: sameGuid[0].id })).data as Record<string, any>;
    assert.equal(detail.request.headers["X-GitHub-Delivery"], entry.guid);
    assert.equal(detail.request.payload.workflow_job.id, job.id);
    assert.equal(detail.response.payload, "ok");
    assert.equal((await github.app.request("POST /app/hook/deliveries/{delivery_id}/attempts", { delivery_id: 999999 }).catch((e: { status: number }) => e)).status, 404);
    sim.cancelJob(job.id);
  });

  test("duplicates re-send the same GUID", async () => {
    sim.setFaults({ webhook: { duplicateRate: 1 } });
    const job = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "dup"] });
    const got = (await hooks.waitFor(() => hooks.actionsFor(job.id).length === 2)).filter((r) => jobIdOf(r) === job.id);
    assert.equal(got[0].headers["x-github-delivery"], got[1].headers["x-github-delivery"]);
    assert.equal(got[0].raw, got[1].raw);
    sim.clearFaults();
    sim.cancelJob(job.id);
  });

  test("reorder lets a later event overtake: completed arrives before in_progress", async () => {
    const job = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "reorder"], durationMs: 2_000 });
    await hooks.waitFor(() => hooks.actionsFor(job.id).includes("queued"));
    sim.setFaults({ webhook: { reorderRate: 1, reorderHoldMs: 60_000 } }); // hold 600 ms
    const s = await runner("reorder");
    await s.state(2_000, "idle"); // busy: in_progress dispatched (and held)
    sim.clearFaults(); // completed (in 20 ms) goes straight through
    await s.untilFinished(1_000);
    await hooks.waitFor(() => hooks.actionsFor(job.id).length === 3);
    assert.deepEqual(hooks.actionsFor(job.id), ["queued", "completed", "in_progress"]);
  });

  test("drop rate with a seeded PRNG drops some, delivers the rest; GitHub never retries by itself", async () => {
    sim.setFaults({ webhook: { dropRate: 0.5 } });
    const jobs: Awaited<ReturnType<typeof sim.createJob>>[] = [];
    for (let i = 0; i < 12; i++) jobs.push(await sim.createJob({ repo: "acme/infra", labels: ["self-hosted", "rate"] }));
    await sim.settle();
    const delivered = jobs.filter((j) => hooks.actionsFor(j.id).length === 1).length;
    assert.ok(delivered > 0 && delivered < 12, `delivered ${delivered}/12`);
    const failed = sim.deliveries().filter((d) => d.dropped && jobs.some((j) => (d.request.payload.workflow_job as { id: number }).id === j.id));
    assert.equal(failed.length, 12 - delivered);
    sim.clearFaults();
    for (const j of jobs) sim.cancelJob(j.id);
  });

  test("receiver errors and the 10 s deadline make failed deliveries", async () => {
    hooks.respond = (r) => ((r.json.workflow_job as { labels: string[] }).labels.includes("slow") ? { status: 200, delayMs: 400 } : { status: 500 });
    const broken = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "err"] });
    const slow = await sim.createJob({ repo: "acme/app", labels: ["self-hosted", "slow"] }); // deadline 100 ms at this scale
    await sim.settle();
    const of = (id: number) => sim.deliveries().filter((d) => (d.request.payload.workflow_job as { id: number }).id === id);
    assert.deepEqual(of(broken.id).map((d) => [d.status, d.statusCode]), [["Invalid HTTP Response: 500", 500]]);
    assert.deepEqual(of(slow.id).map((d) => [d.status, d.statusCode]), [["timed out", 0]]);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(of(broken.id).length, 1, "no automatic retry");
    sim.cancelJob(broken.id);
    sim.cancelJob(slow.id);
  });

  test("deliveries API pages newest first with cursor Links; paginate gets them all", async () => {
    await sim.settle();
    const total = sim.deliveries().length;
    assert.ok(total > 10);
    const first = await github.app.request("GET /app/hook/deliveries", { per_page: 4 });
    assert.match(String(first.headers.link), /cursor=[^&>]+.*rel="next"/);
    const ids = (first.data as Array<{ id: number }>).map((d) => d.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => b - a));
    const all = await github.app.paginate("GET /app/hook/deliveries", { per_page: 4 });
    assert.equal(all.length, total);
    assert.equal(new Set((all as Array<{ id: number }>).map((d) => d.id)).size, total);
    const { token } = (await github.gh.auth({ type: "installation" })) as { token: string };
    const tokenCaller = await fetch(`${sim.url}/app/hook/deliveries`, { headers: { authorization: `token ${token}` } });
    assert.equal(tokenCaller.status, 401, "App JWT only");
  });
});
