// A runner name is unique only within a scope: a delivery moves our runner only when it comes from
// the runner's scope, from an allowed repository, and names the registration we minted (issue 14).
// And a runner given up is reported on the commit without our internals (a reference to the log).
import { describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Store, UNCLAIMED } from "../../../listener/store/store.js";
import { Pipeline, type PipelineSettings } from "../../../listener/lifecycle/pipeline.js";
import { whyNotThisRunner } from "../../../listener/lifecycle/runner-match.js";
import type { Allowlist } from "../../../listener/lifecycle/allowlist.js";
import type { GitHubAdapter } from "../../../listener/adapters/github/github.js";
import { testPipelineSettings } from "../../fixtures/pipeline-settings.js";

const LABELS = ["self-hosted", "linux"];

function settingsFor(runnerScope: "repo" | "org", allow: Allowlist, stateDir = "/nonexistent"): PipelineSettings {
  return testPipelineSettings({ stateDir, allow, runnerScope, labelSets: [{ name: "linux", labels: LABELS, cores: 1, memoryMb: 512, swapMb: 0, maxRunners: 4, warm: 0 }], timeouts: { idleMs: 60_000 } });
}

/** Every log line, parsed. */
function capturedLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}

describe("whyNotThisRunner", () => {
  const repoRunner = { scope: "repo:acme/app", githubRunnerId: 501 };
  const orgRunner = { scope: "org:acme", githubRunnerId: 501 };
  const allow: Allowlist = { orgs: ["acme"] };
  const ev = (repo: string, runnerId: number | null | undefined = 501) => ({ repo, owner: repo.split("/")[0], runnerId });

  test("repo mode: only the runner's own repository", () => {
    assert.equal(whyNotThisRunner(repoRunner, ev("acme/app"), allow), null);
    assert.equal(whyNotThisRunner(repoRunner, ev("ACME/App"), allow), null, "GitHub names are case-insensitive");
    assert.match(whyNotThisRunner(repoRunner, ev("acme/infra"), allow) ?? "", /outside the runner's scope/);
    assert.match(whyNotThisRunner(repoRunner, ev("mallory/tools"), { any: true }) ?? "", /outside the runner's scope/);
  });

  test("org mode: any allowed repository of the org (GitHub gives the runner to any of them)", () => {
    assert.equal(whyNotThisRunner(orgRunner, ev("acme/infra"), allow), null);
    assert.equal(whyNotThisRunner(orgRunner, ev("Acme/app"), allow), null);
    assert.match(whyNotThisRunner(orgRunner, ev("mallory/acme"), { any: true }) ?? "", /outside the runner's scope/);
    assert.match(whyNotThisRunner(orgRunner, ev("acme/secret"), { repos: ["acme/app"] }) ?? "", /not in the allowlist/);
  });

  test("the registration id must match when both are known", () => {
    assert.match(whyNotThisRunner(repoRunner, ev("acme/app", 777), allow) ?? "", /another registration/);
    assert.equal(whyNotThisRunner(repoRunner, ev("acme/app", null), allow), null, "payload without runner_id");
    assert.equal(whyNotThisRunner({ ...repoRunner, githubRunnerId: null }, ev("acme/app", 777), allow), null, "not minted yet (or forgotten after a failed delivery)");
  });

  test("an unclaimed warm-pool member is registered nowhere: no delivery is about it", () => {
    assert.match(whyNotThisRunner({ scope: UNCLAIMED, githubRunnerId: null }, ev("acme/app"), { any: true }) ?? "", /not registered/);
  });
});

describe("pipeline: a delivery naming our runner from elsewhere tears nothing down", () => {
  let n = 0;
  function setUp(ctx: TestContext, runnerScope: "repo" | "org", allow: Allowlist, runner: { scope: string; state: "idle" | "busy" }) {
    const store = new Store(":memory:");
    const { logger, lines } = capturedLogger();
    const deleted: number[] = [];
    const github = {
      async deleteRunner(_scope: unknown, id: number) {
        deleted.push(id);
        return "deleted" as const;
      },
    };
    const pipeline = new Pipeline({ store, github: github as unknown as GitHubAdapter, terraform: {} as never, delivery: {} as never, settings: settingsFor(runnerScope, allow), logger });
    pipeline.setDraining(true);
    const row = store.insertRunner({ name: "runner-0badcafe", labelSet: "linux", scope: runner.scope, madeForJob: 1 });
    store.setRunnerState(row.name, runner.state, { githubRunnerId: 501 });
    const deliver = async (action: "in_progress" | "completed", repo: string, o: { jobId?: number; runnerId?: number | null; installation?: number } = {}) => {
      const guid = `00000000-0000-0000-0000-${String(++n).padStart(12, "0")}`;
      const jobId = o.jobId ?? 1;
      const payload = {
        action,
        workflow_job: { id: jobId, run_id: 1, status: action, labels: LABELS, runner_name: row.name, runner_id: o.runnerId === undefined ? 501 : o.runnerId, conclusion: action === "completed" ? "success" : null },
        repository: { full_name: repo, owner: { login: repo.split("/")[0] } },
        installation: { id: o.installation ?? 1 },
      };
      store.recordDelivery({ guid, event: "workflow_job", action, jobId, payload: JSON.stringify(payload) });
      await pipeline.handleDelivery(guid);
    };
    const state = () => store.getRunner(row.name)!.state;
    // Stopped whatever the outcome: a runner left busy waits for events that never come.
    ctx.after(async () => {
      await pipeline.stop();
      store.close();
    });
    return { store, pipeline, deliver, state, lines, deleted };
  }

  test("repo mode: a foreign repository's signed `completed` leaves our busy runner running, with a warning", async (ctx) => {
    const t = setUp(ctx, "repo", { orgs: ["acme"] }, { scope: "repo:acme/app", state: "busy" });
    // mallory/tools: the App is installed there, not allowed; it registered a runner of the same name.
    await t.deliver("completed", "mallory/tools", { jobId: 66, runnerId: 9001, installation: 666 });
    await t.pipeline.idle();
    assert.equal(t.state(), "busy");
    assert.deepEqual(t.deleted, [], "no registration deleted");
    const warn = t.lines.find((l) => l.level === 40 && l.runner === "runner-0badcafe");
    assert.ok(warn, "a warning names the runner");
    assert.equal(warn.repo, "mallory/tools", "and the repository");
    // The real completion (our scope, our registration) still ends it.
    await t.deliver("completed", "acme/app");
    await t.pipeline.idle();
    assert.equal(t.state(), "gone");
    assert.deepEqual(t.deleted, [501]);
  });

  test("repo mode: another allowed repository of the same org cannot end it either", async (ctx) => {
    const t = setUp(ctx, "repo", { orgs: ["acme"] }, { scope: "repo:acme/app", state: "busy" });
    await t.deliver("completed", "acme/infra", { jobId: 67, runnerId: 8001 });
    await t.pipeline.idle();
    assert.equal(t.state(), "busy");
  });

  test("our repository, but another registration id: ignored", async (ctx) => {
    const t = setUp(ctx, "repo", { orgs: ["acme"] }, { scope: "repo:acme/app", state: "busy" });
    await t.deliver("completed", "acme/app", { jobId: 68, runnerId: 777 });
    await t.pipeline.idle();
    assert.equal(t.state(), "busy");
  });

  test("a foreign `in_progress` does not mark our idle runner busy", async (ctx) => {
    const t = setUp(ctx, "repo", { any: true }, { scope: "repo:acme/app", state: "idle" });
    await t.deliver("in_progress", "mallory/tools", { jobId: 69, runnerId: 9001 });
    assert.equal(t.state(), "idle");
  });

  test("org mode: a job of another allowed repository of the org runs on our runner and ends it", async (ctx) => {
    const t = setUp(ctx, "org", { orgs: ["acme"] }, { scope: "org:acme", state: "idle" });
    await t.deliver("in_progress", "acme/infra", { jobId: 70 });
    assert.equal(t.state(), "busy");
    await t.deliver("completed", "acme/infra", { jobId: 70 });
    await t.pipeline.idle();
    assert.equal(t.state(), "gone");
  });

  test("org mode: another org's delivery is ignored, even with every repository allowed", async (ctx) => {
    const t = setUp(ctx, "org", { any: true }, { scope: "org:acme", state: "busy" });
    await t.deliver("completed", "mallory/tools", { jobId: 71, runnerId: 9001 });
    await t.pipeline.idle();
    assert.equal(t.state(), "busy");
  });
});

describe("pipeline: the check run for a runner given up carries no internals", () => {
  test("a generic summary with a reference; the full error is in the log line with that reference", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "pve-runners-report-"));
    const store = new Store(":memory:");
    const { logger, lines } = capturedLogger();
    const reports: Array<{ repo: string; sha: string; title: string; summary: string }> = [];
    const github = {
      async jobStatus() {
        return "queued" as const;
      },
      async reportInfraFailure(repo: string, sha: string, r: { title: string; summary: string }) {
        reports.push({ repo, sha, title: r.title, summary: r.summary });
        return 1;
      },
    };
    const secretError = "clone failed on node pve-secret-07: Permission check failed (/vms/100000, VM.Clone) at /var/lib/vz/private/100000/rootfs";
    const terraform = {
      async prepare() {},
      async apply(): Promise<unknown> {
        throw new Error(secretError);
      },
      async destroy() {},
      async output() {
        return {};
      },
    };
    const readNodes = async () => [{ node: "pve", online: true }];
    const pipeline = new Pipeline({ store, readNodes, github: github as unknown as GitHubAdapter, terraform, delivery: { startsContainer: false } as never, settings: settingsFor("repo", { orgs: ["acme"] }, stateDir), logger });
    try {
      const sha = "a".repeat(40);
      const payload = { action: "queued", workflow_job: { id: 5, run_id: 1, status: "queued", labels: LABELS, head_sha: sha }, repository: { full_name: "acme/app", owner: { login: "acme" } }, installation: { id: 1 } };
      store.recordDelivery({ guid: "00000000-0000-0000-0000-00000000aaaa", event: "workflow_job", action: "queued", jobId: 5, payload: JSON.stringify(payload) });
      await pipeline.handleDelivery("00000000-0000-0000-0000-00000000aaaa");
      const deadline = Date.now() + 30_000;
      while (!reports.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(reports.length, 1, "one check run");
      const [report] = reports;
      assert.equal(report.sha, sha);
      for (const leak of ["pve-secret-07", "/var/lib/vz", "/vms/", "Permission check failed", "VM.Clone", stateDir]) {
        assert.ok(!report.summary.includes(leak) && !report.title.includes(leak), `the check run does not publish ${leak}`);
      }
      const ref = /reference `([^`]+)`/.exec(report.summary)?.[1];
      assert.ok(ref, `the summary gives a reference: ${report.summary}`);
      assert.ok(ref.startsWith(store.runners()[0].name + "/"), "the reference starts with the runner's name");
      const logged = lines.find((l) => l.ref === ref && l.lastError === secretError);
      assert.ok(logged, "the log line with that reference carries the full error");
    } finally {
      await pipeline.stop();
      store.close();
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
