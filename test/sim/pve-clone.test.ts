// Cloning the template as PVE does it: the source's 'disk' lock for the whole task (a second clone
// fails at once), the target's 'create' lock, fresh MACs, copied config, pool membership, linked vs
// full clones — and the injected faults the listener must survive.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { SIM_TEMPLATE_VMID } from "../../sim/pve/index.js";
import { pveSimFixture } from "../fixtures/pve-sim.js";

const SCALE = 0.01;

describe("PVE simulator: clone", () => {
  const pve = pveSimFixture({ timeScale: SCALE, seed: 7 });
  const { sim } = pve;
  let nextId = 300;

  const clone = (params: Record<string, string | number | boolean> = {}, c = pve.runners) =>
    c.post<string>(c.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: nextId++, pool: "ci", ...params });

  test("the clone task: UPID at once, target locked 'create' while it runs, template locked 'disk'", async () => {
    const newid = nextId;
    sim.setLatency({ cloneLinked: 60_000 });
    const r = await clone({ hostname: "runner-abc123", description: "made by a test" });
    sim.setLatency({ cloneLinked: 5_000 });
    assert.equal(r.status, 200);
    const task = (await pve.runners.get<{ status: string }>(`/nodes/pve/tasks/${encodeURIComponent(r.data)}/status`)).data;
    assert.equal(task.status, "running", "the call returns before the clone is done");
    const during = (await pve.root.get<Record<string, unknown>>(pve.root.ct(newid, "/config"))).data;
    assert.equal(during.lock, "create");
    assert.equal(sim.container(newid)?.pool, null, "joins the pool at the end of the task");
    assert.equal((await pve.root.get<Record<string, unknown>>(pve.root.ct(SIM_TEMPLATE_VMID, "/status/current"))).data.lock, "disk");
    assert.equal(await pve.runners.waitTask(r.data), "OK");

    const tpl = (await pve.root.get<Record<string, string | number>>(pve.root.ct(SIM_TEMPLATE_VMID, "/config"))).data;
    const ct = (await pve.runners.get<Record<string, string | number>>(pve.runners.ct(newid, "/config"))).data;
    assert.equal(ct.lock, undefined, "lock released");
    assert.equal(tpl.lock, undefined);
    assert.equal(ct.template, undefined, "template flag not copied");
    assert.equal(ct.hostname, "runner-abc123");
    assert.equal(ct.description, "made by a test");
    for (const k of ["features", "unprivileged", "cores", "memory", "swap", "ostype", "tags", "arch"]) assert.equal(ct[k], tpl[k], `${k} copied`);
    const mac = (v: unknown) => /hwaddr=([0-9A-F:]+)/.exec(String(v))?.[1];
    assert.ok(mac(ct.net0) && mac(ct.net0) !== mac(tpl.net0), "a fresh MAC");
    assert.equal(String(ct.net0).replace(/hwaddr=[^,]+/, ""), String(tpl.net0).replace(/hwaddr=[^,]+/, ""), "the rest of net0 copied");
    assert.equal(ct.rootfs, `local-lvm:base-9000-disk-0/vm-${newid}-disk-0,size=8G`, "a linked clone of the base volume");
    assert.equal(sim.container(newid)?.pool, "ci");
  });

  test("parallel clones of one template: the second fails at once with 'CT is locked (disk)', later ones succeed", async () => {
    sim.setLatency({ cloneLinked: 60_000 });
    try {
      const first = await clone();
      assert.equal(first.status, 200);
      const t0 = Date.now();
      const second = await clone();
      assert.deepEqual([second.status, second.reason, second.body], [500, "CT is locked (disk)", { data: null, message: "CT is locked (disk)\n" }]);
      assert.ok(Date.now() - t0 < (60_000 * SCALE) / 2, "refused at once, not after waiting for the first clone");
      assert.equal(sim.container(nextId - 1), undefined, "no target left behind by the refused clone");
      const task = (await pve.runners.get<{ status: string }>(`/nodes/pve/tasks/${encodeURIComponent(first.data)}/status`)).data;
      assert.equal(task.status, "running", "the first clone is still running");
      assert.equal(await pve.runners.waitTask(first.data), "OK");
    } finally {
      sim.setLatency({ cloneLinked: 5_000 });
    }
    const third = await clone();
    assert.equal(third.status, 200);
    assert.equal(await pve.runners.waitTask(third.data), "OK");
  });

  test("sync refusals: existing newid, storage on a linked clone, unknown pool, unknown source", async () => {
    const exists = await clone({ newid: SIM_TEMPLATE_VMID });
    assert.deepEqual([exists.status, exists.reason], [500, `CT ${SIM_TEMPLATE_VMID} already exists on node 'pve'`]);
    assert.equal(sim.container(SIM_TEMPLATE_VMID)?.lock, null, "the source lock is released again");
    const storage = await clone({ storage: "local-lvm", full: 0 });
    assert.deepEqual([storage.status, storage.reason], [500, "parameter 'storage' not allowed for linked clones"]);
    const pool = await clone({ pool: "nope" }, pve.root);
    assert.deepEqual([pool.status, pool.reason], [403, "Permission check failed (pool 'nope' does not exist)"]);
    const src = await pve.root.post(pve.root.ct(4711, "/clone"), { newid: nextId++ });
    assert.deepEqual([src.status, src.reason], [500, "Configuration file 'nodes/pve/lxc/4711.conf' does not exist"]);
    assert.equal(sim.container(SIM_TEMPLATE_VMID)?.lock, null);
  });

  test("full clone of the template: takes longer, gets its own volume, storage allowed", async () => {
    const newid = nextId;
    const t0 = Date.now();
    const r = await clone({ full: 1, storage: "local-lvm" });
    assert.equal(r.status, 200);
    assert.equal(await pve.runners.waitTask(r.data), "OK");
    assert.ok(Date.now() - t0 >= 30_000 * SCALE * 0.85, "a full clone copies the whole root fs");
    assert.equal(sim.container(newid)?.config.rootfs, `local-lvm:vm-${newid}-disk-0,size=8G`);
    // A full clone onto a storage outside the pool needs Datastore.AllocateSpace there.
    const denied = await clone({ full: 1, storage: "local" });
    assert.deepEqual([denied.status, denied.reason], [403, "Permission check failed (/storage/local, Datastore.AllocateSpace)"]);
  });

  test("fault: error rate 1 → the task fails 'clone failed: …' and the target is gone", async () => {
    sim.setFaults({ errorRate: { clone: 1 } });
    const newid = nextId;
    const r = await clone();
    assert.equal(r.status, 200);
    const exit = await pve.runners.waitTask(r.data);
    assert.match(exit, /^clone failed: lvcreate /);
    assert.equal(sim.container(newid), undefined);
    assert.equal((await pve.root.get(pve.root.ct(newid, "/config"))).status, 500);
    assert.equal(sim.container(SIM_TEMPLATE_VMID)?.lock, null, "template unlocked");
    const log = await pve.runners.get<Array<{ t: string }>>(`/nodes/pve/tasks/${encodeURIComponent(r.data)}/log`);
    assert.match(log.data.at(-1)?.t ?? "", /^TASK ERROR: clone failed: /);
  });

  test("fault: storage lock contention waits the lock timeout, then fails", async () => {
    sim.setFaults({ next: { op: "clone", count: 1, error: "lock" } });
    const t0 = Date.now();
    const exit = await pve.runners.waitTask((await clone()).data);
    assert.equal(exit, "clone failed: can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout");
    assert.ok(Date.now() - t0 >= 10_000 * SCALE * 0.9);
    assert.equal(await pve.runners.waitTask((await clone()).data), "OK", "the deterministic fault was used up");
  });

  test("fault: 596 Connection timed out from pveproxy, at a rate or next", async () => {
    sim.setFaults({ timeoutRate: 1, paths: "/cluster/" });
    const r = await pve.runners.get("/cluster/nextid");
    assert.deepEqual([r.status, r.reason, r.body], [596, "Connection timed out", null]);
    assert.equal((await pve.runners.get("/version")).status, 200, "only matching paths");
    sim.clearFaults();
    sim.setFaults({ next: { op: "api", count: 2 } });
    assert.equal((await pve.runners.get("/version")).status, 596);
    assert.equal((await pve.runners.get("/version")).status, 596);
    assert.equal((await pve.runners.get("/version")).status, 200);
  });

  test("fault: a config update times out on its flock; deterministic custom errors", async () => {
    const newid = nextId;
    assert.equal(await pve.runners.waitTask((await clone()).data), "OK");
    sim.setFaults({ next: { op: "config", count: 1 } });
    const r = await pve.runners.put(pve.runners.ct(newid, "/config"), { cores: 2 });
    assert.deepEqual([r.status, r.reason], [500, `can't lock file '/run/lock/lxc/pve-config-${newid}.lock' - got timeout`]);
    assert.equal((await pve.runners.put(pve.runners.ct(newid, "/config"), { cores: 2 })).status, 200);
    sim.setFaults({ next: { op: "start", count: 1, error: "hookscript error for 301 on pre-start: exit code 1" } });
    assert.equal(await pve.runners.task("POST", pve.runners.ct(newid, "/status/start")), "hookscript error for 301 on pre-start: exit code 1");
    sim.setFaults({ errorRate: { start: 1 } });
    assert.equal(await pve.runners.task("POST", pve.runners.ct(newid, "/status/start")), `startup for container '${newid}' failed`);
    assert.equal(sim.container(newid)?.status, "stopped");
  });

  test("control API: faults and latency over HTTP, root token only", async () => {
    const set = await pve.root.call("POST", "/_sim/faults", { errorRate: { destroy: 0.5 }, lockRate: 0 } as never, { json: true });
    assert.equal(set.status, 200);
    assert.deepEqual((set.data as { errorRate: unknown }).errorRate, { destroy: 0.5 });
    assert.equal((await pve.root.call("DELETE", "/_sim/faults")).status, 200);
    assert.deepEqual((sim.faults() as { errorRate: unknown }).errorRate, {});
    const lat = await pve.root.call("POST", "/_sim/latency", { start: 1234 } as never, { json: true });
    assert.equal((lat.data as { start: number }).start, 1234);
    sim.setLatency({ start: 2_000 });
    const denied = await pve.runners.call("GET", "/_sim/state");
    assert.equal(denied.status, 403);
    assert.equal((await pve.root.call("GET", "/_sim/state", {}, { auth: null })).status, 401);
    const bad = await pve.root.call("POST", "/_sim/faults", { errorRate: { clone: 2 } } as never, { json: true });
    assert.equal(bad.status, 400);
  });
});
