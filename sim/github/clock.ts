// Simulated time: every simulated duration goes through `scaled()` so tests can run a
// 30 s job in 30 ms. Timers are tracked so stop() leaves no handle behind.
export class SimClock {
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(public scale: number) {}

  scaled(ms: number): number {
    return Math.max(0, Math.round(ms * this.scale));
  }

  /** Runs `fn` after `ms` simulated milliseconds. Returns a cancel function. */
  after(ms: number, fn: () => void): () => void {
    if (this.stopped) return () => {};
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, this.scaled(ms));
    this.timers.add(t);
    return () => {
      clearTimeout(t);
      this.timers.delete(t);
    };
  }

  /** Resolves after `ms` simulated milliseconds (immediately once stopped). */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopped) return resolve();
      const wake = () => {
        this.pendingSleeps.delete(wake);
        cancel();
        resolve();
      };
      const cancel = this.after(ms, wake);
      this.pendingSleeps.add(wake);
    });
  }

  private readonly pendingSleeps = new Set<() => void>();

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const wake of this.pendingSleeps) wake();
    this.pendingSleeps.clear();
  }
}

export const isoNow = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
