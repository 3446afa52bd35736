// After runners of a label set were given up one after another (a missing privilege, a broken
// template), new ones wait: 6 backoffs after the first failure, doubling, at most 15 min. Without
// this a queued job would spend clones in a tight loop; with it the operator sees why and when.
import type { Logger } from "pino";
import type { Store } from "../store/store.js";

export class HoldBack {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly o: {
      store: Store;
      retryBackoffMs: () => number;
      logger: Logger;
      /** Called once a hold ends: demand is counted again. */
      onHoldEnded: () => void;
    },
  ) {}

  /** Whether new runners of this set wait now (and a timer is set to count demand again after). */
  heldBack(labelSet: string): boolean {
    // Past ~10 failures in a row the wait is at its cap: older history changes nothing.
    const finished = this.o.store.finishedRunners(labelSet, 32).filter((r) => r.lastError !== "not needed");
    let failures = 0;
    for (const r of finished) {
      if (r.state !== "failed") break;
      failures++;
    }
    if (failures === 0) return false;
    const waitMs = Math.min(this.o.retryBackoffMs() * 6 * 2 ** (failures - 1), 15 * 60_000);
    const remaining = finished[0].stateSince + waitMs - Date.now();
    if (remaining <= 0) return false;
    if (!this.timers.has(labelSet)) {
      this.o.logger.warn({ labelSet, failures, lastError: finished[0].lastError, retryInMs: remaining }, "runners of this label set keep failing: holding back new ones");
      const t = setTimeout(() => {
        this.timers.delete(labelSet);
        this.o.onHoldEnded();
      }, remaining + 10);
      t.unref();
      this.timers.set(labelSet, t);
    }
    return true;
  }

  stop(): void {
    for (const t of this.timers.values()) clearTimeout(t);
  }
}
