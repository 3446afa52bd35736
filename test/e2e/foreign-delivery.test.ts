// A runner name is unique only within a scope (issue 14): a repository the App is installed on but
// that is not allowed registers a runner with our busy runner's name (names show in job logs and on
// the status page) and runs a job on it. GitHub's signed `completed` for that job names our runner;
// the listener must leave ours running, and the job it runs must succeed.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { startE2E, waitFor, settled, containersLeft } from "./harness.js";
import { DEFAULT_INSTALLATIONS } from "../../sim/github/world.js";

describe("deliveries from other scopes", { concurrency: 1 }, () => {
  test("a foreign repository's signed `completed` naming our busy runner leaves it running; its job succeeds", async () => {
    const e = await startE2E({ installations: [...DEFAULT_INSTALLATIONS, { id: 6666, account: "mallory", type: "User", repos: ["mallory/tools"] }] });
    try {
      // Long enough (3 s at the e2e time scale) to be busy when the foreign delivery lands.
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 150_000 });
      const runner = await waitFor("our runner busy", () => e.service.store.runners(["busy"])[0], 180_000, 20);
      const ours = e.world.github.runners().find((r) => r.name === runner.name)!;
      const vmid = runner.vmid!;
      // What GitHub sends for mallory/tools' own job on mallory's runner of the same name.
      const real = e.world.github.deliveries().find((d) => d.action === "in_progress" && (d.request.payload.workflow_job as { id: number }).id === job.id)!;
      const forged = structuredClone(real.request.payload) as Record<string, any>;
      forged.action = "completed";
      forged.workflow_job = { ...forged.workflow_job, id: 990_001, run_id: 990_002, status: "completed", conclusion: "success", runner_id: ours.id + 100_000, runner_name: runner.name };
      forged.repository = { ...forged.repository, id: 990_003, name: "tools", full_name: "mallory/tools", owner: { ...forged.repository.owner, login: "mallory", type: "User" } };
      delete forged.organization;
      forged.installation = { id: 6666 };
      const sent = await e.world.github.sendWebhook(forged, { event: "workflow_job" });
      assert.equal(sent?.statusCode, 202, "a valid, signed delivery: accepted");
      // Recorded in the same transaction that would have moved our runner.
      await waitFor("the foreign delivery applied", () => e.service.store.getJob(990_001), 10_000, 20);
      assert.equal(e.service.store.getRunner(runner.name)!.state, "busy", "our runner still runs its job");
      assert.ok((await containersLeft(e)).includes(vmid), "its container is still there");
      await settled(e, [job.id]);
      assert.equal(e.world.github.jobs().find((j) => j.id === job.id)!.conclusion, "success");
      assert.deepEqual(await containersLeft(e), []);
    } finally {
      await e.stop();
    }
  });

  test("org mode: a job of another allowed repository of the org runs on our runner, and its `completed` ends it", async () => {
    const e = await startE2E({ configPatch: (c) => (c.github.runnerScope = "org") });
    try {
      // Job A's queued webhook is lost: the listener makes a runner for B (acme/infra) only, and
      // GitHub gives the older job A (acme/app) to it: legitimate within the org's runners.
      e.world.github.setFaults({ webhook: { dropNext: 1 } });
      const a = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1000 });
      const b = await e.world.github.createJob({ repo: "acme/infra", labels: ["self-hosted", "linux"], durationMs: 1000 });
      const ranA = await waitFor("A started", () => e.world.github.jobs().find((j) => j.id === a.id)?.runnerName, 180_000);
      const runner = e.service.store.getRunner(ranA)!;
      assert.equal(runner.madeForJob, b.id);
      assert.equal(runner.scope, "org:acme");
      await settled(e, [a.id, b.id], 180_000);
      assert.equal(e.service.store.getRunner(ranA)!.state, "gone", "A's completed (acme/app) tore down the runner made for acme/infra");
      for (const id of [a.id, b.id]) assert.equal(e.world.github.jobs().find((j) => j.id === id)!.conclusion, "success");
      assert.deepEqual(await containersLeft(e), []);
    } finally {
      await e.stop();
    }
  });
});
