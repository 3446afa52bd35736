// Fault injection switches, set through POST /_sim/faults. REST faults hit API requests
// (never /_sim/*); webhook faults hit first deliveries (manual redeliveries go through).
import { z } from "zod";
import { GitHubError } from "./errors.js";
import type { Rng } from "./rng.js";

export const restFaultsSchema = z.object({
  rate: z.number().min(0).max(1).default(0),
  statuses: z.array(z.number().int()).min(1).default([500, 502, 503, 429, 403]),
  retryAfterSeconds: z.number().min(0).default(1),
  paths: z.string().optional(),
});

export const webhookFaultsSchema = z.object({
  dropRate: z.number().min(0).max(1).default(0),
  duplicateRate: z.number().min(0).max(1).default(0),
  reorderRate: z.number().min(0).max(1).default(0),
  /** Base delay before each first delivery, uniform in [min, max] (simulated ms). */
  delayMs: z.tuple([z.number().min(0), z.number().min(0)]).default([0, 0]),
  /** How long a reordered delivery is held back so later events overtake it (simulated ms). */
  reorderHoldMs: z.number().min(0).default(1500),
  /** Deterministic: drop the next N first deliveries. */
  dropNext: z.number().int().min(0).default(0),
});

function isRegExp(source: string): boolean {
  try {
    new RegExp(source);
    return true;
  } catch {
    return false;
  }
}

/**
 * A fault that fires AFTER the handler acted: the effect is real (a JIT config minted and its runner
 * registered, a runner deleted), the client gets a 5xx or a dropped connection instead of the answer.
 * Fires only on answers that would have been 2xx.
 */
export const afterFaultSchema = z.object({
  /** HTTP method (case-insensitive); absent: any. */
  method: z.string().min(1).optional(),
  /** A regex matched against the request path (e.g. `/actions/runners/generate-jitconfig$`). */
  path: z.string().min(1).refine(isRegExp, "not a valid regular expression"),
  /** Seeded: this share of matching answers is lost. */
  rate: z.number().min(0).max(1).default(0),
  /** Deterministic: the next `count` matching answers are lost (before `rate` is asked). */
  count: z.number().int().min(0).default(0),
  /** What the client gets instead: a 5xx with GitHub's body, or `drop` (connection reset, no answer). */
  status: z.number().int().min(500).max(599).default(502),
  drop: z.boolean().default(false),
});
export type AfterFault = z.infer<typeof afterFaultSchema>;

export const faultsBodySchema = z.object({
  rate: z.number().min(0).max(1).optional(),
  statuses: z.array(z.number().int()).min(1).optional(),
  retryAfterSeconds: z.number().min(0).optional(),
  paths: z.string().optional(),
  /** Deterministic: the next `count` API requests (matching `paths`) fail with `status`. */
  next: z.object({ count: z.number().int().min(1), status: z.number().int() }).optional(),
  webhook: webhookFaultsSchema.partial().optional(),
  /** After-effect faults per route; replaces the list set before (`[]` removes them). */
  after: z.array(afterFaultSchema).optional(),
});

export type RestFaults = z.infer<typeof restFaultsSchema>;
export type WebhookFaults = z.infer<typeof webhookFaultsSchema>;
/** What setFaults takes (defaults of `after` rules may be left out). */
export type FaultsBody = z.input<typeof faultsBodySchema>;

export class FaultInjector {
  rest: RestFaults = restFaultsSchema.parse({});
  webhook: WebhookFaults = webhookFaultsSchema.parse({});
  private next: { remaining: number; status: number } | null = null;
  private pathRe: RegExp | null = null;
  private after: Array<{ rule: AfterFault; re: RegExp; remaining: number; fired: number }> = [];

  constructor(
    private readonly rng: Rng,
    private readonly scaleSeconds: (s: number) => number,
  ) {}

