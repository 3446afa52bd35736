// A label set whose runners were given up one after another holds back new ones: 6 backoffs after
// the latest failure, doubling per failure in a row, at most 15 min; then demand is counted again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { pino } from "pino";
import { Store } from "../../../listener/store/store.js";
import { HoldBack } from "../../../listener/lifecycle/hold-back.js";

const log = pino({ level: "silent" });
let n = 0;

/** A store whose clock the test sets, and runners of set "linux" ended in the given order (oldest first). */
function storeWith(ends: Array<{ state: "failed" | "gone"; lastError?: string; at: number }>): Store {
  let now = 0;
  const store = new Store(":memory:", () => now);
  for (const e of ends) {
    now = e.at;
    const name = `runner-${(n++).toString(16).padStart(8, "0")}`;
    store.insertRunner({ name, labelSet: "linux", scope: "repo:acme/app", madeForJob: null });
    store.setRunnerState(name, e.state, { lastError: e.lastError ?? "apply failed" });
  }
  return store;
}

function holdBack(store: Store, backoffMs: number, onHoldEnded = () => {}) {
  return new HoldBack({ store, retryBackoffMs: () => backoffMs, logger: log, onHoldEnded });
}

test("no failure, or a runner that ended well after the failures: nothing is held back", () => {
  const t = Date.now();
  assert.equal(holdBack(storeWith([]), 1_000).heldBack("linux"), false);
  const h = holdBack(storeWith([{ state: "failed", at: t - 10 }, { state: "gone", lastError: "surplus", at: t - 5 }]), 1_000);
  assert.equal(h.heldBack("linux"), false);
  h.stop();
});

test("failures in a row double the wait from 6 backoffs; runners dropped as not needed do not break the row", () => {
  const t = Date.now();
  // One failure: 6 s with a 1 s backoff. Held 5 s after it, free 7 s after.
  const one = (ago: number) => holdBack(storeWith([{ state: "failed", at: t - ago }]), 1_000);
  const a = one(5_000);
  assert.equal(a.heldBack("linux"), true);
  a.stop();
  assert.equal(one(7_000).heldBack("linux"), false);
  // Two in a row, a not-needed drop between them: 12 s.
  const two = (ago: number) => holdBack(storeWith([{ state: "failed", at: t - ago - 2 }, { state: "gone", lastError: "not needed", at: t - ago - 1 }, { state: "failed", at: t - ago }]), 1_000);
  const b = two(11_000);
  assert.equal(b.heldBack("linux"), true);
  b.stop();
  assert.equal(two(13_000).heldBack("linux"), false);
  // Another label set is not held back by these.
  assert.equal(two(11_000).heldBack("arm"), false);
});

test("the wait is at most 15 minutes, however many failures came in a row", () => {
  const t = Date.now();
  const many = (ago: number) => holdBack(storeWith(Array.from({ length: 20 }, (_, i) => ({ state: "failed" as const, at: t - ago - 20 + i }))), 60_000);
  const h = many(14 * 60_000);
  assert.equal(h.heldBack("linux"), true);
  h.stop();
  assert.equal(many(15 * 60_000 + 1_000).heldBack("linux"), false);
});

test("when the hold ends demand is counted again, once, however often it was asked meanwhile; stop() cancels that", async () => {
  const t = Date.now();
  let ended = 0;
  // 6 × 5 ms = 30 ms from the failure.
  const h = holdBack(storeWith([{ state: "failed", at: t }]), 5, () => ended++);
  assert.equal(h.heldBack("linux"), true);
  assert.equal(h.heldBack("linux"), true);
  await delay(150);
  assert.equal(ended, 1);
  assert.equal(h.heldBack("linux"), false);

  let stoppedEnded = 0;
  const s = holdBack(storeWith([{ state: "failed", at: Date.now() }]), 5, () => stoppedEnded++);
  assert.equal(s.heldBack("linux"), true);
  s.stop();
  await delay(150);
  assert.equal(stoppedEnded, 0);
});
