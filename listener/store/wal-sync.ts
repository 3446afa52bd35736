// Durability without blocking the event loop. A commit made with synchronous=NORMAL in WAL mode is
// written to the WAL but not synced; SQLite's synchronous=FULL differs only by one sync of the WAL
// after the commit frame (sqlite3.c, sqlite3WalFrames: `if( isCommit && WAL_SYNC_FLAGS(sync_flags)!=0 )`
// → sqlite3OsSync). NORMAL still syncs the WAL header on a restart and the WAL before a checkpoint,
// so syncing the WAL file ourselves, in libuv's thread pool, gives a commit FULL's guarantee while
// the loop goes on answering. Callers share syncs: one in flight at a time, and everyone who asks
// while one runs waits for the next (the running one may have begun before their commit).

export class WalSync {
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;

  /** `syncOnce` makes everything written to the WAL before it was called durable. */
  constructor(private readonly syncOnce: () => Promise<void>) {}

  /** Resolves once every commit made before this call is on disk; rejects if the sync failed. */
  sync(): Promise<void> {
    if (!this.running) return this.start();
    if (!this.next) {
      this.next = this.running
        .catch(() => undefined)
        .then(() => {
          this.next = null;
          return this.start();
        });
    }
    return this.next;
  }

  /** The sync running now, if any. */
  inFlight(): Promise<void> | null {
    return this.running;
  }

  private start(): Promise<void> {
    const p: Promise<void> = this.syncOnce().finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }
}
