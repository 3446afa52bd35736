// Reads that run on every reconcile pass and every status snapshot must not grow with the history
// the retention window keeps (issue 17, bench/soak.ts). The newest finished runners (a label set's
// failure streak; the status page's recent runners) are read through an index in their order, not
// by sorting every finished runner; checked on SQLite's query plan, never by timing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { FINISHED_RUNNERS_SQL, RECENT_FINISHED_RUNNERS_SQL, Store, type RunnerState } from "../../../listener/store/store.js";

function storeWithHistory() {
  const dir = mkdtempSync(join(tmpdir(), "store-history-"));
  const file = join(dir, "s.sqlite");
  const clock = { t: 1_000_000 };
  const store = new Store(file, () => clock.t);
  const finish = (name: string, labelSet: string, state: RunnerState) => {
    clock.t += 1_000;
    store.insertRunner({ name, labelSet, scope: "repo:acme/app", madeForJob: null });
    store.setRunnerState(name, state);
  };
  store.transaction(() => {
    for (let i = 0; i < 500; i++) finish(`runner-a${i}`, i % 2 ? "small" : "large", i % 7 ? "gone" : "failed");
  });
  finish("runner-live", "small", "busy");
  return { store, file, cleanup: () => (store.close(), rmSync(dir, { recursive: true, force: true })) };
}

function plan(file: string, sql: string, ...args: unknown[]): string {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as Array<{ detail: string }>).map((r) => r.detail).join(" | ");
  } finally {
    db.close();
  }
}

test("the newest finished runners are read through an index in their order, not by sorting the whole history", () => {
  const { file, cleanup } = storeWithHistory();
  try {
    for (const [sql, args] of [
      [FINISHED_RUNNERS_SQL, ["small", 32]],
      [RECENT_FINISHED_RUNNERS_SQL, [30]],
    ] as const) {
      const p = plan(file, sql, ...args);
      assert.match(p, /runners_finished/, `uses a finished-runners index: ${p}`);
      // Only the tie-break (name) may be sorted, within one state_since: never every finished row.
      assert.doesNotMatch(p, /TEMP B-TREE FOR ORDER BY/, `no sort of every finished runner: ${p}`);
    }
  } finally {
    cleanup();
  }
});

test("the finished-runner reads still answer newest first, of the asked label set, finished ones only", () => {
  const { store, cleanup } = storeWithHistory();
  try {
    const small = store.finishedRunners("small", 32);
    assert.equal(small.length, 32);
    assert.ok(small.every((r) => r.labelSet === "small" && (r.state === "gone" || r.state === "failed")));
    assert.deepEqual(small.map((r) => r.name), Array.from({ length: 32 }, (_, k) => `runner-a${499 - 2 * k}`));
    const recent = store.recentFinishedRunners(30);
    assert.deepEqual(recent.map((r) => r.name), Array.from({ length: 30 }, (_, k) => `runner-a${499 - k}`));
  } finally {
    cleanup();
  }
});

test("runners by state: the live ones as held, the finished ones since start, not every record the retention window keeps", () => {
  const { store, file, cleanup } = storeWithHistory();
  try {
    // 500 finished before, one busy: counted as this store saw them finish.
    assert.deepEqual(store.countByState(), { busy: 1, gone: 428, failed: 72 });
    // Reopened (a restart): the finished records are still held, but none finished since.
    const reopened = new Store(file);
    try {
      reopened.insertRunner({ name: "runner-new", labelSet: "small", scope: "repo:acme/app", madeForJob: null });
      assert.deepEqual(reopened.countByState(), { busy: 1, requested: 1 });
      reopened.setRunnerState("runner-new", "gone");
      reopened.setRunnerState("runner-live", "done");
      assert.deepEqual(reopened.countByState(), { done: 1, gone: 1 });
    } finally {
      reopened.close();
    }
  } finally {
    cleanup();
  }
});
