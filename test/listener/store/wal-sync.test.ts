import { test, describe } from "node:test";
import assert from "node:assert/strict";
import express from "express";
import type { AddressInfo } from "node:net";
import { mkdtempSync, readlinkSync, readdirSync, realpathSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sign } from "@octokit/webhooks-methods";
import { pino } from "pino";
import { WalSync } from "../../../listener/store/wal-sync.js";
import { Store } from "../../../listener/store/store.js";
import { webhookRouter } from "../../../listener/http/webhook.js";

function deferred() {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}
const tick = () => new Promise((r) => setImmediate(r));

describe("WalSync: shared syncs that never miss a commit", () => {
  /** A WalSync whose syncs end when the test says: one deferred per sync started. */
  function controlledSync() {
    const runs: Array<ReturnType<typeof deferred>> = [];
    const w = new WalSync(() => {
      const d = deferred();
      runs.push(d);
      return d.promise;
    });
    return { w, runs };
  }

  test("callers while a sync runs wait for the next one, and share it", async () => {
    const { w, runs } = controlledSync();
    const done: string[] = [];
    const a = w.sync().then(() => done.push("a"));
    assert.equal(runs.length, 1, "the first caller starts a sync");
    // b and c committed after that sync may have begun: they need the next one.
    const b = w.sync().then(() => done.push("b"));
    const c = w.sync().then(() => done.push("c"));
    assert.equal(runs.length, 1, "no second sync while one runs");
    runs[0].resolve();
    await a;
    await tick();
    assert.deepEqual(done, ["a"], "the running sync does not answer those who asked during it");
    assert.equal(runs.length, 2, "one more sync for all who waited");
    runs[1].resolve();
    await Promise.all([b, c]);
    assert.deepEqual(done, ["a", "b", "c"]);
    // Idle again: a new caller starts its own.
    const d = w.sync();
    assert.equal(runs.length, 3);
    runs[2].resolve();
    await d;
  });

  test("a failed sync fails its callers only; the next one is tried afresh", async () => {
    const { w, runs } = controlledSync();
    const a = w.sync();
    const b = w.sync();
    runs[0].reject(new Error("EIO"));
    await assert.rejects(a, /EIO/);
    await tick();
    assert.equal(runs.length, 2, "the waiters' sync still runs");
    runs[1].resolve();
    await b;
  });
});

describe("Store: unsynced commits and the WAL sync", () => {
  test("{ sync: false } commits without a sync and puts synchronous=FULL back, after a throw too", () => {
    const dir = mkdtempSync(join(tmpdir(), "walsync-"));
    const store = new Store(join(dir, "state.db"));
    const level = () => (store as unknown as { db: { pragma(s: string, o: object): unknown } }).db.pragma("synchronous", { simple: true });
    assert.equal(level(), 2, "FULL by default");
    let inside: unknown;
    store.transaction(() => (inside = level()), { sync: false });
    assert.equal(inside, 1, "NORMAL inside the unsynced commit");
    assert.equal(level(), 2);
    assert.throws(() => store.transaction(() => { throw new Error("boom"); }, { sync: false }), /boom/);
    assert.equal(level(), 2, "FULL again after a rollback");
    store.transaction(() => store.transaction(() => (inside = level()), { sync: false }));
    assert.equal(inside, 2, "nested: the outer (synced) transaction decides");
    store.close();
  });

  test("syncWal fdatasyncs the database's WAL file (a handle of its own, in the thread pool)", async () => {
    const dir = realpathSync(mkdtempSync(join(tmpdir(), "walsync-")));
    const file = join(dir, "state.db");
    const store = new Store(file);
    const probe = await open(join(dir, "probe"), "w");
    const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
    await probe.close();
    const synced: string[] = [];
    const original = proto.datasync;
    proto.datasync = function (this: { fd: number }) {
      synced.push(readlinkSync(`/proc/self/fd/${this.fd}`));
      return original.call(this);
    };
    try {
      store.recordDeliveriesChecked([{ guid: "aaaaaaaa-0000-0000-0000-000000000001", event: "workflow_job", action: "queued", jobId: 1, payload: "{}" }], { sync: false });
      await store.syncWal();
      assert.deepEqual(synced, [`${file}-wal`]);
      store.recordDeliveriesChecked([{ guid: "aaaaaaaa-0000-0000-0000-000000000002", event: "workflow_job", action: "queued", jobId: 2, payload: "{}" }], { sync: false });
      await Promise.all([store.syncWal(), store.syncWal()]);
      assert.ok(synced.length >= 2 && synced.length <= 3 && synced.every((p) => p === `${file}-wal`), `${synced}`);
      const walHandles = readdirSync("/proc/self/fd").filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === `${file}-wal`;
        } catch {
          return false;
        }
      });
      assert.equal(walHandles.length, 2, "SQLite's handle and the one kept for syncing");
    } finally {
      proto.datasync = original;
      store.close();
    }
    // In memory there is nothing to sync.
    const mem = new Store(":memory:");
    await mem.syncWal();
    mem.close();
  });
});

