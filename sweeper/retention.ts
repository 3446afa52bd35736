// Retention: the store keeps full webhook payloads, jobs and runners; without pruning they grow for
// ever. Once an hour (and at start) what is older than retention.days and finished is deleted
// (Store.prune: never an unprocessed delivery, an open job of ours or a live runner).
import type { Logger } from "pino";
import type { PruneReport, Store } from "../listener/store/store.js";

const DAY_MS = 86_400_000;

/** One prune now; `days` is read at each call, so a reload takes effect at the next one. */
export function pruneOnce(store: Store, days: number, logger: Logger, now = Date.now()): PruneReport {
  const report = store.prune(now - days * DAY_MS);
  if (report.deliveries + report.jobs + report.runners > 0) logger.info({ ...report, retentionDays: days }, "retention: old finished records deleted");
  return report;
}

export interface RetentionSchedule {
  stop(): void;
}

/** Prunes at once and then every `everyMs` (default 1 h); a failure is logged and retried next time. */
export function scheduleRetention(store: Store, days: () => number, logger: Logger, everyMs = 3_600_000): RetentionSchedule {
  const run = () => {
    try {
      pruneOnce(store, days(), logger);
    } catch (err) {
      logger.error({ err: (err as Error).message }, "retention: prune failed; the next one retries");
    }
  };
  run();
  const timer = setInterval(run, everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
