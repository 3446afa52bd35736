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
    this.track(() => this.attempt(event, true, false));
    return true;
  }

  /** Resolves once nothing is being (or waiting to be) delivered. */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private track(work: () => Promise<void>): void {
    const p: Promise<void> = work()
      .catch((err: unknown) => this.log.error({ err }, "webhook delivery crashed"))
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** Aborts requests in flight; nothing is sent afterwards. */
  stop(): void {
    this.stopping.abort();
  }

  private async attempt(event: WebhookEvent, redelivery: boolean, duplicate: boolean): Promise<void> {
    if (this.stopping.signal.aborted) return;
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
    this.record(event, { redelivery, duplicate, dropped: false }, target?.url ?? null, { ...outcome, ms: Date.now() - started, started }, headers);
  }

  private record(
    event: WebhookEvent,
    kind: { redelivery: boolean; duplicate: boolean; dropped: boolean },
    url: string | null,
    outcome: { status: string; statusCode: number; ms: number; headers: Record<string, string>; body: string | null; started: number },
    requestHeaders: Record<string, string> = {},
  ): void {
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
