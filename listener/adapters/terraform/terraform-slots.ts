// At most N terraform processes at once, handed out so that every clone lane stays fed. An apply
// holds its slot while it waits in its template's lane, so first-come order let a few lanes take
// every slot while another sat idle (a 50-job burst: one lane idle 4.7 s of 36). A freed slot goes
// to the waiting run whose lane has the fewest runs going, the earliest first among equals; runs
// without a lane (destroys) form a group of their own.
//
// With `approachCap` (the clone gate's mode), runs on their way to their lane (started, their
// clone request not yet queued there) are limited to that many at once, the host's cores, except
// that each lane may always have one. Beyond that a run's CPU would only slow the runs ahead, which
// their lanes wait for: at the start of a 50-job burst on 2 cores, eight applies planning at once
// brought every lane's first clone later than four did. With cores to spare the cap lets a lane
// have several on their way, so a lane whose clones are quicker than terraform's plan is not starved.

interface Waiting {
  group: string;
  token: string | symbol;
  start: () => void;
}

/** A slot held until release() (idempotent). */
export interface SlotLease {
  release(): void;
}

export interface SlotOptions {
  /** Runs on their way to their lanes at once, at most (one per lane always may). Off when absent. */
  approachCap?: number;
  /**
   * How long a run counts as on its way to its lane at most (default 10 s): one that stalls before
   * its clone (an API that does not answer) holds back its lane's next run no longer than this.
   */
  approachLimitMs?: number;
}

interface Approach {
  group: string;
  timer: NodeJS.Timeout;
}

export class TerraformSlots {
  private running = 0;
  private readonly byGroup = new Map<string, number>();
  private readonly waiting: Waiting[] = [];
  /** Runs on their way to their lane, by id (a few: at most the slots). */
  private readonly approaching = new Map<string | symbol, Approach>();
  private readonly approachLimitMs: number;
  /** Runs on their way that reachedLane() let go (not those released or timed out). */
  private reported = 0;

  constructor(
    private readonly concurrency: number,
    private readonly opts: SlotOptions = {},
  ) {
    this.approachLimitMs = opts.approachLimitMs ?? 10_000;
  }

  /**
   * Waits for a slot and holds it until the lease is released; an abort while waiting rejects.
   * `group` is the clone lane (template key) the run will wait in, if any; `id` names the run
   * (the runner) for reachedLane().
   */
  async acquire(group: string | undefined, signal?: AbortSignal, id?: string): Promise<SlotLease> {
    const key = group ?? "";
    // A run with no id cannot be told it arrived: it counts as on its way until it ends (or for
    // approachLimitMs, whichever comes first).
    const token = id ?? Symbol("run");
    signal?.throwIfAborted();
    // Whoever still waits cannot start now (dispatch() starts them as soon as they can).
    if (this.mayStart(key)) this.take(key, token);
    else {
      await new Promise<void>((start, reject) => {
        const entry: Waiting = { group: key, token, start: () => (signal?.removeEventListener("abort", onAbort), start()) };
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
        this.arrived(token);
        this.release(key);
      },
    };
  }

  /** The run `id`'s clone request is queued in its lane: the lane's next run may start. */
  reachedLane(id: string): void {
    if (this.arrived(id)) this.reported++;
  }

  /** Runs going and waiting, for logs and tests. */
  stats(): { running: number; waiting: number; byGroup: Record<string, number>; approaching: Record<string, number>; reachedLane: number } {
    return { running: this.running, waiting: this.waiting.length, byGroup: Object.fromEntries(this.byGroup), approaching: this.approachingByGroup(), reachedLane: this.reported };
  }

  private approachingByGroup(): Record<string, number> {
    const by: Record<string, number> = {};
    for (const a of this.approaching.values()) by[a.group] = (by[a.group] ?? 0) + 1;
    return by;
  }

  private approachLimited(key: string): boolean {
    return this.opts.approachCap !== undefined && key !== "";
  }

  private mayStart(key: string): boolean {
    if (this.running >= this.concurrency) return false;
    if (!this.approachLimited(key) || ![...this.approaching.values()].some((a) => a.group === key)) return true;
    return this.approaching.size < this.opts.approachCap!;
  }

  private take(key: string, token: string | symbol): void {
    this.running++;
    this.byGroup.set(key, (this.byGroup.get(key) ?? 0) + 1);
    if (!this.approachLimited(key) || this.approaching.has(token)) return;
    // Not unref'd: a run waiting behind it depends on it. Cleared on arrival or release.
    const timer = setTimeout(() => this.arrived(token), this.approachLimitMs);
    this.approaching.set(token, { group: key, timer });
  }

  /** Ends a run's approach; false when it was not on its way. */
  private arrived(token: string | symbol): boolean {
    const a = this.approaching.get(token);
    if (!a) return false;
    clearTimeout(a.timer);
    this.approaching.delete(token);
    this.dispatch();
    return true;
  }

  private release(key: string): void {
    this.running--;
    const left = (this.byGroup.get(key) ?? 1) - 1;
    if (left > 0) this.byGroup.set(key, left);
    else this.byGroup.delete(key);
    this.dispatch();
  }

  /** Starts waiting runs while slots are free: each time the one whose lane has the fewest going. */
  private dispatch(): void {
    while (this.running < this.concurrency) {
      let best = -1;
      for (let i = 0; i < this.waiting.length; i++) {
        if (!this.mayStart(this.waiting[i].group)) continue;
        if (best < 0 || (this.byGroup.get(this.waiting[i].group) ?? 0) < (this.byGroup.get(this.waiting[best].group) ?? 0)) best = i;
      }
      if (best < 0) return;
      const [next] = this.waiting.splice(best, 1);
      this.take(next.group, next.token);
      next.start();
    }
  }
}
