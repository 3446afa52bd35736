// Placement on a Proxmox cluster, end to end: template copies on several nodes, each its own clone
// lane; per-node caps and free memory honoured; a node that is down is left out.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { PVE_RUNNERS_ACLS, type TokenDef } from "../../sim/pve/index.js";
import { startE2E, waitFor, settled, type E2E, type E2EOptions } from "./harness.js";

const GiB = 1024 ** 3;
const TEMPLATES = [
  { node: "pve", vmid: 9000 },
  { node: "pve2", vmid: 9010 },
  { node: "pve3", vmid: 9020 },
];
/** The documented least privilege plus `pveum-setup --placement`: Sys.Audit on /nodes. */
const PLACEMENT_TOKEN: TokenDef = { id: "pve-runners@pve!placement", secret: "0d8b5a6e-7c1f-4e2a-9b3d-5f6a7b8c9d0e", acls: [...PVE_RUNNERS_ACLS(), { path: "/nodes", privs: ["Sys.Audit"], propagate: true }] };

function clusterOptions(o: { nodes?: Array<{ name: string; memoryBytes?: number }>; nodeLimits?: unknown[]; token?: TokenDef } = {}): E2EOptions {
  return {
    listenerToken: o.token,
    pve: { nodes: o.nodes ?? [{ name: "pve" }, { name: "pve2" }, { name: "pve3" }], templates: TEMPLATES },
    configPatch: (c) => {
      delete c.proxmox.templateVmid;
      c.proxmox.templates = TEMPLATES;
      if (o.nodeLimits) c.proxmox.nodes = o.nodeLimits;
      c.delivery = { mode: "env" }; // pct reaches only the listener's own node
      c.limits = { maxRunners: 12, maxRunnersPerRepo: 12 };
      c.labelSets[0].maxRunners = 12;
    },
  };
}

async function withE2E(o: E2EOptions, fn: (e: E2E) => Promise<void>): Promise<void> {
  const e = await startE2E(o);
  try {
    await fn(e);
  } finally {
    await e.stop();
  }
}

const jobs = (e: E2E, n: number) => Promise.all(Array.from({ length: n }, () => e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1500 }).then((j) => j.id)));
const nodesUsed = (e: E2E) => {
  const out: Record<string, number> = {};
  for (const r of e.service.store.runners()) if (r.node) out[r.node] = (out[r.node] ?? 0) + 1;
  return out;
};
const leftAnywhere = (e: E2E) => e.world.pve.containers().filter((c) => !c.template);

