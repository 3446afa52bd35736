import { test } from "node:test";
import assert from "node:assert/strict";
import { TerraformSlots } from "../../../../listener/adapters/terraform/terraform-slots.js";

function gate() {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}
const tick = () => new Promise((r) => setImmediate(r));

/** `fn` in a slot of `slots`, as terraform's runs take one. */
async function inSlot<T>(slots: TerraformSlots, group: string | undefined, fn: () => Promise<T>): Promise<T> {
  const lease = await slots.acquire(group);
  try {
    return await fn();
  } finally {
    lease.release();
  }
}

test("at most N at once; a freed slot goes to the lane with the fewest runs going, first come first among equals", async () => {
  const slots = new TerraformSlots(3);
  const started: string[] = [];
  const gates = new Map<string, ReturnType<typeof gate>>();
  const run = (lane: string | undefined, name: string) => {
    const g = gate();
    gates.set(name, g);
    return inSlot(slots, lane, async () => {
      started.push(name);
      await g.p;
      return name;
    });
  };
  // Three applies take the slots: two for lane A, one for B (the order they came in).
  const all = [run("A", "a1"), run("A", "a2"), run("B", "b1")];
  // Waiting: A's third and fourth came first, then C's first, then B's second.
  all.push(run("A", "a3"), run("A", "a4"), run("C", "c1"), run("B", "b2"));
  await tick();
  assert.deepEqual(started, ["a1", "a2", "b1"]);
  assert.deepEqual(slots.stats(), { running: 3, waiting: 4, byGroup: { A: 2, B: 1 }, approaching: {}, reachedLane: 0 });
  // b1 ends: C has nothing going, so c1 goes before a3 (which waited longer).
  gates.get("b1")!.open();
  await tick();
  assert.deepEqual(started.slice(3), ["c1"]);
  // a1 ends: A 1, B 0, C 1 going → b2.
  gates.get("a1")!.open();
  await tick();
  assert.deepEqual(started.slice(4), ["b2"]);
  // c1 ends: A 1, B 1, C 0; only A's wait → the earlier of them.
  gates.get("c1")!.open();
  await tick();
  assert.deepEqual(started.slice(5), ["a3"]);
  for (const name of ["a2", "b2", "a3"]) gates.get(name)!.open();
  await tick();
  assert.deepEqual(started.slice(6), ["a4"]);
  gates.get("a4")!.open();
  assert.deepEqual(await Promise.all(all), ["a1", "a2", "b1", "a3", "a4", "c1", "b2"]);
  assert.deepEqual(slots.stats(), { running: 0, waiting: 0, byGroup: {}, approaching: {}, reachedLane: 0 });
});

test("runs without a lane (destroys) form a group of their own; a failing run frees its slot", async () => {
  const slots = new TerraformSlots(1);
  const started: string[] = [];
  const first = gate();
  const a = inSlot(slots, "A", async () => {
    started.push("a1");
    await first.p;
    throw new Error("apply failed");
  });
  const waiting = [
    inSlot(slots, "A", async () => void started.push("a2")),
    inSlot(slots, undefined, async () => void started.push("destroy")),
  ];
  await tick();
  first.open();
  await assert.rejects(a, /apply failed/);
  await Promise.all(waiting);
  // With A's run gone neither group has one going: the earlier (a2) first.
  assert.deepEqual(started, ["a1", "a2", "destroy"]);
  assert.equal(slots.stats().running, 0);
});

test("acquire: a lease holds its slot until released (twice is once); an abort while waiting leaves the queue", async () => {
  const slots = new TerraformSlots(1);
  const lease = await slots.acquire("A");
  const abort = new AbortController();
  const waiting = slots.acquire("B", abort.signal);
  let next = false;
  const after = slots.acquire("C").then((l) => ((next = true), l));
  assert.deepEqual(slots.stats(), { running: 1, waiting: 2, byGroup: { A: 1 }, approaching: {}, reachedLane: 0 });
  abort.abort(new Error("runner stopped"));
  await assert.rejects(waiting, /runner stopped/);
  assert.equal(slots.stats().waiting, 1, "the aborted one left the queue");
  lease.release();
  lease.release();
  const c = await after;
  assert.equal(next, true);
  assert.deepEqual(slots.stats(), { running: 1, waiting: 0, byGroup: { C: 1 }, approaching: {}, reachedLane: 0 }, "a second release frees nothing more");
  c.release();
  await assert.rejects(slots.acquire("D", AbortSignal.abort(new Error("already stopped"))), /already stopped/);
  assert.deepEqual(slots.stats(), { running: 0, waiting: 0, byGroup: {}, approaching: {}, reachedLane: 0 });
});

