// `sweep --dry-run` changes nothing: it works on an in-memory copy of the store, so not even the
// SQLite file, its -wal/-shm or a migration is written (before, opening the store wrote them all).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { buildParts } from "../../listener/app/service.js";
import { sweep } from "../../sweeper/sweep.js";
import { quietLogger, settled, startE2E } from "../e2e/harness.js";

/** Every file under dir: name, size, mtime and content hash-free bytes (small dirs only). */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const path = join(e.parentPath, e.name);
    const st = statSync(path);
    out.set(path, e.isFile() ? `${st.mtimeMs} ${st.size} ${readFileSync(path).toString("base64")}` : `dir ${st.mtimeMs}`);
  }
  return out;
}

test("sweep --dry-run reports what it would do and changes no file in the state dir", { timeout: 180_000 }, async () => {
  const e = await startE2E();
  try {
    const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 200 });
    await settled(e, [job.id]);
    const stateDir = e.world.config.stateDir;
    // A stack dir without a record: a real sweep would remove it.
    mkdirSync(join(stateDir, "runners", "runner-0dd0dd00", "stacks", "runner"), { recursive: true });
    await e.restart({
      beforeStart: async () => {
        assert.ok(existsSync(join(stateDir, "pve-runners.sqlite")));
        const before = snapshot(stateDir);
        const { store, sweepDeps } = buildParts(e.world.config, e.world.secrets, quietLogger(), { dryRun: true });
        try {
          const report = await sweep(sweepDeps(), { dryRun: true });
          assert.ok(report.actions.some((a) => a.kind === "remove-stack" && a.dir.endsWith("runner-0dd0dd00")), `would remove the orphan stack dir: ${JSON.stringify(report.actions)}`);
          assert.ok(store.runners().length >= 1, "the copy holds the records");
        } finally {
          store.close();
        }
        assert.deepEqual(snapshot(stateDir), before, "no file created, changed or removed");
      },
    });
    // With the listener running (its -wal and -shm exist): the copy sees its committed rows, and
    // nothing new appears in the state dir.
    const names = () => readdirSync(stateDir, { recursive: true }).map(String).sort();
    const before = names();
    const { store } = buildParts(e.world.config, e.world.secrets, quietLogger(), { dryRun: true });
    try {
      assert.deepEqual(store.runners().map((r) => r.name).sort(), e.service.store.runners().map((r) => r.name).sort());
    } finally {
      store.close();
    }
    assert.deepEqual(names(), before);
  } finally {
    await e.stop();
  }
});

test("sweep --dry-run on a state dir without a store: an empty copy, nothing created", async () => {
  const e = await startE2E();
  try {
    const config = { ...e.world.config, stateDir: join(e.world.config.stateDir, "never-used") };
    const { store } = buildParts(config, e.world.secrets, quietLogger(), { dryRun: true });
    assert.deepEqual(store.runners(), []);
    store.close();
    assert.equal(existsSync(config.stateDir), false);
  } finally {
    await e.stop();
  }
});
