// The /_sim control plane: scenario setup and inspection for tests and the demo. No auth
// (the sim only listens on loopback).
import { Router } from "express";
import { z } from "zod";
import type { SimContext } from "../context.js";
import { GitHubError } from "../errors.js";
import { faultsBodySchema } from "../faults.js";
import { deliverySummary } from "./app.js";
import { body, intParam } from "./common.js";

const createJobSchema = z.object({
  repo: z.string().min(1),
  labels: z.array(z.string().min(1)).min(1),
  durationMs: z.number().min(0).optional(),
  workflowName: z.string().optional(),
  jobName: z.string().optional(),
  environmentGated: z.boolean().optional(),
  approveAfterMs: z.number().min(0).nullable().optional(),
  waitingAfterMs: z.number().min(0).optional(),
});

export function parseOr400<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new GitHubError(400, r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
  return r.data;
}

export interface ControlHooks {
  setWebhook(url: string, secret: string): void;
  setTimeScale(scale: number): void;
  state(): Record<string, unknown>;
}

export function controlRoutes(ctx: SimContext, hooks: ControlHooks): Router {
  const r = Router();

  r.post("/jobs", (req, res) => {
    res.status(201).json(ctx.scheduler.createJob(parseOr400(createJobSchema, body(req))));
  });
  r.get("/jobs", (_req, res) => {
    res.json(ctx.scheduler.jobs());
  });
  r.post("/jobs/:id/cancel", (req, res) => {
    res.json(ctx.scheduler.cancel(intParam(req, "id")));
  });
  r.post("/jobs/:id/approve", (req, res) => {
    res.json(ctx.scheduler.approve(intParam(req, "id")));
  });
  r.get("/runners", (_req, res) => {
    res.json(ctx.runners.all());
  });
  r.get("/deliveries", (_req, res) => {
    res.json(ctx.webhooks.list().map((d) => ({ ...deliverySummary(d), duplicate: d.duplicate, dropped: d.dropped })));
  });

  r.get("/faults", (_req, res) => {
    res.json(ctx.faults.snapshot());
  });
  r.post("/faults", (req, res) => {
    ctx.faults.apply(parseOr400(faultsBodySchema, body(req)));
    res.json(ctx.faults.snapshot());
  });
  r.delete("/faults", (_req, res) => {
    ctx.faults.clear();
    res.status(204).end();
  });

  r.post("/time", (req, res) => {
    const { scale } = parseOr400(z.object({ scale: z.number().positive() }), body(req));
    hooks.setTimeScale(scale);
    res.json({ scale });
  });
  r.post("/webhook", (req, res) => {
    const { url, secret } = parseOr400(z.object({ url: z.string().url(), secret: z.string() }), body(req));
    hooks.setWebhook(url, secret);
    res.status(204).end();
  });
  r.post("/tokens/expire", (req, res) => {
    const { installationId } = parseOr400(z.object({ installationId: z.number().int().optional() }), body(req));
    ctx.auth.expireTokens(installationId);
    res.status(204).end();
  });
  r.post("/ratelimit", (req, res) => {
    const { limit } = parseOr400(z.object({ limit: z.number().int().positive() }), body(req));
    ctx.limiter.authenticatedLimit = limit;
    ctx.limiter.reset();
    res.json({ limit });
  });
  // actions/runner's releases: replaced as a whole (GitHubSim.setRunnerReleases).
  r.post("/releases", (req, res) => {
    const release = z.object({ version: z.string().regex(/^v?\d+\.\d+\.\d+$/), publishedAt: z.union([z.iso.datetime({ offset: true }), z.number()]), prerelease: z.boolean().optional(), draft: z.boolean().optional() });
    ctx.releases.set(parseOr400(z.object({ releases: z.array(release) }), body(req)).releases);
    res.json(ctx.releases.published().map((x) => ({ tag_name: x.tagName, published_at: x.publishedAt, prerelease: x.prerelease })));
  });
  r.get("/state", (_req, res) => {
    res.json(hooks.state());
  });

  return r;
}
