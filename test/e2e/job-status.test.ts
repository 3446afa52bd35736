// Jobs that wait for a deployment approval, end to end: the listener follows workflow_job.status
// (a `queued` delivery can say `waiting`), and when deliveries disagree, GitHub's job API decides.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { startE2E, waitFor, settled, type E2E } from "./harness.js";

async function withE2E(fn: (e: E2E) => Promise<void>): Promise<void> {
  // Grace 0: recovery checks jobs at once, not after the sweeper's grace.
  const e = await startE2E({ overrides: { sweepGraceMs: 0 } });
  try {
    await fn(e);
  } finally {
    await e.stop();
  }
}

const deliveriesOf = (e: E2E, jobId: number) => e.world.github.deliveries().filter((d) => (d.request.payload as { workflow_job: { id: number } }).workflow_job.id === jobId);
/** Recorded by the listener and applied. */
const applied = (e: E2E, guid: string) => e.service.store.hasDelivery(guid) && !e.service.store.unprocessedDelivery(guid);

describe("jobs waiting for an approval", { concurrency: 1 }, () => {
  test("a waiting job gets no runner until it is approved, then it runs", () =>
    withE2E(async (e) => {
      // The `waiting` delivery lags behind the first `queued` (which already says status: waiting).
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1000, environmentGated: true, approveAfterMs: null, waitingAfterMs: 20_000 });
      const first = await waitFor("the first `queued` delivery", () => deliveriesOf(e, job.id).find((d) => d.action === "queued"));
      assert.equal((first.request.payload as { workflow_job: { status: string } }).workflow_job.status, "waiting");
      await waitFor("the first `queued` applied", () => applied(e, first.guid));
      const waiting = await waitFor("the `waiting` delivery applied", () => deliveriesOf(e, job.id).find((d) => d.action === "waiting" && applied(e, d.guid)));
      assert.ok(waiting);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(e.service.store.getJob(job.id)?.status, "waiting");
      assert.deepEqual(e.service.store.runners(), [], "no runner is requested for a job waiting for approval");
      e.world.github.approveJob(job.id);
      await settled(e, [job.id]);
      const done = e.world.github.jobs().find((j) => j.id === job.id)!;
      assert.equal(done.conclusion, "success");
      assert.equal(e.service.store.getRunner(done.runnerName!)?.madeForJob, job.id, "it ran on a runner made for it");
    }));

  test("the approval's `queued` overtakes the `waiting` (redelivered after the approval): the job still gets a runner", () =>
    withE2E(async (e) => {
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1000, environmentGated: true, approveAfterMs: null, waitingAfterMs: 20_000 });
      const first = await waitFor("the first `queued` delivery", () => deliveriesOf(e, job.id).find((d) => d.action === "queued"));
      await waitFor("the first `queued` applied", () => applied(e, first.guid));
      // The `waiting` delivery fails: the listener hears of it only when recovery redelivers it.
      e.world.github.setFaults({ webhook: { dropNext: 1 } });
      const lost = await waitFor("the `waiting` delivery failed", () => deliveriesOf(e, job.id).find((d) => d.action === "waiting" && d.dropped));
      // Draining holds runners back until the late `waiting` is in: otherwise a runner requested at
      // once for the approval could take the job whatever the listener then thinks of it.
      e.service.setDraining(true);
      e.world.github.approveJob(job.id);
      const approval = await waitFor("the approval's `queued`", () => deliveriesOf(e, job.id).find((d) => d.action === "queued" && d.guid !== first.guid));
      await waitFor("the approval applied", () => applied(e, approval.guid) && e.service.store.getJob(job.id)?.status === "queued");
      const report = await e.service.recover();
      assert.equal(report.redelivered, 1, JSON.stringify(report));
      await waitFor("the redelivered `waiting` applied", () => applied(e, lost.guid));
      e.service.setDraining(false);
      await settled(e, [job.id]);
      assert.equal(e.world.github.jobs().find((j) => j.id === job.id)!.conclusion, "success");
    }));
});
