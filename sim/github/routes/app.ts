// App-level routes (JWT): the app, its installations, installation tokens, webhook deliveries.
import { Router, type Request, type Response } from "express";
import { installationPermissions } from "../auth.js";
import type { SimContext } from "../context.js";
import { GitHubError, notFound } from "../errors.js";
import type { SimDelivery } from "../webhooks.js";
import type { Installation } from "../world.js";
import { body, intParam, pageOf, queryString, requireApp } from "./common.js";

export function appRoutes(ctx: SimContext): Router {
  const r = Router();
  const installationJson = (i: Installation) => ctx.shapes.installation(i, ctx.appId, installationPermissions(i));
  const found = (i: Installation | undefined): Installation => {
    if (!i) throw notFound();
    return i;
  };

  r.get("/app", (_req, res) => {
    requireApp(res);
    res.json({
      id: ctx.appId,
      slug: "pve-runners-sim",
      client_id: `Iv1.${ctx.appId.toString(16).padStart(16, "0")}`,
      node_id: Buffer.from(`App${ctx.appId}`).toString("base64"),
      owner: ctx.shapes.account({ login: "pve-runners", id: 1, type: "Organization", installationId: 0 }),
      name: "pve-runners (sim)",
      description: "Fake GitHub App served by the pve-runners simulator",
      external_url: ctx.url(),
      html_url: `${ctx.url()}/apps/pve-runners-sim`,
      created_at: "2025-01-01T00:00:00Z",
      updated_at: "2025-01-01T00:00:00Z",
      permissions: { actions: "read", administration: "write", checks: "write", metadata: "read", organization_self_hosted_runners: "write" },
      events: ["workflow_job"],
      installations_count: ctx.world.installations.size,
    });
  });

  r.get("/app/installations", (req, res) => {
    requireApp(res);
    res.json(pageOf(ctx, req, res, [...ctx.world.installations.values()]).map(installationJson));
  });

  r.get("/app/installations/:id", (req, res) => {
    requireApp(res);
    res.json(installationJson(found(ctx.world.installations.get(intParam(req, "id")))));
  });

  r.get("/repos/:owner/:repo/installation", (req, res) => {
    requireApp(res);
    const repo = ctx.world.repo(`${req.params.owner}/${req.params.repo}`);
    res.json(installationJson(found(repo && ctx.world.installations.get(repo.installationId))));
  });

  r.get("/orgs/:org/installation", (req, res) => {
    requireApp(res);
    const org = ctx.world.org(req.params.org);
    res.json(installationJson(found(org && ctx.world.installations.get(org.installationId))));
  });

  r.get("/users/:user/installation", (req, res) => {
    requireApp(res);
    const account = ctx.world.account(req.params.user);
    res.json(installationJson(found(account && ctx.world.installations.get(account.installationId))));
  });

  r.post("/app/installations/:id/access_tokens", (req, res) => {
    requireApp(res);
    const inst = found(ctx.world.installations.get(intParam(req, "id")));
    const b = body(req);
    const narrowed = narrowRepositories(inst, b);
    const issued = ctx.auth.mintToken(inst, narrowed);
    res.status(201).json({
      token: issued.token,
      expires_at: new Date(issued.expiresAt).toISOString().replace(/\.\d{3}Z$/, "Z"),
      permissions: issued.permissions,
      repository_selection: "selected",
      ...(narrowed ? { repositories: inst.repos.filter((x) => narrowed.has(x.fullName.toLowerCase())).map((x) => ctx.shapes.repository(x)) } : {}),
    });
  });

  r.get("/app/hook/deliveries", (req, res) => {
    requireApp(res);
    res.json(deliveryPage(ctx, req, res));
  });

  r.get("/app/hook/deliveries/:id", (req, res) => {
    requireApp(res);
    const d = ctx.webhooks.get(intParam(req, "id"));
    if (!d) throw notFound();
    res.json({
      ...deliverySummary(d),
      url: d.url ?? "",
      request: { headers: d.request.headers, payload: d.request.payload },
      response: { headers: d.response.headers, payload: d.response.payload },
    });
  });

  r.post("/app/hook/deliveries/:id/attempts", (req, res) => {
    requireApp(res);
    if (!ctx.webhooks.redeliver(intParam(req, "id"))) throw notFound();
    res.status(202).json({});
  });

  return r;
}

function narrowRepositories(inst: Installation, b: Record<string, unknown>): Set<string> | undefined {
  const names = Array.isArray(b.repositories) ? (b.repositories as unknown[]).map(String) : undefined;
  const ids = Array.isArray(b.repository_ids) ? (b.repository_ids as unknown[]).map(Number) : undefined;
  if (!names && !ids) return undefined;
  const set = new Set<string>();
  for (const n of names ?? []) {
    const repo = inst.repos.find((x) => x.name.toLowerCase() === n.toLowerCase() || x.fullName.toLowerCase() === n.toLowerCase());
    if (!repo) throw inaccessibleRepo();
    set.add(repo.fullName.toLowerCase());
  }
  for (const id of ids ?? []) {
    const repo = inst.repos.find((x) => x.id === id);
    if (!repo) throw inaccessibleRepo();
    set.add(repo.fullName.toLowerCase());
  }
  return set;
}

const inaccessibleRepo = () =>
  new GitHubError(422, "There is at least one repository that does not exist or is not accessible to the parent installation.");

export function deliverySummary(d: SimDelivery): Record<string, unknown> {
  return {
    id: d.id,
    guid: d.guid,
    delivered_at: d.deliveredAt,
    redelivery: d.redelivery,
    duration: d.durationSeconds,
    status: d.status,
    status_code: d.statusCode,
    event: d.event,
    action: d.action,
    installation_id: d.installationId,
    repository_id: d.repositoryId,
    throttled_at: null,
  };
}

/** Newest first, cursor paging via Link rel="next" like GitHub's deliveries API. */
function deliveryPage(ctx: SimContext, req: Request, res: Response): Record<string, unknown>[] {
  const perPage = Math.min(100, Math.max(1, Number(queryString(req, "per_page") ?? 30) || 30));
  const cursor = queryString(req, "cursor");
  const status = queryString(req, "status");
  let items = ctx.webhooks.list().sort((a, b) => b.id - a.id);
  if (status === "success") items = items.filter((d) => d.status === "OK");
  if (status === "failure") items = items.filter((d) => d.status !== "OK");
  if (cursor) {
    const from = Number(Buffer.from(cursor, "base64url").toString("utf8"));
    items = items.filter((d) => d.id <= from);
  }
  const page = items.slice(0, perPage);
  const next = items[perPage];
  if (next) {
    const u = new URL(req.originalUrl, ctx.url());
    u.searchParams.set("per_page", String(perPage));
    u.searchParams.set("cursor", Buffer.from(String(next.id)).toString("base64url"));
    res.setHeader("link", `<${u.toString()}>; rel="next"`);
  }
  return page.map(deliverySummary);
}
