// Retention (issue 14): processed deliveries, finished jobs and gone/failed runners older than
// retention.days are deleted; nothing unprocessed, open or live ever is.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Store, type JobRow, type RunnerState } from "../../listener/store/store.js";
import { pruneOnce, scheduleRetention } from "../../sweeper/retention.js";
import { captureLog } from "../fixtures/terraform/helpers.js";

const DAY = 86_400_000;

function job(jobId: number, status: JobRow["status"], labelSet: string | null): Omit<JobRow, "createdAt" | "updatedAt" | "disputedAt"> {
  return { jobId, runId: jobId, runAttempt: 1, repo: "acme/app", owner: "acme", installationId: null, labels: ["self-hosted"], labelSet, scope: labelSet ? "repo:acme/app" : null, status, runnerName: null, conclusion: null };
}

/** A store filled 20 days ago (old) and 1 day ago (recent), read at day 30. */
function filledStore() {
  const clock = { t: 10 * DAY };
  const store = new Store(":memory:", () => clock.t);
  const delivery = (guid: string, jobId: number | null, processed: boolean) => {
    store.recordDelivery({ guid, event: "workflow_job", action: "queued", jobId, payload: `{"big":"payload ${guid}"}`, bodySha: guid.padEnd(64, "0") });
    if (processed) store.markProcessed(guid);
  };
  const runner = (name: string, state: RunnerState, madeForJob: number | null) => {
    store.insertRunner({ name, labelSet: "linux", scope: "repo:acme/app", madeForJob });
    if (state !== "requested") store.setRunnerState(name, state);
  };
  // Day 10 (old at day 30):
  store.applyJobEvent(job(1, "completed", "linux")); // finished: goes
  store.applyJobEvent(job(2, "completed", "linux")); // finished, but a live runner names it: stays
  store.applyJobEvent(job(3, "queued", "linux")); // ours and open: stays
  store.applyJobEvent(job(4, "queued", null)); // not ours: never acted on, goes by age
  delivery("old-processed", 1, true); // goes
  delivery("old-unprocessed", 1, false); // stays: never applied
  delivery("old-open-job", 3, true); // stays: its job is open
  delivery("old-no-job", null, true); // goes
  runner("runner-old-gone", "gone", 1); // goes
  runner("runner-old-failed", "failed", 1); // goes
  runner("runner-old-busy", "busy", 2); // live: stays
  runner("runner-old-booting", "booting", 3); // live: stays
  // Day 29 (recent):
  clock.t = 29 * DAY;
  store.applyJobEvent(job(5, "completed", "linux"));
  delivery("recent-processed", 5, true);
  runner("runner-recent-gone", "gone", 5);
  clock.t = 30 * DAY;
  return { store, clock };
}

const guids = (s: Store) => ["old-processed", "old-unprocessed", "old-open-job", "old-no-job", "recent-processed"].filter((g) => s.hasDelivery(g));

describe("retention", () => {
  test("old finished rows are deleted; unprocessed, open and live ones and everything recent are kept", () => {
    const { store, clock } = filledStore();
    try {
      const log = captureLog();
      const report = pruneOnce(store, 14, log.logger, clock.t);
      assert.deepEqual(report, { deliveries: 2, jobs: 2, runners: 2 });
      assert.deepEqual(guids(store), ["old-unprocessed", "old-open-job", "recent-processed"]);
      assert.deepEqual(store.unprocessedDeliveries().map((d) => d.guid), ["old-unprocessed"]);
      assert.deepEqual(store.jobs().map((j) => j.jobId), [2, 3, 5]);
      assert.deepEqual(store.runners().map((r) => r.name).sort(), ["runner-old-booting", "runner-old-busy", "runner-recent-gone"]);
      assert.ok(log.lines.some((l) => l.msg === "retention: old finished records deleted" && l.deliveries === 2 && l.retentionDays === 14));
      // A second pass finds nothing more.
      assert.deepEqual(pruneOnce(store, 14, log.logger, clock.t), { deliveries: 0, jobs: 0, runners: 0 });
      // A shorter window reaches the day-29 rows too.
      assert.deepEqual(pruneOnce(store, 0.5, log.logger, clock.t), { deliveries: 1, jobs: 1, runners: 1 });
    } finally {
      store.close();
    }
  });

  test("nothing is deleted within the window", () => {
    const { store, clock } = filledStore();
    try {
      assert.deepEqual(pruneOnce(store, 21, captureLog().logger, clock.t), { deliveries: 0, jobs: 0, runners: 0 });
      assert.equal(guids(store).length, 5);
      assert.equal(store.runners().length, 5);
    } finally {
      store.close();
    }
  });

  test("the schedule prunes at once, reading the window when it runs", () => {
    const { store } = filledStore();
    try {
      const days = 14;
      const read: number[] = [];
      // The store's own clock says day 30; the schedule uses the real time, far later: everything old is gone.
      const schedule = scheduleRetention(store, () => (read.push(days), days), captureLog().logger, 60_000);
      schedule.stop();
      assert.deepEqual(read, [14]);
      assert.deepEqual(guids(store), ["old-unprocessed", "old-open-job"], "the unprocessed delivery and the open job's stay whatever their age");
      assert.deepEqual(store.runners().map((r) => r.name).sort(), ["runner-old-booting", "runner-old-busy"]);
    } finally {
      store.close();
    }
  });
});
