// Per-address limit on webhook requests that are not validly signed (no or bad signature, wrong
// content type, unreadable body): someone probing the endpoint gets 429 after `max` failures in
// `windowMs`. The route consults it only after the HMAC check, so a validly signed delivery is never
// limited, whatever its address did (behind a proxy GitHub and the prober may share one).
// Memory is bounded: the oldest addresses are forgotten first.
export class FailureLimiter {
  private readonly hits = new Map<string, { count: number; since: number }>();
  constructor(
    private readonly max = 30,
    private readonly windowMs = 60_000,
    private readonly maxAddresses = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Seconds until `ip` may fail again, or 0 when it is not limited. */
  blockedFor(ip: string): number {
    const h = this.hits.get(ip);
    if (!h) return 0;
    const left = h.since + this.windowMs - this.now();
    if (left <= 0) {
      this.hits.delete(ip);
      return 0;
    }
    return h.count >= this.max ? Math.ceil(left / 1000) : 0;
  }

  fail(ip: string): void {
    const t = this.now();
    const h = this.hits.get(ip);
    if (h && t - h.since < this.windowMs) {
      h.count++;
      return;
    }
    this.hits.delete(ip);
    if (this.hits.size >= this.maxAddresses) this.hits.delete(this.hits.keys().next().value as string);
    this.hits.set(ip, { count: 1, since: t });
  }

  get size(): number {
    return this.hits.size;
  }
}
