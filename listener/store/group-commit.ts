// Group commit: writes that arrive in the same turn of the event loop share one SQLite transaction,
// so one fsync (synchronous=FULL) makes a whole batch durable. Under load a turn holds many webhook
// requests, and the cost per delivery falls as the load rises; alone, a write waits one setImmediate.
// Each caller still learns its own outcome, and nothing is acknowledged before its commit.

export interface GroupCommitOptions {
  /** Gather for this long before committing (work nobody waits on: bigger batches, fewer commits). */
  delayMs?: number;
  /**
   * Something the batch may as well wait for: a WAL sync in flight. Its callers would wait for the
   * next sync anyway, so the batch gathers until then and one commit serves them all.
   */
  busy?: () => Promise<unknown> | null;
}

export class GroupCommit<I, O> {
  private pending: Array<{ item: I; resolve: (o: O) => void; reject: (e: unknown) => void }> = [];
  private scheduled = false;

  /** `commit` writes a whole batch in one transaction and returns one outcome per item, in order. */
  constructor(
    private readonly commit: (items: I[]) => O[],
    private readonly options: GroupCommitOptions = {},
  ) {}

  add(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        if (this.options.delayMs) setTimeout(() => this.flushWhenIdle(), this.options.delayMs);
        else setImmediate(() => this.flushWhenIdle());
      }
    });
  }

  private flushWhenIdle(): void {
    const busy = this.options.busy?.();
    if (!busy) return this.flush();
    void busy.then(
      () => setImmediate(() => this.flush()),
      () => setImmediate(() => this.flush()),
    );
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = [];
    let outcomes: O[];
    try {
      outcomes = this.commit(batch.map((b) => b.item));
    } catch (err) {
      // The transaction rolled back as a whole: nobody in it was written.
      for (const b of batch) b.reject(err);
      return;
    }
    batch.forEach((b, i) => b.resolve(outcomes[i]));
  }
}
