// Webhook delivery like GitHub's hookshot: signed POST, 10 s deadline, no automatic retry,
// every attempt recorded for the deliveries API, manual redelivery with the same GUID.
// Faults (drop, duplicate, reorder, delay) apply to first deliveries only.
import { setMaxListeners } from "node:events";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { sign } from "@octokit/webhooks-methods";
import type { Logger } from "pino";
import type { SimClock } from "./clock.js";
import type { FaultInjector } from "./faults.js";

export interface SimDelivery {
  id: number;
  guid: string;
  deliveredAt: string;
  redelivery: boolean;
  /** A fault-injected second copy of a first delivery (same GUID). */
  duplicate: boolean;
  /** Dropped by fault injection: never reached the receiver. */
  dropped: boolean;
  status: string;
  statusCode: number;
  durationSeconds: number;
  event: string;
  action: string;
  installationId: number;
  repositoryId: number;
  url: string | null;
  request: { headers: Record<string, string>; payload: Record<string, unknown> };
  response: { headers: Record<string, string>; payload: string | null };
}

interface DeliveryTarget {
  url: string;
  secret: string;
}

export interface WebhookEvent {
  guid: string;
  event: string;
  action: string;
  installationId: number;
  repositoryId: number;
  payload: Record<string, unknown>;
}

/** Which first deliveries to hold back: every given field must match (none given: all). */
export interface HoldMatch {
  event?: string;
  action?: string;
  /** `workflow_job.id` in the payload. */
  jobId?: number;
}

export interface HoldRule extends HoldMatch {
  id: number;
}

/** A first delivery held back by a hold rule, waiting for release(). */
export interface HeldDelivery {
  heldId: number;
  ruleId: number;
  guid: string;
  event: string;
  action: string;
  jobId: number | null;
  heldAt: string;
}

const DEADLINE_MS = 10_000;
const MAX_RESPONSE_BYTES = 64 * 1024;
const HOOK_ID = 470_011;
// Fixed per process, like the build hash in real hookshot user agents.
const HOOKSHOT_UA = `GitHub-Hookshot/${randomBytes(4).toString("hex").slice(0, 7)}`;

