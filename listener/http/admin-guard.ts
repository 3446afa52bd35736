// What every admin request passes before a route sees it, against browsers turned on the admin:
// - Host: only the names the admin is reached by (DNS rebinding: a page on evil.example whose name
//   now resolves to 127.0.0.1 sends `Host: evil.example`). 421 otherwise.
// - state-changing requests: never from another origin (`Sec-Fetch-Site`, `Origin`: 403), and JSON
//   bodies only (415): a cross-site <form> can send text/plain or form bodies without a preflight,
//   never application/json.
// - the token, always: `Authorization: Bearer` (CLI, Prometheus) or the session cookie the login
//   form sets (browsers); both compared in constant time.
import { createHmac } from "node:crypto";
import { sameSecret, secretDigest } from "./same-secret.js";
import type { NextFunction, Request, Response } from "express";

/** The browser session cookie: HttpOnly, SameSite=Strict, gone when the browser closes. */
export const SESSION_COOKIE = "pve_runners_admin";

const LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]"];
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** A host name or address as the URL parser writes it (lower case, IPv6 bracketed), or null. */
export function normalHost(name: string): string | null {
  const bare = name.trim();
  if (!bare) return null;
  try {
    return new URL(`http://${bare.includes(":") && !bare.startsWith("[") ? `[${bare}]` : bare}/`).hostname;
  } catch {
    return null;
  }
}

/** The hostname of a Host header value (port dropped), or null when it is not host[:port]. */
function hostOfHeader(value: string | undefined): string | null {
  if (!value || !/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.test(value)) return null;
  return normalHost(value.replace(/:\d+$/, ""));
}

/**
 * The names the admin answers to: the bind address, the loopback names and those configured.
 * The port is not compared: an SSH forward (`ssh -L 9000:127.0.0.1:8791`) changes it, and a
 * rebinding page can only send its own name, never one of these.
 */
export function allowedHostNames(bindHost: string, extra: readonly string[]): Set<string> {
  const names = new Set(LOOPBACK_NAMES);
  for (const n of [bindHost, ...extra]) {
    const h = normalHost(n);
    if (h) names.add(h);
  }
  return names;
}

export function hostCheck(allowed: ReadonlySet<string>) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const host = hostOfHeader(req.headers.host);
    if (host && allowed.has(host)) return next();
    res.status(421).json({ error: "unexpected Host header: add the name to admin.allowedHosts if you reach the admin by it" });
  };
}

/** State-changing requests from the admin's own origin only; a browser says where a request comes from. */
export function sameOriginCheck(req: Request, res: Response, next: NextFunction): void {
  if (SAFE_METHODS.has(req.method)) return next();
  const site = req.get("sec-fetch-site");
  if (site !== undefined && site !== "same-origin" && site !== "none") {
    res.status(403).json({ error: `cross-site request refused (Sec-Fetch-Site: ${site})` });
    return;
  }
  const origin = req.get("origin");
  if (origin !== undefined) {
    let same = false;
    try {
      // Compared under the origin's scheme, so a default port written or left out compares equal.
      // Behind a reverse proxy the proxy must pass the Host it was asked for (nginx: proxy_set_header Host $host).
      const o = new URL(origin);
      same = (o.protocol === "http:" || o.protocol === "https:") && o.host === new URL(`${o.protocol}//${req.headers.host ?? ""}/`).host;
    } catch {
      same = false;
    }
    if (!same) {
      res.status(403).json({ error: "cross-origin request refused (Origin is not this admin listener)" });
      return;
    }
  }
  next();
}

/** State-changing API requests carry JSON; a cross-site form cannot send that without a preflight. */
export function jsonBodyOnly(req: Request, res: Response, next: NextFunction): void {
  if (SAFE_METHODS.has(req.method) || req.is("application/json")) return next();
  res.status(415).json({ error: "send Content-Type: application/json" });
}

/** What the session cookie holds: derived from the token (not the token), changes when it does. */
export function sessionValue(token: string): string {
  return createHmac("sha256", token).update("pve-runners admin session v1").digest("base64url");
}

function cookie(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export interface TokenAuth {
  /** True when the request carries the bearer token or the session cookie. */
  ok(req: Request): boolean;
  /** True when a login form's token is the admin token. */
  matches(given: string): boolean;
  /** The Set-Cookie value of a fresh browser session. */
  sessionCookie(): string;
}

export function tokenAuth(token: string): TokenAuth {
  const wantToken = secretDigest(token);
  const session = sessionValue(token);
  const wantSession = secretDigest(session);
  return {
    ok(req) {
      const m = /^Bearer (\S+)$/.exec(req.get("authorization") ?? "");
      if (m) return sameSecret(m[1], wantToken);
      const c = cookie(req, SESSION_COOKIE);
      return c !== undefined && sameSecret(c, wantSession);
    },
    matches: (given) => sameSecret(given, wantToken),
    // No Max-Age: a session cookie. No Secure: the admin listener speaks plain http (loopback, SSH forward).
    sessionCookie: () => `${SESSION_COOKIE}=${session}; Path=/; HttpOnly; SameSite=Strict`,
  };
}
