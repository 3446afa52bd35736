// Group commit: writes of one event-loop turn share a transaction; each caller gets its own outcome.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GroupCommit } from "../../../listener/store/group-commit.js";
import { Store } from "../../../listener/store/store.js";

describe("group commit", () => {
  test("one turn's items form one batch, in order; the next turn makes another", async () => {
    const batches: number[][] = [];
    const g = new GroupCommit<number, string>((xs) => (batches.push(xs), xs.map((x) => `ok ${x}`)));
    const first = await Promise.all([g.add(1), g.add(2), g.add(3)]);
    assert.deepEqual(first, ["ok 1", "ok 2", "ok 3"]);
    assert.equal(await g.add(4), "ok 4");
    assert.deepEqual(batches, [[1, 2, 3], [4]]);
  });

  test("a commit that throws fails every item of its batch, and only those", async () => {
    let calls = 0;
    const g = new GroupCommit<number, number>((xs) => {
      if (calls++ === 0) throw new Error("disk full");
      return xs;
    });
    const results = await Promise.allSettled([g.add(1), g.add(2)]);
    assert.deepEqual(results.map((r) => r.status), ["rejected", "rejected"]);
    assert.equal(await g.add(3), 3);
  });

  test("recorded deliveries: one transaction for the batch, a duplicate GUID reported as such, all durable", async () => {
    const dir = mkdtempSync(join(tmpdir(), "group-commit-"));
    try {
      const store = new Store(join(dir, "db.sqlite"));
      const g = new GroupCommit((ds: Parameters<Store["recordDelivery"]>[0][]) => store.recordDeliveries(ds));
      const d = (guid: string) => ({ guid, event: "workflow_job", action: "queued", jobId: 1, payload: "{}" });
      const fresh = await Promise.all([g.add(d("a")), g.add(d("b")), g.add(d("a"))]);
      assert.deepEqual(fresh, [true, true, false]);
      store.close();
      const reopened = new Store(join(dir, "db.sqlite"));
      assert.deepEqual(reopened.unprocessedDeliveries().map((x) => x.guid), ["a", "b"]);
      reopened.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test("delayMs: items added over the delay share one commit", async () => {
    const batches: number[][] = [];
    const g = new GroupCommit<number, number>((xs) => (batches.push(xs), xs), { delayMs: 30 });
    const first = g.add(1);
    await new Promise((r) => setTimeout(r, 5));
    const second = g.add(2);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(batches, [], "nothing committed before the delay");
    assert.deepEqual(await Promise.all([first, second]), [1, 2]);
    assert.deepEqual(batches, [[1, 2]]);
  });

  test("busy: while it is pending the batch gathers, and commits once it settles (resolved or rejected)", async () => {
    const batches: number[][] = [];
    let release!: (ok: boolean) => void;
    let busy: Promise<void> | null = new Promise<void>((res, rej) => (release = (ok) => (ok ? res() : rej(new Error("sync failed")))));
    const g = new GroupCommit<number, number>((xs) => (batches.push(xs), xs), { busy: () => busy });
    const items = [g.add(1)];
    await new Promise((r) => setTimeout(r, 20));
    items.push(g.add(2), g.add(3));
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(batches, [], "held while busy");
    release(false);
    assert.deepEqual(await Promise.all(items), [1, 2, 3]);
    assert.deepEqual(batches, [[1, 2, 3]], "one commit for all who gathered");
    busy = null;
    assert.equal(await g.add(4), 4);
    assert.deepEqual(batches, [[1, 2, 3], [4]], "not busy: at once");
  });
});
