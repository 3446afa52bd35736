// The sweeper on the world: every leak it exists for is made for real, then one pass must end it.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pino } from "pino";
import { startE2E, waitFor, settled, containersLeft, registrationsLeft, type E2E } from "./harness.js";
import { ProxmoxApi } from "../../listener/adapters/proxmox/proxmox.js";
import { GitHubAdapter } from "../../listener/adapters/github/github.js";
import { SIM_NODE, SIM_TEMPLATE_VMID, SIM_TOKENS } from "../../sim/pve/index.js";

const quiet = pino({ level: "silent" });

async function withE2E(fn: (e: E2E) => Promise<void>, o: Parameters<typeof startE2E>[0] = {}): Promise<void> {
  // No cron here: each test runs its passes by hand. Grace 0: nothing is "mid-creation" for long.
  const e = await startE2E({ ...o, overrides: { sweepGraceMs: 0, ...o.overrides } });
  try {
    await fn(e);
  } finally {
    await e.stop();
  }
}

const rootApi = (e: E2E) => new ProxmoxApi({ endpoint: e.world.pve.url + "/", token: `${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}`, logger: quiet, pollMs: 20 });

/** A runner-like container made behind the listener's back (as a crash between clone and record would). */
async function cloneBehindOurBack(e: E2E, hostname: string, tags: string | null, description?: string): Promise<number> {
  const api = rootApi(e);
  const vmid = Number(await api.request<string>("GET", "/cluster/nextid"));
  const upid = await api.request<string>("POST", `/nodes/${SIM_NODE}/lxc/${SIM_TEMPLATE_VMID}/clone`, { newid: vmid, hostname, pool: "ci", description });
  await api.waitTask(SIM_NODE, upid);
  // The template's tags are copied by the clone; bpg's config PUT replaces them.
  await api.setConfig(SIM_NODE, vmid, tags === null ? { delete: "tags" } : { tags });
  await api.start(SIM_NODE, vmid);
  return vmid;
}

