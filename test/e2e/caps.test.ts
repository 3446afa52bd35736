// Caps hold under a burst: global, per-repository and per-label-set limits are never exceeded,
// and every job is still served, one wave after another.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startE2E, settled } from "./harness.js";

test("under a burst of 12 jobs the global, per-repo and per-set caps are never exceeded", async () => {
  const e = await startE2E({
    configPatch: (c) => {
      c.limits = { maxRunners: 4, maxRunnersPerRepo: 3 };
      c.labelSets = c.labelSets.map((s: { name: string }) => ({ ...s, maxRunners: s.name === "linux-large" ? 1 : 3 }));
    },
  });
  const peak = { all: 0, repo: new Map<string, number>(), set: new Map<string, number>() };
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const live = e.service.store.runners(["requested", "provisioning", "booting", "idle", "busy", "done", "destroying"]);
      peak.all = Math.max(peak.all, live.length);
      const jobs = new Map(e.service.store.jobs().map((j) => [j.jobId, j.repo]));
      const by = (key: (r: (typeof live)[number]) => string | undefined, m: Map<string, number>) => {
        const n = new Map<string, number>();
        for (const r of live) {
          const k = key(r);
          if (k) n.set(k, (n.get(k) ?? 0) + 1);
        }
        for (const [k, v] of n) m.set(k, Math.max(m.get(k) ?? 0, v));
      };
      by((r) => (r.madeForJob ? jobs.get(r.madeForJob) : undefined), peak.repo);
      by((r) => r.labelSet, peak.set);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  try {
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) {
      const large = i % 4 === 0;
      ids.push((await e.world.github.createJob({ repo: i % 3 ? "acme/app" : "acme/infra", labels: large ? ["self-hosted", "linux", "x64", "large"] : ["self-hosted", "linux"], durationMs: 1000 })).id);
    }
    await settled(e, ids, 240_000);
    sampling = false;
    await sampler;
    assert.ok(peak.all <= 4 && peak.all >= 2, `global peak ${peak.all}`);
    for (const [repo, n] of peak.repo) assert.ok(n <= 3, `${repo} peak ${n}`);
    assert.ok((peak.set.get("linux-large") ?? 0) <= 1, `linux-large peak ${peak.set.get("linux-large")}`);
    for (const id of ids) assert.equal(e.world.github.jobs().find((j) => j.id === id)?.conclusion, "success");
  } finally {
    sampling = false;
    await e.stop();
  }
});
