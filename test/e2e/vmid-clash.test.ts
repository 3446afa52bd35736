// A vmid taken by another guest between the listener's check and the clone (someone else's
// `pct create`, another tool) is never adopted: the clone gate refuses the clone, the runner gets a
// fresh vmid at once (not counted as a failed attempt), the job is served, and the other guest keeps
// its hostname, description and network.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SIM_NODE, SIM_TEMPLATE_VMID, SIM_TOKENS } from "../../sim/pve/index.js";
import { startE2E, settled, containersLeft } from "./harness.js";
import { captureLog } from "../fixtures/terraform/helpers.js";

test("a vmid taken by another guest at clone time: refused, a fresh vmid, the other guest untouched", { timeout: 240_000 }, async () => {
  const log = captureLog("info");
  const e = await startE2E({ logger: log.logger });
  const root = { authorization: `PVEAPIToken=${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}` };
  const api = (method: string, path: string, body?: Record<string, string | number>) =>
    fetch(`${e.world.pve.url}/api2/json${path}`, { method, headers: { ...root, ...(body ? { "content-type": "application/x-www-form-urlencoded" } : {}) }, body: body ? new URLSearchParams(Object.entries(body).map(([k, v]): [string, string] => [k, String(v)])) : undefined }).then(async (r) => ({ status: r.status, data: ((await r.json()) as { data: unknown }).data }));
  try {
    const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1000 });
    const reserved = await log.waitFor((l) => l.msg === "vmid reserved", 30_000);
    const taken = reserved.vmid as number;
    // Before terraform gets there: a guest of someone else's takes that vmid.
    const made = await api("POST", `/nodes/${SIM_NODE}/lxc/${SIM_TEMPLATE_VMID}/clone`, { newid: taken, hostname: "someone-elses", description: "not a runner" });
    assert.equal(made.status, 200, JSON.stringify(made));
    await log.waitFor((l) => l.msg === "vmid taken by another guest at clone time: picking a fresh one", 60_000);
    await settled(e, [job.id], 150_000);

    const done = e.world.github.jobs().find((j) => j.id === job.id)!;
    assert.equal(done.conclusion, "success");
    const runner = e.service.store.getRunner(done.runnerName!)!;
    assert.notEqual(runner.vmid, taken, "the runner ran in a container of its own");
    assert.equal(runner.attempts, 0, "a clash is not a failed attempt");
    const other = e.world.pve.container(taken)!;
    assert.ok(other, "the other guest is still there");
    assert.equal(other.config.hostname, "someone-elses");
    assert.equal(other.config.description, "not a runner");
    assert.ok(!other.tags.includes("pve-runners"), "not tagged as ours");
    assert.deepEqual(await containersLeft(e), [taken], "only the other guest is left");
  } finally {
    await e.stop();
  }
});
