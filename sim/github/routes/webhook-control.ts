// /_sim/webhooks: hold back, list, release (in a chosen order) first deliveries, and send an
// arbitrary payload through the signed dispatcher. No auth, like the rest of /_sim.
import { Router } from "express";
import { z } from "zod";
import type { SimContext } from "../context.js";
import { GitHubError } from "../errors.js";
import { deliverySummary } from "./app.js";
import { body, intParam } from "./common.js";
import { parseOr400 } from "./control.js";

const holdSchema = z.object({ event: z.string().min(1).optional(), action: z.string().min(1).optional(), jobId: z.number().int().optional() }).strict();
const releaseSchema = z.object({ ids: z.array(z.number().int()).optional() }).strict();
const sendSchema = z.object({ event: z.string().min(1), guid: z.string().min(1).optional(), payload: z.record(z.string(), z.unknown()) }).strict();

export function webhookControlRoutes(ctx: SimContext): Router {
  const r = Router();
  const summary = (d: NonNullable<Awaited<ReturnType<typeof ctx.webhooks.send>>>) => ({ ...deliverySummary(d), duplicate: d.duplicate, dropped: d.dropped });

  r.post("/hold", (req, res) => {
    res.status(201).json(ctx.webhooks.hold(parseOr400(holdSchema, body(req))));
  });
  r.get("/hold", (_req, res) => {
    res.json(ctx.webhooks.holds());
  });
  r.delete("/hold", (_req, res) => {
    ctx.webhooks.unhold();
    res.status(204).end();
  });
  r.delete("/hold/:id", (req, res) => {
    ctx.webhooks.unhold(intParam(req, "id"));
    res.status(204).end();
  });
  r.get("/held", (_req, res) => {
    res.json(ctx.webhooks.heldDeliveries());
  });
  r.post("/release", async (req, res) => {
    const { ids } = parseOr400(releaseSchema, body(req));
    let sent;
    try {
      sent = await ctx.webhooks.release(ids);
    } catch (err) {
      throw new GitHubError(404, (err as Error).message);
    }
    res.json(sent.map(summary));
  });
  r.post("/send", async (req, res) => {
    const { event, guid, payload } = parseOr400(sendSchema, body(req));
    const d = await ctx.webhooks.send(payload, { event, guid });
    if (!d) throw new GitHubError(503, "the simulator is stopping");
    res.status(201).json(summary(d));
  });
  return r;
}
