// Job status follows workflow_job.status, not the action; queued vs waiting disputes are settled
// by GitHub's job API, and recovery asks again while GitHub cannot answer.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { Store } from "../../../listener/store/store.js";
import { Pipeline, type PipelineSettings } from "../../../listener/lifecycle/pipeline.js";
import { heldStatus } from "../../../listener/lifecycle/job-status.js";
import { refreshStaleQueued, type RecoveryReport } from "../../../sweeper/recovery.js";
import type { GitHubAdapter, JobState } from "../../../listener/adapters/github/github.js";
import { testPipelineSettings } from "../../fixtures/pipeline-settings.js";

const log = pino({ level: "silent" });
const emptyReport = (): RecoveryReport => ({ deliveriesSeen: 0, redelivered: 0, reposChecked: 0, queuedSeen: 0, jobsFed: 0, staleFixed: 0, errors: [] });
const base = { runId: 1, runAttempt: 1, repo: "acme/app", owner: "acme", installationId: 1, labels: ["self-hosted", "linux"], labelSet: "linux", scope: "repo:acme/app", runnerName: null, conclusion: null };

/** GitHub's job API as a switch: an answer, or an error while it is down. */
function fakeGitHub() {
  const gh = {
    answer: "queued" as JobState | undefined | Error,
    asked: [] as number[],
    async jobStatus(_repo: string, jobId: number): Promise<JobState | undefined> {
      gh.asked.push(jobId);
      if (gh.answer instanceof Error) throw gh.answer;
      return gh.answer;
    },
  };
  return gh;
}

describe("store: queued and waiting rank the same, so order cannot decide", () => {
  test("a disagreement keeps what is held and marks the job disputed; GitHub's answer settles it", () => {
    const store = new Store(":memory:");
    store.applyJobEvent({ ...base, jobId: 1, status: "waiting" });
    const r = store.applyJobEvent({ ...base, jobId: 1, status: "queued" });
    assert.equal(r.disputed, true);
    assert.equal(store.getJob(1)!.status, "waiting", "an approval's `queued` alone does not decide");
    assert.notEqual(store.getJob(1)!.disputedAt, null);
    assert.deepEqual(store.queuedJobs(), [], "a waiting job is never demand");
    store.settleJobStatus(1, "queued");
    assert.equal(store.getJob(1)!.status, "queued");
    assert.equal(store.getJob(1)!.disputedAt, null);
    // The other way round: a `waiting` redelivered after the approval does not take demand away by itself.
    store.applyJobEvent({ ...base, jobId: 2, status: "queued" });
    assert.equal(store.applyJobEvent({ ...base, jobId: 2, status: "waiting" }).disputed, true);
    assert.equal(store.getJob(2)!.status, "queued");
    // A stale answer never moves a job back; moving on settles any dispute.
    store.applyJobEvent({ ...base, jobId: 2, status: "in_progress", runnerName: "runner-a" });
    assert.equal(store.getJob(2)!.disputedAt, null);
    store.settleJobStatus(2, "waiting");
    assert.equal(store.getJob(2)!.status, "in_progress");
    // Repeats are no dispute.
    store.applyJobEvent({ ...base, jobId: 3, status: "waiting" });
    assert.equal(store.applyJobEvent({ ...base, jobId: 3, status: "waiting" }).disputed, false);
    store.close();
  });

  test("the job API's requested and pending are not runnable: held as waiting", () => {
    assert.equal(heldStatus("requested"), "waiting");
    assert.equal(heldStatus("pending"), "waiting");
    assert.equal(heldStatus("waiting"), "waiting");
    assert.equal(heldStatus("queued"), "queued");
    assert.equal(heldStatus("something-new"), undefined);
  });
});

