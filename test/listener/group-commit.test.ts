// Group commit: writes of one event-loop turn share a transaction; each caller gets its own outcome.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GroupCommit } from "../../listener/group-commit.js";
import { Store } from "../../listener/store.js";

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
});
