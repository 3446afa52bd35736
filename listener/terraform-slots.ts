// At most N terraform processes at once, handed out so that every clone lane stays fed. An apply
// holds its slot while it waits in its template's lane, so first-come order let a few lanes take
// every slot while another sat idle (a 50-job burst: one lane idle 4.7 s of 36). A freed slot goes
// to the waiting run whose lane has the fewest runs going, the earliest first among equals; runs
// without a lane (destroys) form a group of their own.

interface Waiting {
  group: string;
  start: () => void;
}

/** A slot held until release() (idempotent). */
export interface SlotLease {
  release(): void;
}

export class TerraformSlots {
  private running = 0;
  private readonly byGroup = new Map<string, number>();
  private readonly waiting: Waiting[] = [];

  constructor(private readonly concurrency: number) {}

  /**
   * Waits for a slot and holds it until the lease is released; an abort while waiting rejects.
   * `group` is the clone lane (template key) the run will wait in, if any.
   */
  async acquire(group: string | undefined, signal?: AbortSignal): Promise<SlotLease> {
    const key = group ?? "";
    signal?.throwIfAborted();
    if (this.running < this.concurrency) this.take(key);
    else {
      await new Promise<void>((start, reject) => {
        const entry: Waiting = { group: key, start: () => (signal?.removeEventListener("abort", onAbort), start()) };
        const onAbort = () => {
          const at = this.waiting.indexOf(entry);
          if (at >= 0) this.waiting.splice(at, 1);
          reject(signal!.reason);
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        this.waiting.push(entry);
      });
    }
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.release(key);
      },
    };
  }

  /** Runs going and waiting, for logs and tests. */
  stats(): { running: number; waiting: number; byGroup: Record<string, number> } {
    return { running: this.running, waiting: this.waiting.length, byGroup: Object.fromEntries(this.byGroup) };
  }

  private take(key: string): void {
    this.running++;
    this.byGroup.set(key, (this.byGroup.get(key) ?? 0) + 1);
  }

  private release(key: string): void {
    this.running--;
    const left = (this.byGroup.get(key) ?? 1) - 1;
    if (left > 0) this.byGroup.set(key, left);
    else this.byGroup.delete(key);
    if (this.waiting.length === 0) return;
    let best = 0;
    for (let i = 1; i < this.waiting.length; i++) {
      if ((this.byGroup.get(this.waiting[i].group) ?? 0) < (this.byGroup.get(this.waiting[best].group) ?? 0)) best = i;
    }
    const [next] = this.waiting.splice(best, 1);
    this.take(next.group);
    next.start();
  }
}
