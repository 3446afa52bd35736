// A test's hand on clone tasks: while held, a clone task that has slept its latency waits for the
// release before it finishes (the template stays locked, as for a clone that takes that long). It
// makes "a clone that lasts until X happened" exact on any machine, where a long latency is a guess.
export class CloneHold {
  private held = false;
  private waiters: Array<() => void> = [];

  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    for (const w of this.waiters.splice(0)) w();
  }

  get isHeld(): boolean {
    return this.held;
  }

  /** Resolves at once unless held; then at the release. */
  passed(): Promise<void> {
    return this.held ? new Promise((resolve) => this.waiters.push(resolve)) : Promise.resolve();
  }
}
