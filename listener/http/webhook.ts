// POST /webhooks/github: verify, record durably, acknowledge — in that order, in milliseconds.
// The work happens after the answer (GitHub gives a delivery 10 s and never retries by itself).
import { GroupCommit } from "../store/group-commit.js";
import express, { type Request, type Response, type Router } from "express";
import { verify } from "@octokit/webhooks-methods";
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { z } from "zod";
import type { DeliveryRecorded, NewDelivery, Store } from "../store/store.js";
import { FailureLimiter } from "./failure-limit.js";

/** The parts of a workflow_job payload we rely on; everything else is passed through untouched. */
export const WorkflowJobPayload = z.object({
  action: z.enum(["queued", "waiting", "in_progress", "completed"]),
  workflow_job: z.object({
    id: z.number().int().positive(),
    run_id: z.number().int().positive(),
    run_attempt: z.number().int().positive().default(1),
    status: z.string(),
    conclusion: z.string().nullable().optional(),
    labels: z.array(z.string()).max(100),
    runner_name: z.string().nullable().optional(),
    // The registration that took the job: names are unique only within a scope, ids everywhere
    // (octokit/webhooks payload-schemas/api.github.com/workflow_job/completed.schema.json: integer or null).
    runner_id: z.number().int().nullable().optional(),
  }),
  repository: z.object({
    full_name: z.string().regex(/^[^/\s]+\/[^/\s]+$/),
    owner: z.object({ login: z.string(), type: z.string().optional() }),
  }),
  installation: z.object({ id: z.number().int() }).optional(),
});
export type WorkflowJobPayload = z.infer<typeof WorkflowJobPayload>;

export interface WebhookOptions {
  secret: string;
  /** Old secret(s) still accepted while rotating. */
  additionalSecrets?: string[];
  bodyLimitBytes: number;
  store: Store;
  logger: Logger;
  /** Called after the 2xx went out, for a new (non-duplicate) workflow_job delivery, with its checked payload. */
  onDelivery: (guid: string, payload: WorkflowJobPayload) => void;
  /** Failed requests allowed per address per minute before 429 (default 30). */
  failuresPerMinute?: number;
  /** Counts every answer (metrics). */
  onResult?: (result: "accepted" | "duplicate" | "replay" | "ignored" | "rejected") => void;
}

const GUID = /^[0-9a-f-]{8,64}$/i;


async function signatureValid(opts: WebhookOptions, body: string, signature: string): Promise<boolean> {
  for (const secret of [opts.secret, ...(opts.additionalSecrets ?? [])]) {
    // verify() compares with crypto.timingSafeEqual.
    if (await verify(secret, body, signature).catch(() => false)) return true;
  }
  return false;
}

