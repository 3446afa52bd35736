// A runner's JIT config is minted while its container starts (issue 17: the start task and GitHub's
// answer overlap instead of adding up); a start that fails deletes the registration minted for it.
import { describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { Store } from "../../../listener/store/store.js";
import { Pipeline, type PipelineSettings } from "../../../listener/lifecycle/pipeline.js";
import type { GitHubAdapter } from "../../../listener/adapters/github/github.js";
import { testPipelineSettings } from "../../fixtures/pipeline-settings.js";

const NAME = "runner-0b007ed0";

function settings(): PipelineSettings {
  return testPipelineSettings({ vmidsLast: 100999, timeouts: { bootMs: 60_000, idleMs: 60_000 } });
}

async function boot(ctx: TestContext, startFails: boolean) {
  const store = new Store(":memory:");
  const events: string[] = [];
  let releaseStart!: () => void;
  const startGate = new Promise<void>((r) => (releaseStart = r));
  const github = {
    async generateJitConfig() {
      events.push("mint");
      // Mirrors a start that takes longer than the mint: the start ends only once minting began.
      releaseStart();
      return { runnerId: 42, encodedJitConfig: "Zm9v" };
    },
    async deleteRunner(_s: unknown, id: number) {
      events.push(`delete ${id}`);
      return "deleted" as const;
    },
    async getRunner() {
      return { status: "online", busy: false };
    },
  };
  const startContainer = async () => {
    events.push("start begins");
    // Without the overlap the mint only comes after the start: give up waiting then.
    await Promise.race([startGate, new Promise((r) => setTimeout(r, 300))]);
    events.push("start ends");
    if (startFails) throw new Error("CT 100123 is locked (create)");
  };
  const delivery = {
    startsContainer: false,
    async deliver() {
      events.push("deliver");
    },
  };
  const pipeline = new Pipeline({
    store, github: github as unknown as GitHubAdapter, startContainer, delivery, terraform: { async destroy() {} } as never,
    settings: settings(), logger: pino({ level: "silent" }),
  });
  pipeline.setDraining(true);
  store.insertRunner({ name: NAME, labelSet: "linux", scope: "repo:acme/app", madeForJob: null });
  store.assignVmid(NAME, 100123);
  store.setPlacement(NAME, "pve", "pve/9000");
  store.setRunnerState(NAME, "booting", {});
  ctx.after(async () => {
    await pipeline.stop();
    store.close();
  });
  pipeline.nudge(NAME);
  await pipeline.idle();
  return { events, runner: store.getRunner(NAME)! };
}

describe("booting: the JIT config is minted while the container starts", () => {
  test("minted before the start ends; delivered after it", async (ctx) => {
    const t = await boot(ctx, false);
    assert.ok(t.events.indexOf("mint") >= 0 && t.events.indexOf("mint") < t.events.indexOf("start ends"), t.events.join(", "));
    assert.equal(t.events.indexOf("deliver"), t.events.indexOf("start ends") + 1, t.events.join(", "));
    assert.equal(t.runner.githubRunnerId, 42);
  });

  test("a failed start deletes the registration minted for it", async (ctx) => {
    const t = await boot(ctx, true);
    assert.ok(t.events.indexOf("mint") >= 0 && t.events.indexOf("mint") < t.events.indexOf("start ends"), t.events.join(", "));
    assert.deepEqual(t.events.slice(-2), ["start ends", "delete 42"]);
    assert.ok(!t.events.includes("deliver"));
    assert.equal(t.runner.state, "failed", "given up after its one attempt");
  });
});
