// The admin listener, on its own address (default 127.0.0.1:8791), never the webhook port:
// GET / (status page), GET /metrics (Prometheus), and the JSON API the CLI uses.
// A bearer token (constant-time compare) is required when one is configured; no CORS; strict headers.
import express, { type NextFunction, type Request, type Response } from "express";
import { createHash, timingSafeEqual } from "node:crypto";
import { listenLimited, type ServerLimits } from "./http-listen.js";
import type { Logger } from "pino";
import type { Metrics } from "./metrics.js";
import type { StatusSnapshot } from "./status.js";

export interface AdminHooks {
  snapshot(): StatusSnapshot;
  setDraining(on: boolean): void;
  sweep(dryRun: boolean): Promise<unknown>;
  /** The status page renderer (listener/status-page.ts). */
  renderPage?(s: StatusSnapshot): string;
}

export interface AdminOptions {
  host: string;
  port: number;
  token?: string;
  metrics: Metrics;
  hooks: AdminHooks;
  logger: Logger;
  /** Timeouts and connection cap (http-listen.ts SERVER_LIMITS unless overridden). */
  serverLimits?: Partial<ServerLimits>;
}

const digest = (s: string) => createHash("sha256").update(s).digest();

function tokenCheck(token: string | undefined) {
  const want = token ? digest(token) : null;
  return (req: Request, res: Response, next: NextFunction) => {
    if (!want) return next();
    const m = /^Bearer (\S+)$/.exec(req.get("authorization") ?? "");
    // Equal-length digests: the compare takes the same time whatever was sent.
    if (m && timingSafeEqual(digest(m[1]), want)) return next();
    res.setHeader("www-authenticate", 'Bearer realm="pve-runners admin"');
    res.status(401).json({ error: "admin token required (Authorization: Bearer …)" });
  };
}

function securityHeaders(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader("x-content-type-options", "nosniff");
  res.setHeader("x-frame-options", "DENY");
  res.setHeader("referrer-policy", "no-referrer");
  res.setHeader("cache-control", "no-store");
  res.setHeader("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
  next();
}

export async function startAdmin(o: AdminOptions): Promise<{ url: string; close(): Promise<void> }> {
  const app = express();
  app.disable("x-powered-by");
  app.use(securityHeaders, tokenCheck(o.token));
  app.get("/", (_req, res) => {
    const s = o.hooks.snapshot();
    if (o.hooks.renderPage) res.type("html").send(o.hooks.renderPage(s));
    else res.json(s);
  });
  app.get("/metrics", async (_req, res) => {
    res.type(o.metrics.registry.contentType).send(await o.metrics.registry.metrics());
  });
  app.get("/api/status", (_req, res) => res.json(o.hooks.snapshot()));
  app.get("/api/runners", (_req, res) => res.json(o.hooks.snapshot().runners));
  app.get("/api/jobs", (_req, res) => res.json(o.hooks.snapshot().jobs));
  app.post("/api/drain", (_req, res) => {
    o.hooks.setDraining(true);
    res.json({ draining: true });
  });
  app.post("/api/resume", (_req, res) => {
    o.hooks.setDraining(false);
    res.json({ draining: false });
  });
  app.post("/api/sweep", async (req, res) => {
    try {
      res.json(await o.hooks.sweep(req.query.dryRun === "1" || req.query.dryRun === "true"));
    } catch (err) {
      res.status(500).json({ error: (err as Error).message });
    }
  });
  app.use((_req, res) => {
    res.status(404).json({ error: "not found" });
  });
  const { server, url } = await listenLimited(app, o.port, o.host, o.serverLimits);
  o.logger.info({ url, token: o.token ? "required" : "none (loopback only)" }, "admin listener up");
  return {
    url,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
