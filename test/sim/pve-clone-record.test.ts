// World controls on the PVE simulator's clones: a seeded rate of synchronous "CT is locked (disk)"
// answers (another process holding the template's lock), and the clone record: every request with
// its outcome, the task's start and end, the refusal counter and the per-template overlap helper.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { PveSim, SIM_TEMPLATE_VMID, SIM_TOKENS, cloneOverlaps } from "../../sim/pve/index.js";
import { PveSimClient } from "../../sim/pve/client.js";
import { pveSimFixture } from "../fixtures/pve-sim.js";

const SCALE = 0.01;

describe("PVE simulator: clone lock rate and clone record", () => {
  const pve = pveSimFixture(
    { timeScale: SCALE, seed: 11, nodes: [{ name: "pve" }, { name: "pve2" }], templates: [{ node: "pve", vmid: SIM_TEMPLATE_VMID }, { node: "pve2", vmid: 9001 }] },
    (sim) => sim.setLatency({ cloneLinked: 5_000 }),
  );
  const { sim } = pve;
  let nextId = 500;

  const clone = (vmid = SIM_TEMPLATE_VMID, c = pve.runners) => c.post<string>(c.ct(vmid, "/clone"), { newid: nextId++, pool: "ci" });

  test("cloneLockedRate 1: every clone is refused at once with PVE's 500 'CT is locked (disk)', nothing left behind", async () => {
    sim.setFaults({ cloneLockedRate: 1 });
    const newid = nextId;
    const r = await clone();
    assert.deepEqual([r.status, r.reason, r.body], [500, "CT is locked (disk)", { data: null, message: "CT is locked (disk)\n" }]);
    assert.equal(sim.container(newid), undefined, "no target created");
    assert.equal(sim.container(SIM_TEMPLATE_VMID)?.lock, null, "the template itself is not locked afterwards");
    assert.equal(sim.faults().cloneLockedRate, 1);
    sim.clearFaults();
    const ok = await clone();
    assert.equal(ok.status, 200, "cleared: clones go through again");
    assert.equal(await pve.runners.waitTask(ok.data), "OK");
  });

  test("cloneLockedRate is seeded: the same seed refuses the same clones", async () => {
    const pattern = async (s: PveSim) => {
      const url = s.url || (await s.start(0, "127.0.0.1"));
      const c = new PveSimClient(url).as(SIM_TOKENS.runners);
      s.setFaults({ cloneLockedRate: 0.5 });
      const out: number[] = [];
      for (let i = 0; i < 12; i++) {
        const r = await c.post<string>(c.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: 700 + i, pool: "ci" });
        out.push(r.status);
        if (r.status === 200) await c.waitTask(r.data);
      }
      await s.stop();
      return out;
    };
    const a = await pattern(new PveSim({ timeScale: SCALE, seed: 5 }));
    const b = await pattern(new PveSim({ timeScale: SCALE, seed: 5 }));
    assert.deepEqual(a, b);
    assert.ok(a.includes(500) && a.includes(200), `a rate of 0.5 refuses some and lets some through: ${a.join(",")}`);
  });

  test("the clone record: each request, refused with what, started with the task's start and end; counts; overlaps per template", async () => {
    const before = sim.cloneCounts();
    const seq0 = sim.clones().length;
    sim.setLatency({ cloneLinked: 20_000 });
    const first = await clone();
    assert.equal(first.status, 200);
    const second = await clone(); // while the first runs: PVE refuses it
    assert.equal(second.status, 500);
    const other = await clone(9001, pve.runners.on("pve2")); // another template: runs in parallel
    assert.equal(other.status, 200);
    const missing = await clone(4711, pve.root); // refused for another reason
    assert.equal(missing.status, 500);
    assert.equal(await pve.runners.waitTask(first.data), "OK");
    assert.equal(await pve.runners.on("pve2").waitTask(other.data), "OK");
    await sim.settle();
    sim.setLatency({ cloneLinked: 5_000 });
    const later = await clone(); // after the first ended: no overlap
    assert.equal(await pve.runners.waitTask(later.data), "OK");
    await sim.settle();

    const recs = sim.clones().slice(seq0);
    assert.deepEqual(
      recs.map((r) => [r.node, r.vmid, r.outcome, r.status ?? null, r.message ?? null, r.exitstatus ?? null]),
      [
        ["pve", SIM_TEMPLATE_VMID, "started", null, null, "OK"],
        ["pve", SIM_TEMPLATE_VMID, "refused", 500, "CT is locked (disk)", null],
        ["pve2", 9001, "started", null, null, "OK"],
        ["pve", 4711, "refused", 500, "Configuration file 'nodes/pve/lxc/4711.conf' does not exist", null],
        ["pve", SIM_TEMPLATE_VMID, "started", null, null, "OK"],
      ],
    );
    const [a, b, c, , e] = recs;
    assert.equal(a.upid, first.data);
    assert.equal(b.newid, a.newid! + 1);
    assert.ok(a.taskStart! >= a.at && a.taskEnd! > a.taskStart!, "start and end of the task");
    assert.ok(a.taskEnd! - a.taskStart! >= 20_000 * SCALE * 0.8, "the task ran as long as a linked clone takes");
    assert.ok(b.at >= a.taskStart! && b.at < a.taskEnd!, "the refused request came while the first ran");
    assert.ok(c.taskStart! < a.taskEnd!, "the other template's clone ran at the same time");
    assert.ok(e.taskStart! >= a.taskEnd!);

    const now = sim.cloneCounts();
    assert.deepEqual(
      { requested: now.requested - before.requested, started: now.started - before.started, refused: now.refused - before.refused, refusedLocked: now.refusedLocked - before.refusedLocked },
      { requested: 5, started: 3, refused: 2, refusedLocked: 1 },
    );
    // Only the second request overlapped a running clone of its template; the other template's does not count.
    assert.deepEqual(sim.cloneOverlaps().filter((o) => o.request > seq0), [{ node: "pve", vmid: SIM_TEMPLATE_VMID, running: a.seq, request: b.seq }]);
  });

  test("cloneOverlaps: a task still running overlaps every later request of its source until now", () => {
    const recs = [
      { seq: 1, at: 100, node: "pve", vmid: 9000, newid: 1, outcome: "started" as const, taskStart: 101 },
      { seq: 2, at: 150, node: "pve", vmid: 9000, newid: 2, outcome: "refused" as const, status: 500, message: "CT is locked (disk)" },
      { seq: 3, at: 160, node: "pve", vmid: 9001, newid: 3, outcome: "started" as const, taskStart: 160, taskEnd: 170 },
    ];
    assert.deepEqual(cloneOverlaps(recs, 200), [{ node: "pve", vmid: 9000, running: 1, request: 2 }]);
    assert.deepEqual(cloneOverlaps(recs, 140), [], "before the second request the first was alone");
  });

  test("control API: GET /_sim/clones gives records, counts and overlaps (root token only); POST /_sim/faults takes cloneLockedRate", async () => {
    const set = await fetch(`${sim.url}/_sim/faults`, { method: "POST", headers: { authorization: `PVEAPIToken=${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}`, "content-type": "application/json" }, body: JSON.stringify({ cloneLockedRate: 1 }) });
    assert.equal(set.status, 200);
    const r = await clone();
    assert.equal(r.reason, "CT is locked (disk)");
    const res = await fetch(`${sim.url}/_sim/clones`, { headers: { authorization: `PVEAPIToken=${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}` } });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { data: { records: Array<{ seq: number; outcome: string; message?: string }>; counts: { requested: number; refusedLocked: number }; overlaps: unknown[] } };
    assert.deepEqual(body.data.records.at(-1)?.message, "CT is locked (disk)");
    assert.deepEqual(body.data.counts, sim.cloneCounts());
    assert.deepEqual(body.data.overlaps, sim.cloneOverlaps());
    const denied = await fetch(`${sim.url}/_sim/clones`, { headers: { authorization: `PVEAPIToken=${SIM_TOKENS.runners.id}=${SIM_TOKENS.runners.secret}` } });
    assert.equal(denied.status, 403);
  });

  test("a held clone task finishes only at the release, the template locked all the while (also over POST /_sim/clones/hold|release)", async () => {
    const auth = { authorization: `PVEAPIToken=${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}` };
    sim.setLatency({ cloneLinked: 100 });
    assert.equal((await fetch(`${sim.url}/_sim/clones/hold`, { method: "POST", headers: auth })).status, 200);
    const r = await clone();
    assert.equal(r.status, 200);
    const finished = pve.runners.waitTask(r.data);
    let done = false;
    void finished.then(() => (done = true));
    await new Promise((res) => setTimeout(res, 200)); // 20 s of simulated time: 200 times the latency
    assert.equal(done, false, "held past its latency");
    assert.equal(sim.container(SIM_TEMPLATE_VMID)?.lock, "disk", "the template stays locked");
    const second = await clone();
    assert.equal(second.reason, "CT is locked (disk)", "another clone of it is refused meanwhile");
    assert.equal((await fetch(`${sim.url}/_sim/clones/release`, { method: "POST", headers: auth })).status, 200);
    assert.equal(await finished, "OK");
    assert.equal(sim.container(SIM_TEMPLATE_VMID)?.lock, null);
    const later = await clone();
    assert.equal(await pve.runners.waitTask(later.data), "OK", "released: later clones run as usual");
  });
});
