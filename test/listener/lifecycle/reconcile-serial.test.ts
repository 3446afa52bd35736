// Demand.reconcile() (Pipeline.reconcile()): one pass at a time, and no request for a pass is ever dropped.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Demand } from "../../../listener/lifecycle/demand.js";

/** reconcile() on a stand-in `this` whose pass only counts (and may call reconcile() itself). */
function counter(inside?: (self: { reconcile(): Promise<void> }, pass: number) => void) {
  const self = {
    reconciling: null as Promise<void> | null,
    reconcileAgain: false,
    passes: 0,
    reconcileOnce() {
      self.passes++;
      inside?.(self, self.passes);
    },
    reconcile(): Promise<void> {
      return Demand.prototype.reconcile.call(self as unknown as Demand);
    },
  };
  return self;
}

test("two calls in one tick run two passes: the second is not answered by the first's finished pass", async () => {
  const p = counter();
  const a = p.reconcile();
  const b = p.reconcile(); // e.g. a second runner driver ending in the same microtask batch
  await Promise.all([a, b]);
  assert.equal(p.passes, 2);
});

test("a call from inside a pass runs one more pass after it, not a nested one", async () => {
  let depth = 0;
  let maxDepth = 0;
  const p = counter((self, pass) => {
    depth++;
    maxDepth = Math.max(maxDepth, depth);
    if (pass === 1) void self.reconcile();
    depth--;
  });
  await p.reconcile();
  assert.equal(p.passes, 2);
  assert.equal(maxDepth, 1);
  assert.equal(p.reconciling, null);
});

test("a pass that throws rejects its promise and leaves reconcile usable", async () => {
  const p = counter((_self, pass) => {
    if (pass === 1) throw new Error("boom");
  });
  await assert.rejects(p.reconcile(), /boom/);
  await p.reconcile();
  assert.equal(p.passes, 2);
});
