// The warm pool: stopped, pre-cloned runners kept per label set, claimed by the next job, refilled.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { startE2E, waitFor, settled, type E2E } from "./harness.js";

const warmOnes = (e: E2E, labelSet: string) => e.service.store.runners(["warm"]).filter((r) => r.labelSet === labelSet);

describe("warm pool end to end", { concurrency: 1 }, () => {
  test("K stopped clones wait; a job takes one (start + boot only), the pool refills, nothing is registered before a claim", async () => {
    const e = await startE2E({
      configPatch: (c) => {
        c.labelSets[0].warm = 2;
      },
    });
    try {
      const first = await waitFor("two warm runners", () => (warmOnes(e, "linux-small").length === 2 ? warmOnes(e, "linux-small") : null));
      const simCts = e.world.pve.containers().filter((c) => !c.template);
      assert.equal(simCts.length, 2);
      assert.ok(simCts.every((c) => c.status === "stopped"), "warm members are stopped");
      assert.deepEqual(e.world.github.runners(), [], "a warm member registers nowhere until a job claims it");

      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1500 });
      await waitFor("job started", () => e.world.github.jobs().find((j) => j.id === job.id && j.status !== "queued"));
      const ran = e.world.github.jobs().find((j) => j.id === job.id)!;
      assert.ok(first.some((r) => r.name === ran.runnerName), `the job ran on a warm member (${ran.runnerName})`);
      assert.equal(e.service.store.getRunner(ran.runnerName!)!.madeForJob, job.id);

      await settled(e, [job.id], 90_000).catch(() => {}); // settles except for the pool itself
      await waitFor("pool refilled to 2", () => warmOnes(e, "linux-small").length === 2);
      const now = warmOnes(e, "linux-small").map((r) => r.name);
      assert.ok(!now.includes(ran.runnerName!), "the used runner is gone, a fresh one took its place");
      assert.equal(e.world.pve.containers().filter((c) => !c.template).length, 2, "only the pool is left");
    } finally {
      await e.stop();
    }
  });

  test("warm members give way to a job of another set waiting on the global cap", async () => {
    const e = await startE2E({
      configPatch: (c) => {
        c.limits = { maxRunners: 2, maxRunnersPerRepo: 2 };
        c.labelSets[0].warm = 2;
      },
    });
    try {
      await waitFor("two warm runners", () => warmOnes(e, "linux-small").length === 2);
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux", "x64", "docker"], durationMs: 1000 });
      await waitFor("the docker job ran", () => e.world.github.jobs().find((j) => j.id === job.id && j.status === "completed"), 90_000);
      const ranOn = e.service.store.getRunner(e.world.github.jobs().find((j) => j.id === job.id)!.runnerName!)!;
      assert.equal(ranOn.labelSet, "linux-docker");
      const retired = e.service.store.runners(["gone"]).filter((r) => r.labelSet === "linux-small" && r.lastError === "surplus");
      assert.ok(retired.length >= 1, "a warm member was retired to make room");
      await waitFor("pool refilled after the job", () => warmOnes(e, "linux-small").length === 2, 90_000);
    } finally {
      await e.stop();
    }
  });
});
