// /api2/json as pveproxy serves it: API-token auth (failures delayed 3 s, status line only),
// parameters from the query string and form or JSON bodies, {"data": …} envelopes, PVE's error
// shapes, and 501 for any method/path it does not know.
import express, { Router, type NextFunction, type Request, type Response } from "express";
import { ClusterApi } from "./cluster.js";
import { delay, type PveContext } from "./context.js";
import { NodeUnreachable, PveError, notImplemented, paramError, proxyTimeout } from "./errors.js";
import { FirewallApi } from "./firewall.js";
import { LxcApi } from "./lxc.js";
import { flatten, verify, type RawParams } from "./params.js";
import { callerOf, type Caller, type TokenDef } from "./privileges.js";
import type { Downloads } from "./downloads.js";
import { StorageContentApi } from "./storage-content.js";
import type { Tickets } from "./tickets.js";

/** A response with PVE's `total` attribute next to `data` (task logs). */
export class WithTotal {
  constructor(
    readonly data: unknown,
    readonly total: number,
  ) {}
}

type Handler = (caller: Caller, params: RawParams) => unknown;

/** `PVEAPIToken=USER@REALM!TOKENID=SECRET` (also with a space after the name). */
export function tokenFrom(header: string | undefined, tokens: readonly TokenDef[]): TokenDef | null | undefined {
  if (!header) return undefined;
  const m = /(?:^|\s)PVEAPIToken[=\s](\S+)/.exec(header);
  if (!m) return null;
  const eq = m[1].lastIndexOf("=");
  if (eq < 0) return null;
  const [id, secret] = [m[1].slice(0, eq), m[1].slice(eq + 1)];
  return tokens.find((t) => t.id === id && t.secret === secret) ?? null;
}

export function sendError(res: Response, err: PveError): void {
  res.statusMessage = err.message.split("\n")[0].replace(/[^\x20-\x7e]/g, "?");
  res.status(err.status);
  if (err.bare) res.end();
  else res.json(err.body());
}