describe("pipeline: job status from the payload, disputes asked at GitHub", () => {
  const settings: PipelineSettings = testPipelineSettings();
  let n = 0;
  /** A pipeline that records jobs but makes no runner (draining): demand is read from the store. */
  function setUp() {
    const store = new Store(":memory:");
    const github = fakeGitHub();
    const pipeline = new Pipeline({ store, github: github as unknown as GitHubAdapter, terraform: {} as never, delivery: {} as never, settings, logger: log });
    pipeline.setDraining(true);
    const deliver = async (action: string, status: string, jobId = 7) => {
      const guid = `00000000-0000-0000-0000-${String(++n).padStart(12, "0")}`;
      const payload = { action, workflow_job: { id: jobId, run_id: 1, status, labels: ["self-hosted", "linux"], runner_name: null, conclusion: null }, repository: { full_name: "acme/app", owner: { login: "acme" } }, installation: { id: 1 } };
      store.recordDelivery({ guid, event: "workflow_job", action, jobId, payload: JSON.stringify(payload) });
      await pipeline.handleDelivery(guid);
    };
    const settle = async () => {
      await new Promise((r) => setTimeout(r, 20));
      await pipeline.idle();
    };
    return { store, github, pipeline, deliver, settle };
  }

  test("a `queued` delivery with status waiting (a deployment approval) is not demand", async () => {
    const { store, pipeline, deliver } = setUp();
    await deliver("queued", "waiting");
    await deliver("waiting", "waiting");
    assert.equal(store.getJob(7)!.status, "waiting");
    assert.deepEqual(store.queuedJobs(), []);
    await pipeline.stop();
    store.close();
  });

  test("the approval's `queued`, then a late `waiting`: GitHub says queued, the job is demand", async () => {
    const { store, github, pipeline, deliver, settle } = setUp();
    await deliver("queued", "waiting");
    await deliver("queued", "queued");
    await deliver("waiting", "waiting"); // redelivered after the approval
    await settle();
    assert.ok(github.asked.includes(7), "GitHub was asked");
    assert.equal(store.getJob(7)!.status, "queued");
    assert.equal(store.getJob(7)!.disputedAt, null);
    assert.deepEqual(store.queuedJobs().map((j) => j.jobId), [7]);
    await pipeline.stop();
    store.close();
  });

  test("GitHub says it still waits: not demand", async () => {
    const { store, github, pipeline, deliver, settle } = setUp();
    github.answer = "waiting";
    await deliver("queued", "queued");
    await deliver("waiting", "waiting");
    await settle();
    assert.equal(store.getJob(7)!.status, "waiting");
    assert.equal(store.getJob(7)!.disputedAt, null);
    assert.deepEqual(store.queuedJobs(), []);
    await pipeline.stop();
    store.close();
  });

  test("GitHub cannot be asked: held as queued, and recovery asks again until it answers", async () => {
    const { store, github, pipeline, deliver, settle } = setUp();
    github.answer = new Error("502 Server Error");
    await deliver("waiting", "waiting");
    await deliver("queued", "queued");
    await settle();
    assert.equal(store.getJob(7)!.status, "queued", "a dispute GitHub cannot settle must not strand the job");
    assert.notEqual(store.getJob(7)!.disputedAt, null, "still disputed: recovery asks again");
    const failed = emptyReport();
    // Young, but disputed: asked at once, not after the stale window.
    await refreshStaleQueued({ store, github: github as unknown as GitHubAdapter, logger: log, onDelivery: async () => {} }, 3_600_000, failed);
    assert.equal(failed.errors.length, 1);
    github.answer = "waiting";
    const ok = emptyReport();
    await refreshStaleQueued({ store, github: github as unknown as GitHubAdapter, logger: log, onDelivery: async () => {} }, 3_600_000, ok);
    assert.deepEqual(ok.errors, []);
    assert.equal(store.getJob(7)!.status, "waiting");
    assert.equal(store.getJob(7)!.disputedAt, null);
    assert.deepEqual(store.queuedJobs(), []);
    await pipeline.stop();
    store.close();
  });
  test("a dispute left open by the last run (stopped before GitHub answered) is asked at the next start", async () => {
    const { store, github, pipeline, settle } = setUp();
    store.applyJobEvent({ ...base, jobId: 8, status: "waiting" });
    store.applyJobEvent({ ...base, jobId: 8, status: "queued" });
    assert.deepEqual(github.asked, []);
    await pipeline.resume();
    await settle();
    assert.deepEqual(github.asked, [8]);
    assert.deepEqual(store.queuedJobs().map((j) => j.jobId), [8]);
    await pipeline.stop();
    store.close();
  });
});

describe("recovery: jobs held as waiting are checked too", () => {
  test("a waiting job whose approval was never delivered becomes demand once stale", async () => {
    let clock = Date.now();
    const store = new Store(":memory:", () => clock);
    const github = fakeGitHub();
    store.applyJobEvent({ ...base, jobId: 9, status: "waiting" });
    const deps = { store, github: github as unknown as GitHubAdapter, logger: log, onDelivery: async () => {} };
    await refreshStaleQueued(deps, 60_000, emptyReport(), clock);
    assert.deepEqual(github.asked, [], "young waiting jobs are not asked about");
    clock += 120_000;
    const r = emptyReport();
    await refreshStaleQueued(deps, 60_000, r, clock);
    assert.equal(r.staleFixed, 1);
    assert.deepEqual(store.queuedJobs().map((j) => j.jobId), [9]);
    store.close();
  });
});