export function webhookRouter(path: string, opts: WebhookOptions): Router {
  const router = express.Router();
  const raw = express.raw({ type: () => true, limit: opts.bodyLimitBytes });

  const limiter = new FailureLimiter(opts.failuresPerMinute ?? 30, 60_000);
  // Deliveries recorded in the same event-loop turn share one commit. It is not synced on the loop:
  // each answer waits for a WAL sync in the thread pool (Store.syncWal), shared by all waiting.
  // While a sync runs, new records gather and commit together when it ends, ready for the next.
  const inbox = new GroupCommit<NewDelivery, DeliveryRecorded>((ds) => opts.store.recordDeliveriesChecked(ds, { sync: false }), { busy: () => opts.store.walSyncInFlight() });
  const ipOf = (req: Request) => req.ip ?? "unknown";
  /** A failed answer is counted; our own 5xx are not held against the sender. */
  const fail = (res: Response, status: number, message: string): void => {
    res.status(status).json({ error: message });
    opts.onResult?.("rejected");
  };
  /**
   * A request that is not validly signed is held against its address; past the limit it gets 429
   * instead of the reason. Signed requests never come here: whoever probes (or shares a proxy
   * address with GitHub) cannot get GitHub's deliveries refused.
   */
  const unsigned = (req: Request, res: Response, status: number, message: string): void => {
    const ip = ipOf(req);
    const wait = limiter.blockedFor(ip);
    limiter.fail(ip);
    if (wait > 0) {
      res.setHeader("retry-after", String(wait));
      return fail(res, 429, "too many failed requests from this address");
    }
    fail(res, status, message);
  };
  router.post(path, (req: Request, res: Response, next) => {
    const type = (req.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
    if (type !== "application/json") return unsigned(req, res, 415, "content-type must be application/json (set the webhook's content type to JSON)");
    if (!req.get("x-hub-signature-256")) return unsigned(req, res, 401, "missing X-Hub-Signature-256");
    raw(req, res, (err?: unknown) => {
      if (!err) return next();
      const e = err as { type?: string; status?: number };
      if (e.type === "entity.too.large") return unsigned(req, res, 413, `payload larger than ${opts.bodyLimitBytes} bytes`);
      return unsigned(req, res, e.status && e.status < 500 ? e.status : 400, "unreadable request body");
    });
  }, async (req: Request, res: Response) => {
    const log = opts.logger;
    const event = req.get("x-github-event");
    const guid = req.get("x-github-delivery");
    const signature = req.get("x-hub-signature-256")!;
    const body = Buffer.isBuffer(req.body) ? req.body.toString("utf8") : "";
    // The HMAC decides first: what follows is answered to the secret's holder, never limited.
    if (!(await signatureValid(opts, body, signature))) {
      // Logged until the address is limited: a flood of probes does not flood the log.
      if (limiter.blockedFor(ipOf(req)) === 0) log.warn({ delivery: guid, event, ip: req.ip }, "webhook rejected: bad signature");
      return unsigned(req, res, 401, "signature does not match");
    }
    if (!event) return fail(res, 400, "missing X-GitHub-Event");
    if (!guid || !GUID.test(guid)) return fail(res, 400, "missing or malformed X-GitHub-Delivery");
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      return fail(res, 400, "body is not valid JSON");
    }
    if (event === "ping") return res.status(200).json({ ok: true, pong: true });
    if (event !== "workflow_job") {
      log.info({ delivery: guid, event }, "webhook ignored: not a workflow_job event");
      opts.onResult?.("ignored");
      return res.status(202).json({ ignored: `event ${event}` });
    }
    const parsed = WorkflowJobPayload.safeParse(json);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
      log.warn({ delivery: guid, problems }, "webhook rejected: malformed workflow_job payload");
      return fail(res, 400, `malformed workflow_job payload: ${problems.join("; ")}`);
    }
    const p = parsed.data;
    // X-GitHub-Delivery is outside the HMAC: the body's hash catches a captured body sent again
    // under a new GUID (within the retention window, while its first delivery is held).
    const bodySha = createHash("sha256").update(Buffer.isBuffer(req.body) ? req.body : Buffer.from(body)).digest("hex");
    let recorded: DeliveryRecorded;
    try {
      recorded = await inbox.add({ guid, event, action: p.action, jobId: p.workflow_job.id, payload: body, bodySha });
    } catch (err) {
      // Not recorded means not accepted: answer 5xx so the failure shows in GitHub's delivery log for redelivery.
      log.error({ err, delivery: guid }, "could not record delivery");
      return fail(res, 503, "could not record delivery; redeliver later");
    }
    try {
      // Durable before acknowledged, a duplicate's answer too (its first record may not be synced yet).
      await opts.store.syncWal();
    } catch (err) {
      // Recorded but maybe not on disk: not acknowledged, yet processed, since a redelivery would
      // now be answered as a duplicate and not handed on.
      log.error({ err, delivery: guid }, "could not sync the recorded delivery to disk");
      fail(res, 503, "could not store delivery durably; redeliver later");
      if (recorded === "fresh") setImmediate(() => opts.onDelivery(guid, p));
      return;
    }
    const fresh = recorded === "fresh";
    // A replay is answered like a redelivery (2xx: GitHub must never see an error from us), not processed.
    res.status(202).json({ accepted: true, duplicate: !fresh });
    opts.onResult?.(recorded === "fresh" ? "accepted" : recorded);
    if (recorded === "replay") log.warn({ delivery: guid, action: p.action, job: p.workflow_job.id, ip: req.ip, bodySha }, "webhook replayed: a body already received under another delivery GUID; not processed again");
    else log.debug({ delivery: guid, action: p.action, job: p.workflow_job.id, duplicate: !fresh }, "webhook recorded");
    if (fresh) setImmediate(() => opts.onDelivery(guid, p));
  });
  return router;
}
