// Helpers shared by the REST routers: caller checks, scope resolution, Link paging.
import type { Request, Response } from "express";
import type { Caller } from "../auth.js";
import type { MaybeCaller, SimContext } from "../context.js";
import { GitHubError, jwtUndecodable, notAccessible, notFound, requiresAuth } from "../errors.js";
import type { RunnerScope } from "../runners.js";
import type { Account, Repo } from "../world.js";

export const callerOf = (res: Response): MaybeCaller => res.locals.caller as MaybeCaller;

export function requireApp(res: Response): void {
  const c = callerOf(res);
  if (c.kind === "anonymous") throw requiresAuth();
  // GitHub tries to decode anything on /app routes as a JWT.
  if (c.kind !== "app") throw jwtUndecodable();
}

export function requireInstallation(res: Response): Extract<Caller, { kind: "installation" }> {
  const c = callerOf(res);
  if (c.kind === "anonymous") throw requiresAuth();
  if (c.kind !== "installation") throw notAccessible();
  return c;
}

const param = (req: Request, name: string): string => String((req.params as Record<string, string>)[name] ?? "");

/** The repo in the path, if the installation token may see it (GitHub hides others: 404). */
export function repoScope(ctx: SimContext, req: Request, res: Response): Repo {
  const caller = requireInstallation(res);
  const repo = ctx.world.repo(`${param(req, "owner")}/${param(req, "repo")}`);
  if (!repo || repo.installationId !== caller.installation.id) throw notFound();
  const narrowed = caller.token.repositories;
  if (narrowed && !narrowed.has(repo.fullName.toLowerCase())) throw notFound();
  return repo;
}

/** The org in the path, if the token belongs to that org's installation. */
export function orgScope(ctx: SimContext, req: Request, res: Response): Account {
  const caller = requireInstallation(res);
  const org = ctx.world.org(param(req, "org"));
  if (!org) throw notFound();
  if (org.installationId !== caller.installation.id) throw notAccessible();
  return org;
}

export function runnerScope(ctx: SimContext, req: Request, res: Response): RunnerScope {
  return req.params.org !== undefined ? { kind: "org", org: orgScope(ctx, req, res) } : { kind: "repo", repo: repoScope(ctx, req, res) };
}

export function intParam(req: Request, name: string): number {
  const v = param(req, name);
  if (!/^\d+$/.test(v)) throw notFound();
  return Number(v);
}

export function queryString(req: Request, name: string): string | undefined {
  const v = (req.query as Record<string, unknown>)[name];
  return typeof v === "string" ? v : undefined;
}

/** page/per_page paging with GitHub's Link header (rel next, last, first, prev). */
export function pageOf<T>(ctx: SimContext, req: Request, res: Response, items: T[]): T[] {
  const perPage = clamp(Number(queryString(req, "per_page") ?? 30) || 30, 1, 100);
  const page = Math.max(1, Number(queryString(req, "page") ?? 1) || 1);
  const last = Math.max(1, Math.ceil(items.length / perPage));
  const link = (p: number) => {
    const u = new URL(req.originalUrl, ctx.url());
    u.searchParams.set("per_page", String(perPage));
    u.searchParams.set("page", String(p));
    return `<${u.toString()}>`;
  };
  const rels: string[] = [];
  if (page > 1) rels.push(`${link(page - 1)}; rel="prev"`);
  if (page < last) rels.push(`${link(page + 1)}; rel="next"`, `${link(last)}; rel="last"`);
  if (page > 1) rels.push(`${link(1)}; rel="first"`);
  if (rels.length) res.setHeader("link", rels.join(", "));
  return items.slice((page - 1) * perPage, page * perPage);
}

const clamp = (n: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.floor(n)));

export function body(req: Request): Record<string, unknown> {
  const b: unknown = req.body;
  if (b === undefined) return {};
  if (typeof b !== "object" || b === null || Array.isArray(b)) throw new GitHubError(400, "Problems parsing JSON");
  return b as Record<string, unknown>;
}
