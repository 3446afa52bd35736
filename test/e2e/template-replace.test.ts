// Blue/green template replacement, end to end: a new template is made while a burst of jobs runs
// (here by the simulator directly, as `pct template` would leave it), the listener is told through
// its admin API as `pve-runners template deploy --replace` does, every job is served, runners
// placed after the switch are clones of the new template, and the old one is destroyed once its
// last linked clone is gone.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { startE2E, waitFor, containersLeft, type E2E, type E2EOptions } from "./harness.js";

const LIVE = ["requested", "provisioning", "warm", "booting", "idle", "busy", "done", "destroying"] as const;

async function admin(e: E2E, method: "GET" | "POST", path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(e.service.adminUrl! + path, {
    method,
    headers: { authorization: `Bearer ${e.world.secrets.adminToken}`, ...(method === "POST" ? { "content-type": "application/json" } : {}) },
    body: method === "POST" ? JSON.stringify(body ?? {}) : undefined,
  });
  return { status: res.status, body: await res.json() };
}

const burst = (e: E2E, n: number, durationMs: number) =>
  Promise.all(Array.from({ length: n }, () => e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs }).then((j) => j.id)));

const template = (e: E2E, vmid: number) => e.world.pve.containers().find((c) => c.vmid === vmid && c.template);

async function withE2E(o: E2EOptions, fn: (e: E2E) => Promise<void>): Promise<void> {
  // 0.1: GitHub's 10 s webhook deadline scales too, and must hold on a loaded machine.
  const e = await startE2E({ timeScale: 0.1, ...o, overrides: { templateRetireMs: 200, ...o.overrides } });
  try {
    await fn(e);
  } finally {
    await e.stop();
  }
}

/** Every job completed; on a timeout the error says where jobs and runners stand. */
async function allCompleted(e: E2E, ids: number[], timeoutMs = 120_000): Promise<void> {
  let asked = Date.now();
  const done = async () => {
    if (ids.every((id) => e.world.github.jobs().find((j) => j.id === id)?.status === "completed")) return true;
    // A webhook lost to the deadline on a loaded machine: what the sweeper's schedule would do.
    if (Date.now() - asked > 10_000) {
      asked = Date.now();
      await e.service.recover();
    }
    return false;
  };
  await waitFor("all jobs completed", done, timeoutMs).catch((err: Error) => {
    const jobs = e.world.github.jobs().filter((j) => ids.includes(j.id)).map((j) => [j.id, j.status, j.runnerName, e.service.store.getJob(j.id)?.status ?? "not in the store"]);
    throw new Error(`${err.message}: jobs ${JSON.stringify(jobs)} runners ${JSON.stringify(e.service.store.runners([...LIVE]).map((r) => [r.name, r.state, r.template, r.madeForJob, r.lastError]))}`);
  });
}

