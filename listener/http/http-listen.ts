// Listens and resolves once the port is bound (or rejects with the bind error), with the base URL
// to reach it (IPv6 bracketed, port 0 resolved). Shared by the listener, its admin side and the sims.
import { createServer, type RequestListener, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export async function listen(app: { listen(port: number, host: string): Server }, port: number, host: string): Promise<{ server: Server; url: string }> {
  const server = app.listen(port, host);
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  const a = server.address() as AddressInfo;
  return { server, url: `http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}` };
}

/** What one client may hold of our listeners (the webhook port and the admin port). */
export interface ServerLimits {
  /** Request headers must be complete this long after the request starts (slowloris), else 408. */
  headersTimeoutMs: number;
  /** The whole request, body included, must have arrived by then, else 408. */
  requestTimeoutMs: number;
  /** An idle kept-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** Connections beyond this are closed at once. */
  maxConnections: number;
}

/**
 * Fixed defaults (docs/config.md, "Server limits"). A delivery is a few KiB that GitHub sends at
 * once and expects answered within 10 s; Node's own defaults (60 s for headers, 300 s for the
 * request, no connection cap) let a few slow clients hold sockets for minutes.
 */
export const SERVER_LIMITS: Readonly<ServerLimits> = { headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 5_000, maxConnections: 256 };

/**
 * An HTTP server with the limits above (or some overridden, e.g. small ones in tests), listening.
 * Node checks the header and request timeouts on a timer (default every 30 s, which would let a
 * slow client keep its socket up to 40 s): the timer runs at a quarter of the header timeout, at
 * most every second.
 */
export async function listenLimited(handler: RequestListener, port: number, host: string, limits: Partial<ServerLimits> = {}): Promise<{ server: Server; url: string }> {
  const l = { ...SERVER_LIMITS, ...limits };
  const server = createServer(
    {
      headersTimeout: l.headersTimeoutMs,
      requestTimeout: l.requestTimeoutMs,
      connectionsCheckingInterval: Math.max(10, Math.min(1_000, Math.floor(l.headersTimeoutMs / 4))),
    },
    handler,
  );
  server.keepAliveTimeout = l.keepAliveTimeoutMs;
  server.maxConnections = l.maxConnections;
  return listen(server, port, host);
}
