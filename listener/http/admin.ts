// The admin listener, on its own address (default 127.0.0.1:8791), never the webhook port:
// GET / (status page), GET /metrics (Prometheus), and the JSON API the CLI uses.
// Every request needs the token (also on loopback) and an expected Host; state-changing ones come
// from this origin with a JSON body (listener/http/admin-guard.ts). No CORS; strict headers.
import express, { type NextFunction, type Request, type Response } from "express";
import { listenLimited, type ServerLimits } from "./http-listen.js";
import type { Logger } from "pino";
import type { Metrics } from "../metrics/metrics.js";
import type { StatusSnapshot } from "./status.js";
import { allowedHostNames, hostCheck, jsonBodyOnly, sameOriginCheck, tokenAuth } from "./admin-guard.js";
import { LOGIN_PAGE_CSP, renderLoginPage } from "./admin-login.js";
import { TemplateRefused } from "../templates/template-rotation.js";

export interface AdminHooks {
  snapshot(): StatusSnapshot;
  setDraining(on: boolean): void;
  sweep(dryRun: boolean): Promise<unknown>;
  /** The status page renderer (listener/http/status-page.ts). */
  renderPage?(s: StatusSnapshot): string;
  /** Blue/green template replacement (listener/templates/template-rotation.ts). */
  templates?: {
    view(): unknown;
    suggestVmid(copy: string): Promise<number>;
    replace(from: string, vmid: number): Promise<unknown>;
  };
}

export interface AdminOptions {
  host: string;
  port: number;
  /** Required on every request: bearer token, or the session cookie the login form sets. */
  token: string;
  /** Host names besides the bind address and loopback the admin is reached by (admin.allowedHosts). */
  allowedHosts?: readonly string[];
  metrics: Metrics;
  hooks: AdminHooks;
  logger: Logger;
  /** Timeouts and connection cap (http-listen.ts SERVER_LIMITS unless overridden). */
  serverLimits?: Partial<ServerLimits>;
}

function loginPage(res: Response, status: number, error?: string): void {
  res.setHeader("content-security-policy", LOGIN_PAGE_CSP);
  // Under no-referrer a browser sends `Origin: null` with the form's POST, which the origin check refuses.
  res.setHeader("referrer-policy", "same-origin");
  res.status(status).type("html").send(renderLoginPage(error));
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
  if (!o.token) throw new Error("the admin listener needs a token (admin.tokenFile)");
  const auth = tokenAuth(o.token);
  const app = express();
  app.disable("x-powered-by");
  app.use(securityHeaders, hostCheck(allowedHostNames(o.host, o.allowedHosts ?? [])), sameOriginCheck);
  // The browser's way in: the token once, in a form body, for a session cookie.
  app.get("/login", (_req, res) => loginPage(res, 200));
  app.post("/login", express.urlencoded({ extended: false, limit: "4kb" }), (req, res) => {
    if (!req.is("application/x-www-form-urlencoded")) {
      res.status(415).json({ error: "send the login form (application/x-www-form-urlencoded)" });
      return;
    }
    const given = (req.body as { token?: unknown } | undefined)?.token;
    if (typeof given === "string" && given.trim() && auth.matches(given.trim())) {
      res.setHeader("set-cookie", auth.sessionCookie());
      res.redirect(303, "/");
      return;
    }
    loginPage(res, 401, "That is not the admin token.");
  });
  app.use(jsonBodyOnly, (req: Request, res: Response, next: NextFunction) => {
    if (auth.ok(req)) return next();
    if (req.method === "GET" && req.path === "/") return loginPage(res, 401);
    res.setHeader("www-authenticate", 'Bearer realm="pve-runners admin"');
    res.status(401).json({ error: "admin token required (Authorization: Bearer …)" });
  });
  app.use(express.json({ limit: "16kb" }));
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
    const dryRun = (req.body as { dryRun?: unknown } | undefined)?.dryRun === true || req.query.dryRun === "1" || req.query.dryRun === "true";
    try {
      res.json(await o.hooks.sweep(dryRun));
    } catch (err) {
      res.status(500).json({ error: (err as Error).message });
    }
  });
  const templates = o.hooks.templates;
  if (templates) {
    // A refusal (TemplateRefused: the input names no template of ours) is the caller's: 409, one line.
    const fail = (res: Response, err: unknown) => {
      res.status(err instanceof TemplateRefused ? 409 : 502).json({ error: (err as Error).message });
    };
    app.get("/api/templates", (_req, res) => res.json(templates.view()));
    app.get("/api/templates/vmid", async (req, res) => {
      const copy = req.query.copy;
      if (typeof copy !== "string" || !copy) return void res.status(400).json({ error: "give ?copy=node/vmid (an active template copy)" });
      try {
        res.json({ copy, vmid: await templates.suggestVmid(copy) });
      } catch (err) {
        fail(res, err);
      }
    });
    app.post("/api/templates/replace", async (req, res) => {
      const { from, vmid } = (req.body ?? {}) as { from?: unknown; vmid?: unknown };
      if (typeof from !== "string" || typeof vmid !== "number") return void res.status(400).json({ error: 'send {"from": "node/vmid", "vmid": N}' });
      try {
        res.json(await templates.replace(from, vmid));
      } catch (err) {
        fail(res, err);
      }
    });
  }
  app.use((_req, res) => {
    res.status(404).json({ error: "not found" });
  });
  // A body that does not parse (or is too large): one JSON line, never express's HTML page, and
  // never the parser's message (it quotes the body).
  app.use((err: { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    if (err.status === 413) res.status(413).json({ error: "body too large" });
    else if (err.status && err.status >= 400 && err.status < 500) res.status(400).json({ error: "the body does not parse" });
    else res.status(500).json({ error: "internal error" });
  });
  const { server, url } = await listenLimited(app, o.port, o.host, o.serverLimits);
  // A boolean, not "token": a field named token is redacted, which would hide what it says.
  o.logger.info({ url, tokenRequired: true, allowedHosts: o.allowedHosts ?? [] }, "admin listener up");
  return {
    url,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