/** No live runner left; on a timeout the error says which are and where they stand. */
async function noRunnerLeft(e: E2E, timeoutMs = 60_000): Promise<void> {
  await waitFor("no runner left", () => e.service.store.runners([...LIVE]).length === 0, timeoutMs).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(e.service.store.runners([...LIVE]).map((r) => [r.name, r.state, r.template, r.lastError]))}`);
  });
}

function assertAllServed(e: E2E, ids: number[]): void {
  for (const id of ids) {
    const j = e.world.github.jobs().find((x) => x.id === id)!;
    assert.equal(j.status, "completed", `job ${id}`);
    assert.equal(j.conclusion, "success", `job ${id}`);
  }
  assert.deepEqual(e.service.store.runners(["failed"]).map((r) => `${r.name}: ${r.lastError}`), [], "no runner failed");
}

describe("blue/green template replacement", { concurrency: 1 }, () => {
  test("replacing the template during a burst: every job served, new runners from the new template, the old one destroyed after its last clone, kept across a restart", () =>
    withE2E(
      {
        configPatch: (c) => {
          c.limits = { maxRunners: 12, maxRunnersPerRepo: 12 };
          // A copy: the world's label sets are one module-level object shared by every test in this file.
          c.labelSets = (c.labelSets as object[]).map((x) => ({ ...x }));
          c.labelSets[0].maxRunners = 12;
          c.labelSets[0].warm = 1;
        },
      },
      async (e) => {
        // Long jobs: the first runners are still busy (linked clones of 9000) when the switch comes.
        const before = await burst(e, 3, 60_000);
        await waitFor("a busy runner cloned from 9000", () => e.service.store.runners(["busy"]).find((r) => r.template === "pve/9000"));
        e.world.pve.addTemplate("pve", 9001);
        const suggested = await admin(e, "GET", "/api/templates/vmid?copy=pve/9000");
        assert.equal(suggested.status, 200, JSON.stringify(suggested.body));
        assert.equal(suggested.body.vmid, 9002, "the first free vmid above the old template (9001 is taken now)");

        const switchedAt = Date.now();
        const r = await admin(e, "POST", "/api/templates/replace", { from: "pve/9000", vmid: 9001 });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.deepEqual(r.body, { from: "pve/9000", to: "pve/9001", node: "pve" });
        const after = await burst(e, 3, 5_000);

        // While clones of it live, the old template stays (PVE would refuse to delete it anyway).
        assert.ok(e.service.store.runnersOnTemplate("pve/9000") > 0);
        assert.ok(template(e, 9000), "the old template is kept while runners depend on it");

        await allCompleted(e, [...before, ...after]);
        assertAllServed(e, [...before, ...after]);

        const placedAfter = e.service.store.runners().filter((x) => x.createdAt > switchedAt && x.template !== null);
        assert.ok(placedAfter.length >= 3, `runners were made after the switch (${placedAfter.length})`);
        for (const x of placedAfter) assert.equal(x.template, "pve/9001", `${x.name}, made after the switch, is a clone of the new template`);
        const servedAfter = after.map((id) => e.service.store.getRunner(e.world.github.jobs().find((j) => j.id === id)!.runnerName!)!);
        assert.ok(servedAfter.some((x) => x.template === "pve/9001"), "jobs queued after the switch ran on clones of the new template");

        // The warm member that replaced the used one is a clone of 9001; nothing else is left.
        await waitFor("the old template destroyed", () => !e.world.pve.containers().some((c) => c.vmid === 9000), 60_000);
        assert.ok(template(e, 9001), "the new template stays");
        await waitFor("only the warm member left", () => e.service.store.runners([...LIVE]).every((x) => x.state === "warm" && x.template === "pve/9001"));
        // The container goes with PVE's destroy task; the listener records it once it has waited for that task.
        await waitFor("the old template recorded as destroyed", () => e.service.store.templateReplacements()[0]?.destroyedAt != null, 30_000);
        assert.equal(e.service.store.templateReplacements().length, 1);

        // A restart keeps the new template: the config still names 9000.
        await e.restart();
        assert.deepEqual(e.service.templates.effective().map((c) => c.key), ["pve/9001"]);
        const late = await burst(e, 2, 5_000);
        await allCompleted(e, late, 60_000);
        assertAllServed(e, late);
        for (const x of e.service.store.runners().filter((x) => x.template !== null && x.createdAt > switchedAt)) assert.equal(x.template, "pve/9001");
        // No leak: the containers left are the warm member(s), clones of the new template.
        await waitFor("only warm members left", () => e.service.store.runners([...LIVE]).every((x) => x.state === "warm"));
        const warm = e.service.store.runners([...LIVE]);
        assert.ok(warm.every((x) => x.template === "pve/9001"));
        assert.deepEqual(await containersLeft(e), warm.map((x) => x.vmid).sort());
      },
    ));

  test("a vmid that is not one of our templates on the copy's node is refused, and nothing changes", () =>
    withE2E({}, async (e) => {
      e.world.pve.addTemplate("pve", 9101, { pool: null });
      e.world.pve.addTemplate("pve", 9102, { tags: "something-else" });
      const cases: Array<[unknown, RegExp]> = [
        [{ from: "pve/9000", vmid: 9101 }, /does not exist in pool ci/],
        [{ from: "pve/9000", vmid: 9102 }, /has no pve-runners-template tag/],
        [{ from: "pve/9000", vmid: 9999 }, /does not exist/],
        [{ from: "pve/8000", vmid: 9101 }, /not an active template copy/],
        [{ from: "pve/9000", vmid: 100_050 }, /runners' range/],
        [{ from: "pve/9000", vmid: 9000 }, /already recorded/],
      ];
      for (const [body, why] of cases) {
        const r = await admin(e, "POST", "/api/templates/replace", body);
        assert.equal(r.status, 409, JSON.stringify(body));
        assert.match(r.body.error, why);
      }
      const malformed = await admin(e, "POST", "/api/templates/replace", { from: "pve/9000", vmid: "9101" });
      assert.equal(malformed.status, 400);
      assert.deepEqual(e.service.store.templateReplacements(), []);
      assert.deepEqual(e.service.templates.effective().map((c) => c.key), ["pve/9000"]);
      assert.ok(template(e, 9000) && template(e, 9101) && template(e, 9102), "nothing was destroyed");
    }));

  test("per-node copies: replacing one copy leaves the other serving; a template on another node is refused", () =>
    withE2E(
      {
        pve: { nodes: [{ name: "pve" }, { name: "pve2" }], templates: [{ node: "pve", vmid: 9000 }, { node: "pve2", vmid: 9010 }] },
        configPatch: (c) => {
          delete c.proxmox.templateVmid;
          c.proxmox.templates = [{ node: "pve", vmid: 9000 }, { node: "pve2", vmid: 9010 }];
          c.delivery = { mode: "env" };
          c.limits = { maxRunners: 12, maxRunnersPerRepo: 12 };
          // A copy: the world's label sets are one module-level object shared by every test in this file.
          c.labelSets = (c.labelSets as object[]).map((x) => ({ ...x }));
          c.labelSets[0].maxRunners = 12;
        },
      },
      async (e) => {
        const before = await burst(e, 3, 60_000);
        await waitFor("a busy runner on pve2", () => e.service.store.runners(["busy"]).find((r) => r.template === "pve2/9010"));
        e.world.pve.addTemplate("pve", 9012);
        e.world.pve.addTemplate("pve2", 9011);
        const wrongNode = await admin(e, "POST", "/api/templates/replace", { from: "pve2/9010", vmid: 9012 });
        assert.equal(wrongNode.status, 409);
        assert.match(wrongNode.body.error, /is on pve, not on pve2/);
        const switchedAt = Date.now();
        const r = await admin(e, "POST", "/api/templates/replace", { from: "pve2/9010", vmid: 9011 });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        const view = await admin(e, "GET", "/api/templates");
        assert.deepEqual(view.body.copies.map((c: { configured: string; active: string }) => [c.configured, c.active]), [["pve/9000", "pve/9000"], ["pve2/9010", "pve2/9011"]]);
        const after = await burst(e, 3, 5_000);
        await allCompleted(e, [...before, ...after]);
        assertAllServed(e, [...before, ...after]);
        for (const x of e.service.store.runners().filter((x) => x.createdAt > switchedAt && x.template !== null)) assert.ok(["pve/9000", "pve2/9011"].includes(x.template!), `${x.name}: ${x.template}`);
        await waitFor("pve2's old copy destroyed", () => !e.world.pve.containers().some((c) => c.vmid === 9010), 60_000);
        assert.ok(template(e, 9000) && template(e, 9011), "pve's copy and pve2's new copy stay");
        await noRunnerLeft(e);
        assert.deepEqual(e.world.pve.containers().filter((c) => !c.template).map((c) => c.vmid), []);
      },
    ));
});