describe("placement on a cluster, end to end", { concurrency: 1 }, () => {
  test("a burst spreads over every node's template copy; every job is served, nothing is left on any node", () =>
    withE2E(clusterOptions(), async (e) => {
      const ids = await jobs(e, 9);
      await settled(e, ids);
      const used = nodesUsed(e);
      assert.deepEqual(Object.keys(used).sort(), ["pve", "pve2", "pve3"], JSON.stringify(used));
      for (const n of Object.values(used)) assert.ok(n >= 2, `each lane took its share: ${JSON.stringify(used)}`);
      // Runners dropped before placement (their job went to another runner first) have no node.
      const placed = e.service.store.runners().filter((r) => r.node !== null);
      const copyOn = (node: string) => TEMPLATES.find((t) => t.node === node)!;
      for (const r of placed) assert.equal(r.template, `${r.node}/${copyOn(r.node!).vmid}`, `${r.name} was cloned from the copy on its own node`);
      assert.deepEqual(leftAnywhere(e), []);
    }));

  test("a node that is down gets no runner; the others serve every job", () =>
    withE2E(clusterOptions(), async (e) => {
      e.world.pve.setNodeOnline("pve2", false);
      const ids = await jobs(e, 6);
      await settled(e, ids);
      const used = nodesUsed(e);
      assert.equal(used.pve2 ?? 0, 0, JSON.stringify(used));
      assert.ok((used.pve ?? 0) > 0 && (used.pve3 ?? 0) > 0, JSON.stringify(used));
      assert.deepEqual(leftAnywhere(e), []);
    }));

  test("a node that goes down mid-clone: its runners are placed again elsewhere, every job is served, and what it left is swept once it is back", () =>
    withE2E(
      {
        ...clusterOptions(),
        // Clones of 2 s (scaled): long enough to take the node down under one.
        pve: { nodes: [{ name: "pve" }, { name: "pve2" }, { name: "pve3" }], templates: TEMPLATES, latencyMs: { cloneLinked: 100_000 } },
        overrides: { sweepGraceMs: 0 },
      },
      async (e) => {
        const ids = await jobs(e, 6);
        const victim = await waitFor("a runner cloning on pve2", () => e.service.store.runners(["provisioning"]).find((r) => r.node === "pve2"));
        e.world.pve.setNodeOnline("pve2", false);
        await waitFor("every job completed", () => ids.every((id) => e.world.github.jobs().find((j) => j.id === id)?.status === "completed"), 120_000);
        for (const id of ids) assert.equal(e.world.github.jobs().find((j) => j.id === id)?.conclusion, "success");
        const servedOn = new Set(ids.map((id) => e.service.store.getRunner(e.world.github.jobs().find((j) => j.id === id)!.runnerName!)!.node));
        assert.ok(!servedOn.has("pve2"), `no job ran on the node that went down (${[...servedOn].join(", ")})`);
        // GitHub has every job completed; the listener applies a delivery a few ms after it arrives.
        // No runner may stay busy, the one caught cloning on pve2 included (placed again, it may
        // well have run a job elsewhere).
        await waitFor("no runner busy any more", () => e.service.store.runners(["busy"]).length === 0, 30_000);
        assert.notEqual(e.service.store.getRunner(victim.name)?.state, "busy");

        e.world.pve.setNodeOnline("pve2", true);
        await waitFor("nothing left anywhere", async () => {
          await e.service.sweep();
          return leftAnywhere(e).length === 0 && e.service.store.runners(["requested", "provisioning", "warm", "booting", "idle", "busy", "done", "destroying"]).length === 0;
        }, 120_000, 500);
      },
    ));

  test("per-node caps hold at every moment of a burst", () =>
    withE2E(clusterOptions({ nodeLimits: [{ name: "pve", maxRunners: 1 }, { name: "pve3", maxRunners: 2 }] }), async (e) => {
      let worst = { pve: 0, pve3: 0 };
      const watch = setInterval(() => {
        const live = e.service.store.runners(["requested", "provisioning", "booting", "idle", "busy", "done", "destroying"]);
        worst = { pve: Math.max(worst.pve, live.filter((r) => r.node === "pve").length), pve3: Math.max(worst.pve3, live.filter((r) => r.node === "pve3").length) };
      }, 10);
      try {
        const ids = await jobs(e, 8);
        await settled(e, ids);
      } finally {
        clearInterval(watch);
      }
      assert.ok(worst.pve <= 1 && worst.pve3 <= 2, JSON.stringify(worst));
      assert.ok(worst.pve >= 1 && worst.pve3 >= 1, `the capped nodes were used, within their caps: ${JSON.stringify(worst)}`);
      assert.ok((nodesUsed(e).pve2 ?? 0) >= 5, JSON.stringify(nodesUsed(e)));
    }));

  test("with Sys.Audit on /nodes, a node without the memory for another runner gets none beyond what fits", () =>
    withE2E(
      clusterOptions({
        token: PLACEMENT_TOKEN,
        // pve2: 6 GiB, less 1 GiB headroom: two 2 GiB runners fit, a third does not.
        nodes: [{ name: "pve", memoryBytes: 128 * GiB }, { name: "pve2", memoryBytes: 6 * GiB }, { name: "pve3", memoryBytes: 128 * GiB }],
      }),
      async (e) => {
        let worst = 0;
        const watch = setInterval(() => {
          worst = Math.max(worst, e.service.store.runners(["requested", "provisioning", "booting", "idle", "busy", "done", "destroying"]).filter((r) => r.node === "pve2").length);
        }, 10);
        try {
          const ids = await jobs(e, 12);
          await settled(e, ids, 120_000);
        } finally {
          clearInterval(watch);
        }
        assert.ok(worst >= 1 && worst <= 2, `pve2 held at most 2 runners at once (saw ${worst})`);
        await waitFor("nothing left", () => leftAnywhere(e).length === 0);
      },
    ));
});
