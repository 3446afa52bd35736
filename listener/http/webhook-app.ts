// The internet-facing port: the webhook route, /healthz, and nothing else (the status page, metrics
// and API are on the admin listener). /healthz says ok or not ok and nothing more: no version,
// counts or names for whoever can reach the webhook.
import express, { type Express } from "express";
import { webhookRouter, type WebhookOptions } from "./webhook.js";
import { trustProxySetting, type TrustProxy } from "./trust-proxy.js";

export interface WebhookAppOptions {
  webhookPath: string;
  webhook: WebhookOptions;
  /** listener.trustProxy: the proxy hops whose X-Forwarded-For gives the client's address. */
  trustProxy: TrustProxy;
  /** Whether the listener can do its work (e.g. its store answers). */
  healthy: () => boolean;
}

export function webhookApp(o: WebhookAppOptions): Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("trust proxy", trustProxySetting(o.trustProxy));
  // The webhook route comes before any body parser: the HMAC is over the raw bytes.
  app.use(webhookRouter(o.webhookPath, o.webhook));
  app.get("/healthz", (_req, res) => {
    let ok = false;
    try {
      ok = o.healthy();
    } catch {
      ok = false;
    }
    res.status(ok ? 200 : 503).type("text/plain").send(ok ? "ok" : "not ok");
  });
  app.use((_req, res) => {
    res.status(404).json({ error: "not found" });
  });
  return app;
}