  /** Merges a POST /_sim/faults body into the current switches. */
  apply(body: FaultsBody): void {
    const { next, webhook, ...rest } = body;
    this.rest = restFaultsSchema.parse({ ...this.rest, ...rest });
    this.pathRe = this.rest.paths ? new RegExp(this.rest.paths) : null;
    if (next) this.next = { remaining: next.count, status: next.status };
    if (webhook) this.webhook = webhookFaultsSchema.parse({ ...this.webhook, ...webhook });
    if (body.after) {
      this.after = body.after.map((r) => afterFaultSchema.parse(r)).map((rule) => ({ rule, re: new RegExp(rule.path), remaining: rule.count, fired: 0 }));
    }
  }

  clear(): void {
    this.rest = restFaultsSchema.parse({});
    this.webhook = webhookFaultsSchema.parse({});
    this.next = null;
    this.pathRe = null;
    this.after = [];
  }

  snapshot(): Record<string, unknown> {
    return {
      ...this.rest,
      next: this.next,
      webhook: this.webhook,
      after: this.after.map((a) => ({ ...a.rule, remaining: a.remaining, fired: a.fired })),
    };
  }

  /** The injected error for this API request, if any. */
  forRequest(path: string): GitHubError | null {
    if (this.pathRe && !this.pathRe.test(path)) return null;
    if (this.next && this.next.remaining > 0) {
      this.next.remaining--;
      const status = this.next.status;
      if (this.next.remaining === 0) this.next = null;
      return this.errorFor(status);
    }
    if (this.rest.rate > 0 && this.rng() < this.rest.rate) {
      const statuses = this.rest.statuses;
      return this.errorFor(statuses[Math.floor(this.rng() * statuses.length)]);
    }
    return null;
  }

  /** Whether any after-effect fault is set (requests skip the bookkeeping otherwise). */
  hasAfterFaults(): boolean {
    return this.after.length > 0;
  }

  /**
   * Asked once the handler produced a 2xx for this request: the first matching rule decides. Its
   * count is spent first, then its rate (seeded). null: the answer goes out.
   */
  afterEffect(method: string, path: string): { drop: true } | { drop: false; error: GitHubError } | null {
    for (const a of this.after) {
      if (a.rule.method && a.rule.method.toUpperCase() !== method.toUpperCase()) continue;
      if (!a.re.test(path)) continue;
      let fire = false;
      if (a.remaining > 0) {
        a.remaining--;
        fire = true;
      } else if (a.rule.rate > 0 && this.rng() < a.rule.rate) fire = true;
      if (!fire) return null;
      a.fired++;
      return a.rule.drop ? { drop: true } : { drop: false, error: this.errorFor(a.rule.status) };
    }
    return null;
  }

  private errorFor(status: number): GitHubError {
    const retryAfter = String(this.scaleSeconds(this.rest.retryAfterSeconds));
    if (status === 429 || status === 403) {
      return new GitHubError(
        status,
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
        { documentation_url: "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits" },
        { "retry-after": retryAfter },
      );
    }
    if (status >= 500) {
      const message = status === 502 ? "Server Error" : status === 503 ? "Service Unavailable" : "Server Error";
      return new GitHubError(status, message);
    }
    return new GitHubError(status, "Injected fault");
  }

  /** Decides what happens to one first delivery. */
  forDelivery(): { drop: boolean; duplicate: boolean; holdMs: number; delayMs: number } {
    const w = this.webhook;
    let drop = false;
    if (w.dropNext > 0) {
      w.dropNext--;
      drop = true;
    } else if (w.dropRate > 0 && this.rng() < w.dropRate) {
      drop = true;
    }
    const duplicate = w.duplicateRate > 0 && this.rng() < w.duplicateRate;
    const holdMs = w.reorderRate > 0 && this.rng() < w.reorderRate ? w.reorderHoldMs : 0;
    const [min, max] = w.delayMs;
    const delayMs = max > min ? min + this.rng() * (max - min) : min;
    return { drop, duplicate, holdMs, delayMs };
  }
}
