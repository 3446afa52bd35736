// A raw client for the simulator, for tests and scripts: it never throws on an API error and
// shows exactly what came over the wire (status, reason phrase, body).
import { SIM_NODE, SIM_TOKENS, type TokenDef } from "./index.js";

export interface RawResponse<T = unknown> {
  status: number;
  /** The HTTP reason phrase: PVE puts the error message there. */
  reason: string;
  /** Parsed JSON, or null for a bare status line. */
  body: { data?: T; message?: string; errors?: Record<string, string>; total?: number } | null;
  data: T;
}

export type Params = Record<string, string | number | boolean | undefined>;

export class PveSimClient {
  constructor(
    readonly baseUrl: string,
    readonly token: TokenDef = SIM_TOKENS.root,
    readonly node = SIM_NODE,
  ) {}

  as(token: TokenDef): PveSimClient {
    return new PveSimClient(this.baseUrl, token, this.node);
  }

  /** The same client for another node's paths (ct(), waitTask()). */
  on(node: string): PveSimClient {
    return new PveSimClient(this.baseUrl, this.token, node);
  }

  /** Like the bpg provider: form-urlencoded bodies, booleans as 1/0, query strings for GET/DELETE. */
  async call<T = unknown>(method: "GET" | "POST" | "PUT" | "DELETE", path: string, params: Params = {}, opts: { json?: boolean; auth?: string | null } = {}): Promise<RawResponse<T>> {
    const form = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined) form.set(k, typeof v === "boolean" ? (v ? "1" : "0") : String(v));
    const inQuery = method === "GET" || method === "DELETE";
    const url = `${this.baseUrl}${path.startsWith("/_sim") ? "" : "/api2/json"}${path}${inQuery && [...form].length ? `?${form}` : ""}`;
    const headers: Record<string, string> = {};
    const auth = opts.auth === undefined ? `PVEAPIToken=${this.token.id}=${this.token.secret}` : opts.auth;
    if (auth !== null) headers.authorization = auth;
    let body: string | undefined;
    if (!inQuery) {
      headers["content-type"] = opts.json ? "application/json" : "application/x-www-form-urlencoded";
      body = opts.json ? JSON.stringify(params) : form.toString();
    }
    const res = await fetch(url, { method, headers, body });
    const text = await res.text();
    let parsed: RawResponse<T>["body"] = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    return { status: res.status, reason: res.statusText, body: parsed, data: parsed?.data as T };
  }

  get<T = unknown>(path: string, params?: Params) {
    return this.call<T>("GET", path, params);
  }

  post<T = unknown>(path: string, params?: Params) {
    return this.call<T>("POST", path, params);
  }

  put<T = unknown>(path: string, params?: Params) {
    return this.call<T>("PUT", path, params);
  }

  delete<T = unknown>(path: string, params?: Params) {
    return this.call<T>("DELETE", path, params);
  }

  ct(vmid: number, rest = ""): string {
    return `/nodes/${this.node}/lxc/${vmid}${rest}`;
  }

  /** Polls a task until it stops; returns its exit status. */
  async waitTask(upid: string, timeoutMs = 10_000, everyMs = 5): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.get<{ status: string; exitstatus?: string }>(`/nodes/${this.node}/tasks/${encodeURIComponent(upid)}/status`);
      if (r.status !== 200) throw new Error(`task status: ${r.status} ${r.reason}`);
      if (r.data.status === "stopped") return r.data.exitstatus ?? "";
      if (Date.now() > end) throw new Error(`task ${upid} still running after ${timeoutMs} ms`);
      await new Promise((res) => setTimeout(res, everyMs));
    }
  }

  /** Calls a task-starting endpoint and waits for the task; throws if the call itself fails. */
  async task(method: "POST" | "DELETE", path: string, params?: Params): Promise<string> {
    const r = await this.call<string>(method, path, params);
    if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${r.reason}`);
    return this.waitTask(r.data);
  }
}