describe("sweeper on the world", { concurrency: 1 }, () => {
  test("an orphan container of ours is destroyed through the API; foreign runner-* containers are left alone", () =>
    withE2E(async (e) => {
      const ours = `pve-runners-ctl-${e.service.store.controllerId()}`;
      const orphan = await cloneBehindOurBack(e, "runner-0rphan01", `pve-runners;${ours};pve-runners-runner-0rphan01`);
      const foreign = await cloneBehindOurBack(e, "runner-notours", "someone-else");
      // Another pve-runners installation on this cluster (or ours before a lost store): not ours.
      const otherInstall = await cloneBehindOurBack(e, "runner-0ther001", "pve-runners;pve-runners-ctl-ffffffffffffffff;pve-runners-runner-0ther001");
      const untaggedNamed = await cloneBehindOurBack(e, "runner-n0tag001", "pve-runners");
      // A clone cut short (terraform interrupted) has the clone call's description but no tags yet.
      const cutShort = await cloneBehindOurBack(e, "runner-cut00001", null, `pve-runners ephemeral runner runner-cut00001 (label set linux-small, ${ours})`);
      e.service.store.insertRunner({ name: "runner-cut00001", labelSet: "linux-small", scope: "repo:acme/app", madeForJob: null });
      e.service.store.setRunnerState("runner-cut00001", "failed", {});
      const dry = await e.service.sweep({ dryRun: true });
      assert.deepEqual(dry.actions.map((a) => a.kind), ["destroy-container", "destroy-container"]);
      const all = [orphan, foreign, otherInstall, untaggedNamed, cutShort].sort();
      assert.deepEqual((await containersLeft(e)).sort(), all, "a dry run changes nothing");
      const report = await e.service.sweep();
      const destroyed = report.actions.map((a) => (a.kind === "destroy-container" && a.via === "api" ? a.vmid : -1)).sort();
      assert.deepEqual(destroyed, [orphan, cutShort].sort(), JSON.stringify(report.actions));
      assert.deepEqual(report.errors, []);
      assert.deepEqual((await containersLeft(e)).sort(), [foreign, otherInstall, untaggedNamed].sort(), "only containers marked with our controller id are ours");
      assert.equal(report.foreign, 2, "the two tagged pve-runners by someone else are counted");
    }));

  test("a lost `completed`: the guest powers off after its job, the sweep finishes the runner and it is destroyed", () =>
    withE2E(async (e) => {
      // 100 s of job time, scaled to 2 s: long enough to see the runner busy and cut the webhooks.
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 100_000 });
      await waitFor("runner busy", () => e.service.store.runners(["busy"])[0], 60_000, 20);
      e.world.github.setFaults({ webhook: { dropRate: 1 } }); // `completed` never arrives
      await waitFor("job completed at GitHub", () => e.world.github.jobs().find((j) => j.id === job.id)?.status === "completed");
      const runner = e.service.store.runners(["busy"])[0];
      assert.ok(runner, "without the webhook the runner still looks busy");
      await waitFor("guest powered off", () => e.world.pve.container(runner.vmid!)?.status === "stopped", 30_000);
      const report = await e.service.sweep();
      assert.ok(report.actions.some((a) => a.kind === "mark-done" && a.runner === runner.name), JSON.stringify(report.actions));
      await settled(e, [job.id]);
      assert.deepEqual(await containersLeft(e), []);
      assert.deepEqual(registrationsLeft(e), []);
    }));

  test("a registration of ours with no runner or container is deleted, a foreign runner-* one is not; the stack dir of a runner never applied is removed", () =>
    withE2E(async (e) => {
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 500 });
      await settled(e, [job.id]); // the scope repo:acme/app is now known
      const gh = new GitHubAdapter({ appId: e.world.github.appId, privateKey: e.world.secrets.githubAppPrivateKey, baseUrl: e.world.github.url, apiVersion: "2022-11-28", runnerGroupId: 1, logger: quiet, throttle: false });
      const repo = { kind: "repo", owner: "acme", repo: "app" } as const;
      await gh.generateJitConfig(repo, "runner-stale0001", ["self-hosted", "linux", `pve-runners-ctl-${e.service.store.controllerId()}`]);
      // Another team's runner with a name like ours: neither our label nor an id we recorded.
      await gh.generateJitConfig(repo, "runner-xyz", ["self-hosted", "linux"]);
      const ghost = join(e.world.config.stateDir, "runners", "runner-ghost001", "stacks", "runner");
      await mkdir(ghost, { recursive: true });
      await writeFile(join(ghost, "cdk.tf.json"), "{}");
      assert.deepEqual(registrationsLeft(e).sort(), ["runner-stale0001", "runner-xyz"]);
      const report = await e.service.sweep();
      const kinds = report.actions.map((a) => `${a.kind}:${"name" in a ? a.name : "dir" in a ? a.dir.split("/").at(-1) : ""}`).sort();
      assert.deepEqual(kinds, ["delete-registration:runner-stale0001", "remove-stack:runner-ghost001"]);
      assert.deepEqual(registrationsLeft(e), ["runner-xyz"], "the foreign registration is left alone");
      assert.deepEqual(await readdir(join(e.world.config.stateDir, "runners")), []);
    }));

  test("runners.namePrefix names the runners (through the root delivery helper too); each registration and container carries our marker", () =>
    withE2E(
      async (e) => {
        const marker = `pve-runners-ctl-${e.service.store.controllerId()}`;
        const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 100_000 });
        const runner = await waitFor("runner busy", () => e.service.store.runners(["busy"])[0], 60_000, 20);
        assert.match(runner.name, /^ci-a-[0-9a-f]{8}$/);
        const reg = e.world.github.runners().find((r) => r.name === runner.name)!;
        assert.ok(reg.labels.some((l) => l.name === marker), JSON.stringify(reg.labels));
        assert.ok(e.world.pve.container(runner.vmid!)!.tags.includes(marker));
        assert.equal(e.world.github.jobs().find((j) => j.id === job.id)?.runnerName, runner.name, "the extra label changes no assignment");
        await settled(e, [job.id]);
        assert.deepEqual(await containersLeft(e), []);
        assert.deepEqual(registrationsLeft(e), []);
      },
      { configPatch: (c) => (c.runners = { namePrefix: "ci-a-" }) },
    ));

  test("a runner that never comes online is destroyed at the boot timeout and the job is served by another", () =>
    withE2E(
      async (e) => {
        e.world.pve.setFaults({ next: { op: "guest", count: 1 } });
        const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 800 });
        await settled(e, [job.id], 120_000);
        const runners = e.service.store.runners();
        assert.ok(runners.some((r) => r.lastError === "boot timeout"), JSON.stringify(runners.map((r) => [r.name, r.state, r.lastError])));
        const done = e.world.github.jobs().find((j) => j.id === job.id)!;
        assert.equal(done.conclusion, "success");
        assert.notEqual(e.service.store.getRunner(done.runnerName!)?.lastError, "boot timeout");
        assert.deepEqual(await containersLeft(e), []);
        assert.deepEqual(registrationsLeft(e), []);
      },
      { configPatch: (c) => (c.timeouts = { ...c.timeouts, boot: 4 }) },
    ));
});
