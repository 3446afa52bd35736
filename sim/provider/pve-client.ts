// The PVE REST client, shaped like bpg's proxmox/api/client.go: requests under /api2/json/, bodies
// form-urlencoded with sorted keys (Go's url.Values.Encode; a list repeats its key), booleans 1/0,
// token auth by header, errors "received an HTTP <code> response - Reason: <reason> (<details>)",
// a 404 or a 500 saying "does not exist" means "gone". GETs are retried on network errors.
// The endpoint's path is dropped, as in bpg v0.111.1 (proxmox/api/client.go NewConnection:
// `u.Path = ""` "make sure the path does not contain /api2/json", since v0.37.1), and DoRequest asks
// for "<scheme://host:port>/api2/json/<path>". A network error reads like Go's *url.Error, which
// names the whole URL: `Post "https://…/api2/json/…": <cause>`.
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { setTimeout as sleep } from "node:timers/promises";
import type { Log } from "./log.js";
import { redact } from "./log.js";

export type Params = Record<string, string | number | boolean | string[] | undefined | null>;

export type PveAuth = { kind: "token"; token: string } | { kind: "password"; username: string; password: string };

export interface PveClientOptions {
  endpoint: string;
  insecure: boolean;
  auth: PveAuth;
  log: Log;
}

export class PveHttpError extends Error {
  override readonly name = "PveHttpError";
  constructor(
    readonly code: number,
    readonly reason: string,
  ) {
    super(`received an HTTP ${code} response - Reason: ${reason}`);
  }
}

/** An error (or one it wraps) that means the object does not exist (bpg: api.ErrResourceDoesNotExist). */
export function isNotFound(err: unknown): boolean {
  for (let e = err; e; e = (e as { cause?: unknown }).cause) {
    if (e instanceof PveHttpError) {
      if (e.code === 404) return true;
      if (e.code === 500 && /does not exist|no such resource|no such ha|No such file or directory/.test(e.reason)) return true;
    }
  }
  return false;
}

export function httpErrorOf(err: unknown): PveHttpError | undefined {
  for (let e = err; e; e = (e as { cause?: unknown }).cause) if (e instanceof PveHttpError) return e;
  return undefined;
}

