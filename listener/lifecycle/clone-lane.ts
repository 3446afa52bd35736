// The clone lane: clones of one template must never overlap. PVE takes a lock on the template for
// a clone and fails a second clone at once with "CT is locked (disk)" (pve-container src/PVE/API2/LXC.pm clone_vm: the source's lock is held for the whole clone), so
// applies (which clone) queue per template here. Destroys never pass through the lane: tearing a
// runner down must not wait behind clones. A lane exists only while a clone runs or waits in it:
// the last one out removes it, so the map never grows with keys that were used once.
import PQueue from "p-queue";
import type { Logger } from "pino";

export interface CloneLaneOptions {
  /** Clones allowed at once per template. Default 1: PVE allows no more. */
  concurrencyPerTemplate?: number;
  logger: Logger;
}

export class CloneLane {
  private readonly lanes = new Map<string, { queue: PQueue; tasks: number }>();
  private readonly concurrency: number;
  private readonly log: Logger;

  constructor(opts: CloneLaneOptions) {
    this.concurrency = opts.concurrencyPerTemplate ?? 1;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) throw new Error(`concurrencyPerTemplate must be a positive integer (got ${this.concurrency})`);
    this.log = opts.logger;
  }

  /** Runs `fn` when the lane of `templateKey` (e.g. "pve/9000") has room; its result or error passes through. */
  run<T>(templateKey: string, runner: string, fn: () => Promise<T>): Promise<T> {
    const entry = this.laneFor(templateKey);
    const lane = entry.queue;
    entry.tasks++;
    const enqueuedAt = Date.now();
    const ahead = lane.pending + lane.size;
    if (ahead >= this.concurrency) this.log.info({ runner, templateKey, ahead }, "waiting for the clone lane");
    return lane.add(async () => {
      const waitedMs = Date.now() - enqueuedAt;
      this.log.info({ runner, templateKey, waitedMs }, "clone lane entered");
      const started = Date.now();
      try {
        return await fn();
      } finally {
        this.log.debug({ runner, templateKey, heldMs: Date.now() - started }, "clone lane left");
        // Counted here, not by p-queue (which settles its own count a microtask later): when the
        // caller sees the result, an emptied lane is already gone.
        if (--entry.tasks === 0 && this.lanes.get(templateKey) === entry) this.lanes.delete(templateKey);
      }
    });
  }

  /** Per template with a clone running or waiting: how many run now and how many wait. */
  stats(): { [templateKey: string]: { running: number; waiting: number } } {
    const out: { [templateKey: string]: { running: number; waiting: number } } = {};
    for (const [key, { queue }] of this.lanes) out[key] = { running: queue.pending, waiting: queue.size };
    return out;
  }

  private laneFor(templateKey: string): { queue: PQueue; tasks: number } {
    let entry = this.lanes.get(templateKey);
    if (!entry) {
      entry = { queue: new PQueue({ concurrency: this.concurrency }), tasks: 0 };
      this.lanes.set(templateKey, entry);
    }
    return entry;
  }
}
