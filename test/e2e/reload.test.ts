// Config reload (SIGHUP → Service.reload): what can change live does, the rest is named.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startE2E, settled, waitFor } from "./harness.js";

test("a reload widens the allowlist at once and names the sections that need a restart", async () => {
  const e = await startE2E({ configPatch: (c) => (c.allow = { repos: ["acme/app"] }) });
  try {
    const before = await e.world.github.createJob({ repo: "acme/infra", labels: ["self-hosted", "linux"], durationMs: 500 });
    await e.world.github.settle();
    await waitFor("job recorded", () => e.service.store.getJob(before.id));
    assert.equal(e.service.store.getJob(before.id)?.labelSet, null, "not allowed yet");

    const next = structuredClone(e.world.config);
    next.allow = { repos: ["acme/app"], orgs: ["acme"], any: false };
    next.timeouts = { ...next.timeouts, idle: 123 };
    next.proxmox = { ...next.proxmox, vlan: 31 };
    const r = e.service.reload(next);
    assert.deepEqual(r.applied.sort(), ["allow", "timeouts"]);
    assert.deepEqual(r.needRestart, ["proxmox"]);

    const after = await e.world.github.createJob({ repo: "acme/infra", labels: ["self-hosted", "linux"], durationMs: 500 });
    await settled(e, [after.id]);
    const runner = e.service.store.getRunner(e.world.github.jobs().find((j) => j.id === after.id)!.runnerName!);
    assert.ok(runner, "served after the reload");
    e.world.github.cancelJob(before.id);
  } finally {
    await e.stop();
  }
});

test("a reload that drops a label set with live runners is refused whole", async () => {
  const e = await startE2E();
  try {
    await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 100_000 });
    await waitFor("a live runner", () => e.service.store.runners(["booting", "idle", "busy"])[0]);
    const next = structuredClone(e.world.config);
    next.labelSets = next.labelSets.filter((s) => s.name !== "linux-small");
    next.limits = { maxRunners: 1, maxRunnersPerRepo: 1 };
    const r = e.service.reload(next);
    assert.match(r.refused ?? "", /linux-small still have live runners/);
    assert.deepEqual(r.applied, []);
  } finally {
    await e.stop();
  }
});