/** Wraps with a prefix the way Go's fmt.Errorf("...: %w") does. */
export function wrap(prefix: string, err: unknown): Error {
  return new Error(`${prefix}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

const API_PREFIX = "api2/json";

export class PveClient {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private ticket?: { cookie: string; csrf: string };

  constructor(private readonly opts: PveClientOptions) {
    const u = new URL(opts.endpoint);
    u.pathname = "/";
    u.search = "";
    this.base = u;
    // Like bpg (Go's crypto/x509 on Linux, root_unix.go): SSL_CERT_FILE, if set, names the trusted
    // roots — the listener points it at its clone gate's certificate (listener/lifecycle/clone-gate.ts). Go
    // also keeps the certs in SSL_CERT_DIR (/etc/ssl/certs); this stand-in trusts the file alone.
    const ca = process.env.SSL_CERT_FILE ? readFileSync(process.env.SSL_CERT_FILE) : undefined;
    this.agent = u.protocol === "https:" ? new https.Agent({ keepAlive: true, rejectUnauthorized: !opts.insecure, ca }) : new http.Agent({ keepAlive: true });
  }

  close(): void {
    this.agent.destroy();
  }

  /** One API call; resolves to the envelope's `data`. */
  async request<T = unknown>(method: string, path: string, params?: Params, signal?: AbortSignal): Promise<T> {
    const encoded = encodeParams(params);
    const inQuery = method === "GET" || method === "DELETE" || method === "HEAD";
    const fullPath = `${API_PREFIX}/${path}${inQuery && encoded ? (path.includes("?") ? "&" : "?") + encoded : ""}`;
    const body = !inQuery && encoded ? encoded : undefined;
    const headers: Record<string, string> = { Accept: "application/json", ...(await this.authHeaders(method, signal)) };
    if (body !== undefined) headers["Content-Type"] = "application/x-www-form-urlencoded";
    const attempts = method === "GET" ? 3 : 1;
    for (let attempt = 1; ; attempt++) {
      let res: RawResponse;
      try {
        res = await this.send(method, fullPath, headers, body, signal);
      } catch (err) {
        if (attempt < attempts && !signal?.aborted) {
          await sleep(100 * attempt, undefined, { signal });
          continue;
        }
        const op = method.charAt(0) + method.slice(1).toLowerCase();
        const url = new URL(fullPath, this.base).href;
        throw new Error(`failed to perform HTTP ${method} request (path: ${path}) - Reason: ${op} "${url}": ${this.scrub((err as Error).message)}`, { cause: err });
      }
      this.opts.log("debug", "pve api call", { method, path, status: res.status });
      if (res.status < 200 || res.status >= 300) throw errorFromResponse(res);
      if (!res.body) return null as T;
      try {
        return (JSON.parse(res.body) as { data: T }).data;
      } catch {
        throw new Error(`failed to decode HTTP ${method} response (path: ${path}) - Reason: not JSON`);
      }
    }
  }

  private async authHeaders(method: string, signal?: AbortSignal): Promise<Record<string, string>> {
    const auth = this.opts.auth;
    if (auth.kind === "token") return { Authorization: `PVEAPIToken=${auth.token}` };
    if (!this.ticket) {
      const res = await this.send("POST", `${API_PREFIX}/access/ticket`, { Accept: "application/json", "Content-Type": "application/x-www-form-urlencoded" }, encodeParams({ username: auth.username, password: auth.password }), signal);
      if (res.status !== 200) throw wrap("failed to authenticate", errorFromResponse(res));
      const data = (JSON.parse(res.body) as { data: { ticket: string; CSRFPreventionToken: string } }).data;
      this.ticket = { cookie: `PVEAuthCookie=${data.ticket}`, csrf: data.CSRFPreventionToken };
    }
    return { Cookie: this.ticket.cookie, ...(method === "GET" ? {} : { CSRFPreventionToken: this.ticket.csrf }) };
  }

  private scrub(text: string): string {
    const a = this.opts.auth;
    return redact(text, a.kind === "token" ? [a.token] : [a.password]);
  }

  private send(method: string, path: string, headers: Record<string, string>, body: string | undefined, signal?: AbortSignal): Promise<RawResponse> {
    const url = new URL(path, this.base);
    const mod = url.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { method, headers: { ...headers, ...(body !== undefined ? { "Content-Length": String(Buffer.byteLength(body)) } : {}) }, agent: this.agent, signal }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, reason: res.statusMessage ?? "", body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(body);
    });
  }
}

interface RawResponse {
  status: number;
  reason: string;
  body: string;
}

/** bpg's validateResponseCode: the reason phrase, plus the body's per-parameter errors and message. */
function errorFromResponse(res: RawResponse): PveHttpError {
  let msg = res.reason || http.STATUS_CODES[res.status] || "";
  try {
    const parsed = JSON.parse(res.body) as { errors?: Record<string, string> | null; message?: string | null };
    const details: string[] = [];
    for (const [k, v] of Object.entries(parsed.errors ?? {})) details.push(`${k}: ${String(v).replace(/[\r\n]+$/, "")}`);
    if (parsed.message) {
      const lines = [...new Set(parsed.message.split("\n"))].filter((l) => l.length > 0 && !l.startsWith(msg));
      details.push(...lines);
    }
    if (details.length > 0) msg = `${msg} (${details.join(" - ")})`;
  } catch {
    // not JSON: the reason phrase alone
  }
  return new PveHttpError(res.status, msg);
}

/** Go's url.Values.Encode: keys sorted, a list repeats its key, booleans as 1/0 (bpg's `int` tag). */
export function encodeParams(params?: Params): string {
  if (!params) return "";
  const sp = new URLSearchParams();
  for (const key of Object.keys(params).sort()) {
    const v = params[key];
    if (v === undefined || v === null) continue;
    if (Array.isArray(v)) for (const x of v) sp.append(key, x);
    else sp.append(key, typeof v === "boolean" ? (v ? "1" : "0") : String(v));
  }
  return sp.toString();
}
