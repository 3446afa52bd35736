// The clone lane: per-template serialization of applies (measured), parallel lanes for different
// templates, and destroys that bypass the lane and are not delayed by it (real terraform).
import { test, describe, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CloneLane } from "../../../listener/lifecycle/clone-lane.js";
import { Terraform } from "../../../listener/adapters/terraform/terraform.js";
import { captureLog, writeStack } from "../../fixtures/terraform/helpers.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Tracks how many tasks run at once, per key. */
function concurrencyMeter() {
  const now = new Map<string, number>();
  const max = new Map<string, number>();
  return {
    async task(key: string, ms: number): Promise<string> {
      now.set(key, (now.get(key) ?? 0) + 1);
      max.set(key, Math.max(max.get(key) ?? 0, now.get(key)!));
      await sleep(ms);
      now.set(key, now.get(key)! - 1);
      return key;
    },
    max: (key: string) => max.get(key) ?? 0,
  };
}

describe("CloneLane", () => {
  test("clones of one template run one at a time, in arrival order", async () => {
    const log = captureLog();
    const lane = new CloneLane({ logger: log.logger });
    const meter = concurrencyMeter();
    const order: string[] = [];
    const t0 = Date.now();
    const runs = [1, 2, 3, 4].map((i) =>
      lane.run("pve/9000", `runner-${i}`, async () => {
        await meter.task("pve/9000", 60);
        order.push(`runner-${i}`);
        return i;
      }),
    );
    await sleep(10);
    assert.deepEqual(lane.stats(), { "pve/9000": { running: 1, waiting: 3 } });
    assert.deepEqual(await Promise.all(runs), [1, 2, 3, 4]);
    assert.ok(Date.now() - t0 >= 4 * 60 - 5, "took at least the four clones back to back");
    assert.equal(meter.max("pve/9000"), 1);
    assert.deepEqual(order, ["runner-1", "runner-2", "runner-3", "runner-4"]);
    assert.deepEqual(lane.stats(), {}, "the emptied lane is gone");

    // The wait is logged per runner, and the last one waited for the three before it.
    const entered = log.lines.filter((l) => l.msg === "clone lane entered");
    assert.deepEqual(entered.map((l) => l.runner), ["runner-1", "runner-2", "runner-3", "runner-4"]);
    assert.ok(Number(entered[0].waitedMs) < 30);
    assert.ok(Number(entered[3].waitedMs) >= 3 * 60 - 5, `runner-4 waited ${entered[3].waitedMs} ms`);
    assert.ok(entered.every((l) => l.templateKey === "pve/9000"));
  });

  test("different templates have their own lanes and clone in parallel", async () => {
    const lane = new CloneLane({ logger: captureLog().logger });
    const meter = concurrencyMeter();
    const t0 = Date.now();
    const keys = ["pve/9000", "pve/9001", "pve2/9000"];
    const runs = Promise.all(keys.map((k, i) => lane.run(k, `runner-${i}`, () => meter.task("all", 150))));
    await sleep(10);
    assert.deepEqual(Object.keys(lane.stats()).sort(), [...keys].sort());
    await runs;
    const took = Date.now() - t0;
    assert.equal(meter.max("all"), 3);
    assert.ok(took < 2 * 150, `three lanes took ${took} ms`);
  });

  test("issue 14: lanes of keys used once are freed (a flood of made-up template keys leaves no state)", async () => {
    const lane = new CloneLane({ logger: captureLog().logger });
    await Promise.all(Array.from({ length: 500 }, (_, i) => lane.run(`node${i}/${100 + i}`, `runner-${i}`, async () => i)));
    assert.deepEqual(lane.stats(), {});
    // A failed clone frees its lane too, and a lane freed and made again still serializes.
    await assert.rejects(lane.run("pve/9000", "runner-bad", () => Promise.reject(new Error("refused"))), /refused/);
    assert.deepEqual(lane.stats(), {});
    const meter = concurrencyMeter();
    await Promise.all([1, 2, 3].map((i) => lane.run("pve/9000", `runner-${i}`, () => meter.task("pve/9000", 20))));
    assert.equal(meter.max("pve/9000"), 1);
    assert.deepEqual(lane.stats(), {});
  });

  test("a failed clone frees the lane and its error reaches the caller", async () => {
    const lane = new CloneLane({ logger: captureLog().logger });
    const failing = lane.run("pve/9000", "runner-bad", async () => {
      await sleep(20);
      throw new Error("CT is locked (disk)");
    });
    const next = lane.run("pve/9000", "runner-good", async () => "cloned");
    await assert.rejects(failing, /CT is locked \(disk\)/);
    assert.equal(await next, "cloned");
  });

  test("concurrencyPerTemplate raises the lane's width", async () => {
    const lane = new CloneLane({ concurrencyPerTemplate: 2, logger: captureLog().logger });
    const meter = concurrencyMeter();
    await Promise.all([1, 2, 3, 4, 5].map((i) => lane.run("pve/9000", `runner-${i}`, () => meter.task("k", 40))));
    assert.equal(meter.max("k"), 2);
    assert.throws(() => new CloneLane({ concurrencyPerTemplate: 0, logger: captureLog().logger }), /positive integer/);
  });

  describe("with real terraform", () => {
    let root: string;
    before(async () => {
      root = await mkdtemp(join(tmpdir(), "pve-runners-lane-"));
    });
    after(async () => {
      await rm(root, { recursive: true, force: true });
    });

    test("a destroy bypassing the lane is not delayed by a clone holding it", async () => {
      const log = captureLog();
      const tf = new Terraform({ binary: "terraform", sharedInitDir: join(root, "shared-init"), logger: log.logger });
      const lane = new CloneLane({ logger: log.logger });
      const key = "pve/9000";
      const done = await writeStack(join(root, "runner-done"), { r: {} });
      const slow = await writeStack(join(root, "runner-slow"), { r: { command: "exec sleep 2" } });
      const queued = await writeStack(join(root, "runner-queued"), { r: {} });
      await tf.prepare(done.file);
      await lane.run(key, "runner-done", () => tf.apply(done.workingDir, { runner: "runner-done" }));

      const t0 = Date.now();
      let slowAt = 0;
      let queuedAt = 0;
      const slowApply = lane.run(key, "runner-slow", () => tf.apply(slow.workingDir, { runner: "runner-slow" })).then(() => (slowAt = Date.now()));
      const queuedApply = lane.run(key, "runner-queued", () => tf.apply(queued.workingDir, { runner: "runner-queued" })).then(() => (queuedAt = Date.now()));
      await log.waitFor((l) => l.tf === "provision_progress" && l.runner === "runner-slow");
      assert.deepEqual(lane.stats()[key], { running: 1, waiting: 1 });

      // Teardown does not take the lane: it finishes while the clone still holds it.
      await tf.destroy(done.workingDir, { runner: "runner-done" });
      const destroyedAt = Date.now();
      assert.deepEqual(await tf.stateResources(done.workingDir), []);
      await Promise.all([slowApply, queuedApply]);
      assert.ok(destroyedAt < slowAt, "destroy finished before the clone holding the lane");
      assert.ok(destroyedAt - t0 < 1_500, `destroy took ${destroyedAt - t0} ms`);
      // ...while the apply behind it in the lane did wait.
      assert.ok(queuedAt > slowAt, "the queued apply ran after the slow one");
      const waited = log.lines.find((l) => l.msg === "clone lane entered" && l.runner === "runner-queued");
      assert.ok(Number(waited?.waitedMs) >= 1_500, `queued apply waited ${waited?.waitedMs} ms`);

      await Promise.all([slow, queued].map((s, i) => tf.destroy(s.workingDir, { runner: `runner-${i}` })));
    });
  });
});