export function apiRouter(ctx: PveContext, tokens: () => readonly TokenDef[], auth: { tickets: Tickets; downloads: Downloads }): Router {
  const r = Router();
  const lxc = new LxcApi(ctx);
  const cluster = new ClusterApi(ctx);
  const firewall = new FirewallApi(ctx);
  const storage = new StorageContentApi(ctx, auth.downloads);

  // POST /access/ticket needs no authentication (create_ticket, pve-access-control).
  r.post("/access/ticket", async (req: Request, res: Response) => {
    const p = flatten(req.body);
    const ok = auth.tickets.login(p.username, p.password);
    if (!ok) {
      await ctx.clock.sleep(ctx.latency.authFailure);
      throw new PveError(401, "authentication failure", undefined, true);
    }
    res.json({ data: { ...ok, cap: {} } });
  });

  r.use(async (req: Request, res: Response, next: NextFunction) => {
    const header = req.get("authorization");
    const ticket = header === undefined ? auth.tickets.verify(req.get("cookie")) : null;
    if (ticket) {
      // pve-http-server: every write with a ticket must carry the matching CSRF token.
      if (req.method !== "GET" && !auth.tickets.csrfOk(req.get("csrfpreventiontoken"), ticket.caller.userid)) {
        throw new PveError(401, "Permission denied - invalid csrf token", undefined, true);
      }
      res.locals.caller = ticket.caller;
    } else {
      const token = tokenFrom(header, tokens());
      if (!token) {
        // pveproxy delays every failed login by 3 s; the answer is a bare status line.
        await ctx.clock.sleep(ctx.latency.authFailure);
        throw new PveError(401, token === undefined ? "No ticket" : "Authentication failed!", undefined, true);
      }
      res.locals.caller = callerOf(token);
    }
    if (["GET", "DELETE"].includes(req.method) && Number(req.get("content-length") ?? 0) > 0) {
      throw new PveError(501, `Unexpected content for method '${req.method}'`, undefined, true);
    }
    const fault = ctx.faults.forRequest(req.path);
    if (fault?.kind === "timeout") throw proxyTimeout();
    if (fault?.kind === "error" && fault.message) throw new PveError(500, `${fault.message}\n`);
    await delay(ctx, ctx.latency.api);
    next();
  });

  const route = (method: "get" | "post" | "put" | "delete", path: string, fn: Handler) => {
    r[method](path, async (req: Request, res: Response) => {
      const params = { ...flatten(req.query), ...flatten(req.body) };
      for (const [k, v] of Object.entries(req.params as Record<string, string>)) {
        if (params[k] !== undefined && params[k] !== v) throw paramError({ [k]: "duplicate parameter (already defined in URI) with conflicting values!" });
        params[k] = v;
      }
      let out: unknown;
      try {
        out = await fn(res.locals.caller as Caller, params);
      } catch (err) {
        // pveproxy's connection attempt to an offline node fails only after the ARP timeout.
        if (err instanceof NodeUnreachable) await ctx.clock.sleep(ctx.latency.unreachable);
        throw err;
      }
      res.json(out instanceof WithTotal ? { data: out.data, total: out.total } : { data: out ?? null });
    });
  };

  route("get", "/version", (_c, p) => cluster.version(p));
  route("get", "/access/permissions", (c, p) => {
    const q = verify(p, { path: { type: "string", optional: true }, userid: { type: "string", optional: true } });
    // Every user/token may dump its own permissions; anyone else's needs Sys.Audit on /access.
    if (q.userid !== undefined && q.userid !== c.userid) {
      ctx.acl.check(c, "/access", ["Sys.Audit"]);
      throw new PveError(500, `no such user ('${q.userid}')\n`);
    }
    if (q.path === undefined) throw new PveError(501, "the whole permission tree is not simulated: give path\n");
    return { [q.path]: ctx.acl.effective(c, q.path) };
  });
  route("get", "/nodes", (c, p) => cluster.nodes(c, p));
  route("get", "/nodes/:node/storage", (c, p) => cluster.storage(c, p));
  route("get", "/nodes/:node/lxc", (c, p) => lxc.list(c, p));
  route("post", "/nodes/:node/lxc", (c, p) => lxc.create(c, p));
  route("post", "/nodes/:node/lxc/:vmid/template", (c, p) => lxc.template(c, p));
  route("get", "/nodes/:node/query-url-metadata", (c, p) => storage.queryUrlMetadata(c, p));
  route("get", "/nodes/:node/storage/:storage/content", (c, p) => storage.list(c, p));
  route("delete", "/nodes/:node/storage/:storage/content/:volume", (c, p) => storage.delete(c, p));
  route("post", "/nodes/:node/storage/:storage/download-url", (c, p) => storage.downloadUrl(c, p));
  route("get", "/nodes/:node/lxc/:vmid", (c, p) => lxc.index(c, p));
  route("delete", "/nodes/:node/lxc/:vmid", (c, p) => lxc.destroy(c, p));
  route("get", "/nodes/:node/lxc/:vmid/config", (c, p) => lxc.getConfig(c, p));
  route("put", "/nodes/:node/lxc/:vmid/config", (c, p) => lxc.setConfig(c, p));
  route("post", "/nodes/:node/lxc/:vmid/clone", (c, p) => lxc.clone(c, p));
  route("get", "/nodes/:node/lxc/:vmid/status/current", (c, p) => lxc.status(c, p));
  route("post", "/nodes/:node/lxc/:vmid/status/start", (c, p) => lxc.start(c, p));
  route("post", "/nodes/:node/lxc/:vmid/status/stop", (c, p) => lxc.stop(c, p));
  route("post", "/nodes/:node/lxc/:vmid/status/shutdown", (c, p) => lxc.shutdown(c, p));
  route("get", "/nodes/:node/lxc/:vmid/interfaces", (c, p) => lxc.interfaces(c, p));
  route("get", "/nodes/:node/lxc/:vmid/firewall/options", (c, p) => firewall.getOptions(c, p));
  route("put", "/nodes/:node/lxc/:vmid/firewall/options", (c, p) => firewall.setOptions(c, p));
  route("get", "/nodes/:node/lxc/:vmid/firewall/rules", (c, p) => firewall.getRules(c, p));
  route("post", "/nodes/:node/lxc/:vmid/firewall/rules", (c, p) => firewall.createRule(c, p));
  route("get", "/cluster/firewall/options", (c, p) => firewall.getClusterOptions(c, p));
  route("put", "/cluster/firewall/options", (c, p) => firewall.setClusterOptions(c, p));
  route("get", "/cluster/firewall/groups", (c, p) => firewall.listGroups(c, p));
  route("post", "/cluster/firewall/groups", (c, p) => firewall.createGroup(c, p));
  route("get", "/cluster/firewall/groups/:group", (c, p) => firewall.getGroupRules(c, p));
  route("post", "/cluster/firewall/groups/:group", (c, p) => firewall.createGroupRule(c, p));
  route("get", "/nodes/:node/tasks", (c, p) => cluster.taskList(c, p));
  route("get", "/nodes/:node/tasks/:upid/status", (c, p) => cluster.taskStatus(c, p));
  route("delete", "/nodes/:node/tasks/:upid", (c, p) => cluster.taskStop(c, p));
  route("get", "/nodes/:node/tasks/:upid/log", (c, p) => {
    const { data, total } = cluster.taskLog(c, p);
    return new WithTotal(data, total);
  });
  route("get", "/pools", (c, p) => cluster.pools(c, p));
  route("get", "/pools/:poolid", (c, p) => cluster.pool(c, p));
  route("get", "/cluster/resources", (c, p) => cluster.resources(c, p));
  route("get", "/cluster/nextid", (_c, p) => cluster.nextid(p));

  r.use((req: Request) => {
    throw notImplemented(req.method, req.path);
  });
  return r;
}

/** Body parsing as pveproxy accepts it: form-urlencoded or JSON, at most 64 KiB. */
export function bodyParsers(): express.RequestHandler[] {
  return [express.urlencoded({ extended: false, limit: "64kb" }), express.json({ limit: "64kb" })];
}