test("approachCap 1: a lane's next run starts once the one before reached the lane or ended; other lanes and destroys are not held", async () => {
  const slots = new TerraformSlots(4, { approachCap: 1 });
  const started: string[] = [];
  const leases = new Map<string, Awaited<ReturnType<TerraformSlots["acquire"]>>>();
  const acquire = (lane: string | undefined, id: string) =>
    slots.acquire(lane, undefined, id).then((l) => {
      started.push(id);
      leases.set(id, l);
    });
  const all = [acquire("A", "a1"), acquire("A", "a2"), acquire("B", "b1"), acquire("A", "a3"), acquire(undefined, "destroy")];
  await tick();
  // Slots are free, yet a2 waits: a1 is still on its way to lane A. B's first may always go.
  assert.deepEqual(started, ["a1", "b1", "destroy"]);
  assert.deepEqual(slots.stats(), { running: 3, waiting: 2, byGroup: { A: 1, B: 1, "": 1 }, approaching: { A: 1, B: 1 }, reachedLane: 0 });
  // a1's clone request is queued in lane A: A has none on its way, so a2 goes (b1 still on its
  // way does not count against a lane's first).
  slots.reachedLane("a1");
  await tick();
  assert.deepEqual(started.slice(3), ["a2"]);
  slots.reachedLane("someone-else");
  await tick();
  assert.equal(started.length, 4, "an unknown runner's arrival frees nothing");
  // a2 ends before reaching the lane (an apply that made no clone): a3 starts.
  leases.get("a2")!.release();
  await tick();
  assert.deepEqual(started.slice(4), ["a3"]);
  for (const id of ["a1", "b1", "a3", "destroy"]) leases.get(id)!.release();
  await Promise.all(all);
  assert.deepEqual(slots.stats(), { running: 0, waiting: 0, byGroup: {}, approaching: {}, reachedLane: 1 });
});

test("approachCap: with cores to spare a lane may have several on their way, up to the cap in all", async () => {
  const slots = new TerraformSlots(8, { approachCap: 3 });
  const leases = await Promise.all(["a1", "a2", "a3"].map((id) => slots.acquire("A", undefined, id)));
  let fourth = false;
  const a4 = slots.acquire("A", undefined, "a4").then((l) => ((fourth = true), l));
  // Another lane's first goes past the cap: every lane always has one on its way.
  const b1 = await slots.acquire("B", undefined, "b1");
  await tick();
  assert.equal(fourth, false);
  assert.deepEqual(slots.stats().approaching, { A: 3, B: 1 });
  slots.reachedLane("a1");
  slots.reachedLane("b1");
  await tick();
  assert.equal(fourth, true, "3 on their way again once two arrived");
  for (const l of [...leases, b1, await a4]) l.release();
  assert.deepEqual(slots.stats(), { running: 0, waiting: 0, byGroup: {}, approaching: {}, reachedLane: 2 });
});

test("approachCap: a run that stalls on its way holds its lane's next one back no longer than approachLimitMs", async () => {
  const slots = new TerraformSlots(4, { approachCap: 1, approachLimitMs: 50 });
  const first = await slots.acquire("A", undefined, "a1");
  let second = false;
  const next = slots.acquire("A", undefined, "a2").then((l) => ((second = true), l));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(second, false, "held while a1 is on its way");
  const l2 = await next;
  assert.equal(second, true, "a1 stalled: a2 started after the limit");
  first.release();
  l2.release();
  assert.deepEqual(slots.stats(), { running: 0, waiting: 0, byGroup: {}, approaching: {}, reachedLane: 0 });
});

test("without approachCap a lane's runs start side by side (the lane around whole applies)", async () => {
  const slots = new TerraformSlots(3);
  const leases = await Promise.all([slots.acquire("A", undefined, "a1"), slots.acquire("A", undefined, "a2"), slots.acquire("A")]);
  assert.deepEqual(slots.stats(), { running: 3, waiting: 0, byGroup: { A: 3 }, approaching: {}, reachedLane: 0 });
  for (const l of leases) l.release();
});