describe("Store: checkpoints on a thread of their own", () => {
  const insert = (store: Store, from: number, n: number) => {
    for (let i = from; i < from + n; i++) {
      const guid = `cccccccc-0000-0000-0000-${String(i).padStart(12, "0")}`;
      store.recordDeliveriesChecked([{ guid, event: "workflow_job", action: "queued", jobId: i, payload: "p".repeat(6000) + i }], { sync: false });
    }
  };
  const threads = () => readdirSync("/proc/self/task").length;

  test("the writer never checkpoints below the safety net; the thread copies the WAL into the database; stop closes it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "walckpt-"));
    const file = join(dir, "state.db");
    // Without the thread: SQLite's autocheckpoint (1,000 pages) copies into the database file as it commits.
    const plain = new Store(join(dir, "plain.db"));
    insert(plain, 0, 1000);
    assert.ok(statSync(join(dir, "plain.db")).size > 4_000_000, "the writer checkpointed");
    plain.close();

    const store = new Store(file);
    const before = threads();
    store.checkpointInBackground({ intervalMs: 100 });
    insert(store, 0, 1000);
    const written = statSync(file).size;
    assert.ok(written < 1_000_000, `the writer did not checkpoint (${written} bytes in the database file)`);
    assert.ok(statSync(`${file}-wal`).size > 4_000_000, "it is all in the WAL");
    const deadline = Date.now() + 10_000;
    while (statSync(file).size < 4_000_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(statSync(file).size > 4_000_000, "the thread checkpointed it");
    assert.ok(threads() > before, "a thread of its own");
    await store.stopBackgroundCheckpoints();
    assert.equal(threads(), before, "stopped: the thread is gone");
    insert(store, 1000, 10);
    assert.ok(store.hasDelivery("cccccccc-0000-0000-0000-000000001009"));
    store.close();
  });

  test("a checkpoint thread that dies hands checkpoints back to the writer, and says so", async () => {
    const dir = mkdtempSync(join(tmpdir(), "walckpt-"));
    const file = join(dir, "state.db");
    const store = new Store(file);
    const errors: string[] = [];
    store.checkpointInBackground({ intervalMs: 60_000, onError: (m) => errors.push(m) });
    const worker = (store as unknown as { checkpointer: { terminate(): Promise<number> } }).checkpointer;
    await worker.terminate();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(errors.length, 1);
    assert.match(errors[0], /checkpoint thread exited/);
    insert(store, 0, 1000);
    assert.ok(statSync(file).size > 4_000_000, "the writer checkpoints again (SQLite's 1,000 pages)");
    store.close();
  });
});

describe("webhook: acknowledged only once durable", () => {
  const SECRET = "s3cret";
  async function serve(store: Store, delivered: string[]) {
    const app = express();
    app.use(webhookRouter("/hook", { secret: SECRET, bodyLimitBytes: 64 * 1024, store, logger: pino({ level: "silent" }), onDelivery: (g) => delivered.push(g) }));
    const server = app.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` };
  }
  const body = (jobId: number) =>
    JSON.stringify({
      action: "queued",
      workflow_job: { id: jobId, run_id: 70, run_attempt: 1, status: "queued", conclusion: null, labels: ["self-hosted"], runner_name: null },
      repository: { full_name: "acme/app", owner: { login: "acme" } },
    });
  const post = async (url: string, b: string, guid: string) =>
    fetch(url, { method: "POST", body: b, headers: { "content-type": "application/json", "x-github-event": "workflow_job", "x-github-delivery": guid, "x-hub-signature-256": await sign(SECRET, b) } });

  test("the 202 waits for the WAL sync; a failed sync answers 503 but the recorded delivery is still processed", async () => {
    const store = new Store(":memory:");
    const syncs: Array<ReturnType<typeof deferred>> = [];
    store.syncWal = () => {
      const d = deferred();
      syncs.push(d);
      return d.promise;
    };
    const delivered: string[] = [];
    const { server, url } = await serve(store, delivered);
    try {
      let answered = false;
      const first = post(url, body(1), "bbbbbbbb-0000-0000-0000-000000000001").then((r) => ((answered = true), r));
      while (syncs.length === 0) await new Promise((r) => setTimeout(r, 5));
      assert.ok(store.hasDelivery("bbbbbbbb-0000-0000-0000-000000000001"), "committed before the sync");
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(answered, false, "no answer while the sync runs");
      syncs[0].resolve();
      assert.equal((await first).status, 202);
      await tick();
      assert.deepEqual(delivered, ["bbbbbbbb-0000-0000-0000-000000000001"]);

      const second = post(url, body(2), "bbbbbbbb-0000-0000-0000-000000000002");
      while (syncs.length === 1) await new Promise((r) => setTimeout(r, 5));
      syncs[1].reject(new Error("EIO: the disk"));
      const r = await second;
      assert.equal(r.status, 503, "not durable, not acknowledged: GitHub shows it for redelivery");
      await tick();
      // Its record is in the store: a redelivery would be a duplicate and not handed on, so it goes on now.
      assert.deepEqual(delivered, ["bbbbbbbb-0000-0000-0000-000000000001", "bbbbbbbb-0000-0000-0000-000000000002"], "processed all the same");

      // A duplicate's answer waits for a sync too: its first record may not be on disk yet.
      const dup = post(url, body(1), "bbbbbbbb-0000-0000-0000-000000000001");
      while (syncs.length === 2) await new Promise((r) => setTimeout(r, 5));
      syncs[2].resolve();
      assert.equal((await dup).status, 202);
    } finally {
      server.close();
      store.close();
    }
  });
});