export class WebhookDispatcher {
  private readonly records: SimDelivery[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private nextId = 1000;
  private target: DeliveryTarget | null = null;
  private holdRules: HoldRule[] = [];
  private held: Array<{ info: HeldDelivery; event: WebhookEvent }> = [];
  private nextHoldId = 1;
  private readonly stopping = (() => {
    const c = new AbortController();
    // Every in-flight delivery listens on it: a burst is many at once, not a leak.
    setMaxListeners(0, c.signal);
    return c;
  })();

  constructor(
    private readonly appId: number,
    private readonly clock: SimClock,
    private readonly faults: FaultInjector,
    private readonly log: Logger,
  ) {}

  setTarget(url: string | undefined, secret: string | undefined): void {
    this.target = url ? { url, secret: secret ?? "" } : null;
  }

  list(): SimDelivery[] {
    return [...this.records];
  }

  get(id: number): SimDelivery | undefined {
    return this.records.find((d) => d.id === id);
  }

  /** Sends a new event (first delivery, subject to faults). */
  dispatch(e: Omit<WebhookEvent, "guid">): void {
    const event: WebhookEvent = { ...e, guid: randomUUID() };
    if (this.holdIfMatching(event)) return;
    const plan = this.faults.forDelivery();
    this.track(async () => {
      const wait = plan.delayMs + plan.holdMs;
      if (wait > 0) await this.clock.sleep(wait);
      if (this.stopping.signal.aborted) return;
      if (plan.drop) {
        this.record(event, { redelivery: false, duplicate: false, dropped: true }, null, {
          status: "failed to connect to host",
          statusCode: 0,
          ms: 0,
          headers: {},
          body: null,
          started: Date.now(),
        });
        return;
      }
      await this.attempt(event, false, false);
      if (plan.duplicate) await this.attempt(event, false, true);
    });
  }

  /** POST /app/hook/deliveries/{id}/attempts: same GUID and payload, `redelivery: true`. */
  redeliver(id: number): boolean {
    const original = this.get(id);
    if (!original) return false;
    const event: WebhookEvent = {
      guid: original.guid,
      event: original.event,
      action: original.action,
      installationId: original.installationId,
      repositoryId: original.repositoryId,
      payload: original.request.payload,
    };
    this.track(async () => {
      await this.attempt(event, true, false);
    });
    return true;
  }

  /**
   * Holds back every later first delivery that matches (before any fault is planned for it) until
   * release() names it. Returns the rule; unhold() removes rules, held deliveries stay held.
   */
  hold(match: HoldMatch): HoldRule {
    const rule: HoldRule = { id: this.nextHoldId++, ...match };
    this.holdRules.push(rule);
    return { ...rule };
  }

  /** Removes one hold rule, or all of them. */
  unhold(ruleId?: number): void {
    this.holdRules = ruleId === undefined ? [] : this.holdRules.filter((r) => r.id !== ruleId);
  }

  holds(): HoldRule[] {
    return this.holdRules.map((r) => ({ ...r }));
  }

  heldDeliveries(): HeldDelivery[] {
    return this.held.map((h) => ({ ...h.info }));
  }

  /**
   * Sends held deliveries in the order given (default: all, in the order they were held), one
   * after the other: each is answered (or times out) before the next goes. No faults apply; each
   * is a first delivery with its original GUID. Unknown ids: an error, nothing is sent.
   */
  async release(heldIds?: number[]): Promise<SimDelivery[]> {
    const ids = heldIds ?? this.held.map((h) => h.info.heldId);
    const unknown = ids.filter((id) => !this.held.some((h) => h.info.heldId === id));
    if (unknown.length) throw new Error(`no held delivery with id ${unknown.join(", ")}`);
    if (new Set(ids).size !== ids.length) throw new Error("a held delivery is named twice");
    const batch = ids.map((id) => this.held.find((h) => h.info.heldId === id)!);
    this.held = this.held.filter((h) => !ids.includes(h.info.heldId));
    const out: SimDelivery[] = [];
    await this.tracked(async () => {
      for (const h of batch) {
        const d = await this.attempt(h.event, false, false);
        if (d) out.push(d);
      }
    });
    return out;
  }

  /**
   * Signs and sends an arbitrary payload as event `event` (GUID given or new), with every header a
   * real delivery has, and records it like any other (so the deliveries API lists it and
   * redelivery works). No hold rule and no fault applies. Resolves with the recorded delivery.
   */
  async send(payload: Record<string, unknown>, opts: { event: string; guid?: string }): Promise<SimDelivery | null> {
    const num = (v: unknown) => (typeof v === "number" ? v : 0);
    const event: WebhookEvent = {
      guid: opts.guid ?? randomUUID(),
      event: opts.event,
      action: typeof payload.action === "string" ? payload.action : "",
      installationId: num((payload.installation as { id?: unknown } | undefined)?.id),
      repositoryId: num((payload.repository as { id?: unknown } | undefined)?.id),
      payload,
    };
    let d: SimDelivery | null = null;
    await this.tracked(async () => {
      d = await this.attempt(event, false, false);
    });
    return d;
  }

  private holdIfMatching(event: WebhookEvent): boolean {
    const wj = event.payload.workflow_job as { id?: unknown } | undefined;
    const jobId = typeof wj?.id === "number" ? wj.id : null;
    const rule = this.holdRules.find(
      (r) => (r.event === undefined || r.event === event.event) && (r.action === undefined || r.action === event.action) && (r.jobId === undefined || r.jobId === jobId),
    );
    if (!rule) return false;
    const info: HeldDelivery = { heldId: this.nextHoldId++, ruleId: rule.id, guid: event.guid, event: event.event, action: event.action, jobId, heldAt: new Date().toISOString() };
    this.held.push({ info, event });
    this.log.debug({ heldId: info.heldId, guid: info.guid, action: info.action, jobId }, "webhook delivery held");
    return true;
  }

  /** Resolves once nothing is being (or waiting to be) delivered. Held deliveries do not count. */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private track(work: () => Promise<void>): void {
    void this.tracked(work);
  }

  /** Runs work counted as in flight (settle() waits for it); never rejects. */
  private tracked(work: () => Promise<void>): Promise<void> {
    const p: Promise<void> = work()
      .catch((err: unknown) => this.log.error({ err }, "webhook delivery crashed"))
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
    return p;
  }

  /** Aborts requests in flight; nothing is sent afterwards. */
  stop(): void {
    this.stopping.abort();
    this.held = [];
  }

  private async attempt(event: WebhookEvent, redelivery: boolean, duplicate: boolean): Promise<SimDelivery | null> {
    if (this.stopping.signal.aborted) return null;
    const target = this.target;
    const body = JSON.stringify(event.payload);
    const headers: Record<string, string> = {
      Accept: "*/*",
      "Content-Type": "application/json",
      "User-Agent": HOOKSHOT_UA,
      "X-GitHub-Delivery": event.guid,
      "X-GitHub-Event": event.event,
      "X-GitHub-Hook-ID": String(HOOK_ID),
      "X-GitHub-Hook-Installation-Target-ID": String(this.appId),
      "X-GitHub-Hook-Installation-Target-Type": "integration",
    };
    if (target?.secret) {
      headers["X-Hub-Signature"] = `sha1=${createHmac("sha1", target.secret).update(body).digest("hex")}`;
      headers["X-Hub-Signature-256"] = await sign(target.secret, body);
    }
    const started = Date.now();
    const outcome = target
      ? await post(target.url, headers, body, this.clock.scaled(DEADLINE_MS), this.stopping.signal)
      : { status: "failed to connect to host", statusCode: 0, headers: {}, body: null };
    return this.record(event, { redelivery, duplicate, dropped: false }, target?.url ?? null, { ...outcome, ms: Date.now() - started, started }, headers);
  }

  private record(
    event: WebhookEvent,
    kind: { redelivery: boolean; duplicate: boolean; dropped: boolean },
    url: string | null,
    outcome: { status: string; statusCode: number; ms: number; headers: Record<string, string>; body: string | null; started: number },
    requestHeaders: Record<string, string> = {},
  ): SimDelivery {
    const d: SimDelivery = {
      id: this.nextId++,
      guid: event.guid,
      deliveredAt: new Date(outcome.started).toISOString().replace(/\.\d{3}Z$/, "Z"),
      ...kind,
      status: outcome.status,
      statusCode: outcome.statusCode,
      durationSeconds: outcome.ms / 1000,
      event: event.event,
      action: event.action,
      installationId: event.installationId,
      repositoryId: event.repositoryId,
      url,
      // Header values that carry secrets derivatives are fine to keep: GitHub shows them too.
      request: { headers: requestHeaders, payload: event.payload },
      response: { headers: outcome.headers, payload: outcome.body },
    };
    this.records.push(d);
    this.log.debug({ id: d.id, guid: d.guid, action: d.action, status: d.status, redelivery: d.redelivery, duplicate: d.duplicate }, "webhook delivery");
    return d;
  }
}

interface PostOutcome {
  status: string;
  statusCode: number;
  headers: Record<string, string>;
  body: string | null;
}

/** One POST with a hard deadline; never throws. */
function post(url: string, headers: Record<string, string>, body: string, deadlineMs: number, signal: AbortSignal): Promise<PostOutcome> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (o: PostOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(o);
    };
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      return resolve({ status: "invalid url", statusCode: 0, headers: {}, body: null });
    }
    const client = target.protocol === "https:" ? https : http;
    // agent:false + Connection: close: no pooled sockets outlive the sim.
    const req = client.request(target, {
      method: "POST",
      agent: false,
      signal,
      headers: { ...headers, "Content-Length": String(Buffer.byteLength(body)), Connection: "close" },
    });
    const timer = setTimeout(() => {
      req.destroy();
      done({ status: "timed out", statusCode: 0, headers: {}, body: null });
    }, deadlineMs);
    req.on("error", (err) => done({ status: `failed to connect to host (${(err as NodeJS.ErrnoException).code ?? err.message})`, statusCode: 0, headers: {}, body: null }));
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size <= MAX_RESPONSE_BYTES) chunks.push(c);
      });
      res.on("error", () => done({ status: "failed to read response", statusCode: res.statusCode ?? 0, headers: {}, body: null }));
      res.on("end", () => {
        const code = res.statusCode ?? 0;
        const respHeaders: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) respHeaders[k] = Array.isArray(v) ? v.join(", ") : v;
        done({
          status: code >= 200 && code < 300 ? "OK" : `Invalid HTTP Response: ${code}`,
          statusCode: code,
          headers: respHeaders,
          body: Buffer.concat(chunks).toString("utf8"),
        });
      });
    });
    req.end(body);
  });
}
