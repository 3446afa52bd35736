// A JIT mint answered 409 (the name is registered): the existing registration is deleted and the
// mint retried only when it is ours (it carries the controller label we mint with). Another team's
// runner that merely has the name is left alone.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { GitHubSim } from "../../../../sim/github/index.js";
import { GitHubAdapter } from "../../../../listener/adapters/github/github.js";

describe("JIT name clash", () => {
  const sim = new GitHubSim({ timeScale: 0.01 });
  let gh: GitHubAdapter;
  const repo = { kind: "repo", owner: "acme", repo: "app" } as const;
  const ours = ["self-hosted", "linux", "pve-runners-ctl-0123456789abcdef"];
  before(async () => {
    await sim.start(0, "127.0.0.1");
    gh = new GitHubAdapter({ appId: sim.appId, privateKey: sim.appPrivateKeyPem, baseUrl: sim.url, apiVersion: "2022-11-28", runnerGroupId: 1, logger: pino({ level: "silent" }), throttle: false, retries: 0 });
  });
  after(() => sim.stop());

  test("our own stale registration is replaced", async () => {
    const first = await gh.generateJitConfig(repo, "runner-0000aaaa", ours);
    const again = await gh.generateJitConfig(repo, "runner-0000aaaa", ours);
    assert.notEqual(again.runnerId, first.runnerId);
    assert.deepEqual((await gh.listRunners(repo)).filter((r) => r.name === "runner-0000aaaa").map((r) => r.id), [again.runnerId]);
  });

  test("a foreign registration with the same name is not deleted", async () => {
    const foreign = await gh.generateJitConfig(repo, "runner-0000bbbb", ["self-hosted", "linux"]);
    await assert.rejects(gh.generateJitConfig(repo, "runner-0000bbbb", ours), /runner name runner-0000bbbb is taken by a registration that is not ours/);
    assert.deepEqual((await gh.listRunners(repo)).filter((r) => r.name === "runner-0000bbbb").map((r) => r.id), [foreign.runnerId]);
  });
});
