// The listener's vmid allocation: one vmid per live runner (never two runners on one), a rotating
// cursor (a just-released id is not reused at once), ids PVE knows of skipped, release when a runner
// is gone, and the unique index that keeps a bug from double-booking.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Store } from "../../../listener/store/store.js";
import { VmidAllocator, type VmidProbe } from "../../../listener/lifecycle/vmids.js";

const range = { first: 500, last: 509 };

function runners(store: Store, n: number, prefix = "runner-"): string[] {
  return Array.from({ length: n }, (_, i) => store.insertRunner({ name: `${prefix}${i}`, labelSet: "s", scope: "repo:a/b", madeForJob: i + 1 }).name);
}

describe("VmidAllocator", () => {
  test("runners allocating at once get distinct vmids, each recorded on its runner", async () => {
    const store = new Store(":memory:");
    // A probe that answers later than the next allocation starts: the interleaving the pipeline has.
    const probe: VmidProbe = { inUse: async () => new Set(), isFree: () => new Promise((r) => setTimeout(() => r(true), 5)) };
    const alloc = new VmidAllocator(store, () => range, probe);
    const names = runners(store, 8);
    const got = await Promise.all(names.map((n) => alloc.allocate(n)));
    assert.equal(new Set(got).size, 8, `distinct: ${got.join(", ")}`);
    for (const [i, n] of names.entries()) assert.equal(store.getRunner(n)!.vmid, got[i]);
    for (const v of got) assert.ok(v >= range.first && v <= range.last);
  });

  test("rotating cursor: a released id is not handed out again until the range wraps", async () => {
    const store = new Store(":memory:");
    const alloc = new VmidAllocator(store, () => range);
    const [a, b, c] = runners(store, 3);
    assert.equal(await alloc.allocate(a), 500);
    store.setRunnerState(a, "gone");
    assert.equal(await alloc.allocate(b), 501, "not 500, just released");
    assert.deepEqual([...store.heldVmids()], [501], "a gone runner holds nothing");
    // Wrap: every id after the cursor held, 500 free again.
    const more = runners(store, 8, "more-");
    for (const n of more) await alloc.allocate(n);
    assert.equal(await alloc.allocate(c), 500, "the range wrapped to the released id");
  });

  test("skips guests PVE lists and vmids /cluster/nextid says exist", async () => {
    const store = new Store(":memory:");
    const asked: number[] = [];
    const probe: VmidProbe = {
      inUse: async () => new Set([500, 501]),
      // 502 is a guest the token cannot see: only nextid knows it.
      isFree: async (v) => (asked.push(v), v !== 502),
    };
    const alloc = new VmidAllocator(store, () => range, probe);
    const [a] = runners(store, 1);
    assert.equal(await alloc.allocate(a), 503);
    assert.deepEqual(asked, [502, 503], "listed guests are not even asked about");
  });

  test("a full range is an error naming it; a runner that is gone makes room", async () => {
    const store = new Store(":memory:");
    const small = { first: 700, last: 701 };
    const alloc = new VmidAllocator(store, () => small);
    const [a, b, c] = runners(store, 3);
    await alloc.allocate(a);
    await alloc.allocate(b);
    await assert.rejects(alloc.allocate(c), /no free vmid left in proxmox\.vmids \(700-701\)/);
    assert.equal(store.getRunner(c)!.vmid, null);
    store.setRunnerState(a, "failed");
    assert.equal(await alloc.allocate(c), 700);
  });

  test("the store refuses a vmid another live runner holds, and keeps vmids and the cursor across a restart", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vmids-"));
    try {
      const path = join(dir, "db.sqlite");
      let store = new Store(path);
      const [a, b] = runners(store, 2);
      const alloc = new VmidAllocator(store, () => range);
      const v = await alloc.allocate(a);
      assert.equal(store.assignVmid(b, v), false, "a second live runner cannot take it");
      assert.equal(store.getRunner(b)!.vmid, null);
      store.close();
      store = new Store(path);
      assert.equal(store.getRunner(a)!.vmid, v, "kept across a restart: the re-run targets the same vmid");
      assert.equal(await new VmidAllocator(store, () => range).allocate(b), v + 1, "the cursor survived too");
      store.setRunnerState(a, "gone");
      assert.equal(store.assignVmid(b, v), true, "released once its runner is gone");
      store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
