// GET /repos/actions/runner/releases[/latest] (GitHub REST "Releases"): public data, so anonymous
// callers and any token get it. Only actions/runner has releases here; any other repo is a 404.
import { Router, type Request, type Response } from "express";
import type { SimContext } from "../context.js";
import { GitHubError, notFound } from "../errors.js";
import type { SimRelease } from "../releases.js";
import { pageOf } from "./common.js";

const OWNER = "actions";
const REPO = "runner";

function isRunnerRepo(req: Request): boolean {
  return String(req.params.owner).toLowerCase() === OWNER && String(req.params.repo).toLowerCase() === REPO;
}

/** The release object's shape (docs.github.com/rest/releases/releases#get-the-latest-release). */
function releaseJson(ctx: SimContext, r: SimRelease): Record<string, unknown> {
  const api = `${ctx.url()}/repos/${OWNER}/${REPO}`;
  const web = `https://github.com/${OWNER}/${REPO}`;
  return {
    url: `${api}/releases/${r.id}`,
    assets_url: `${api}/releases/${r.id}/assets`,
    upload_url: `https://uploads.github.com/repos/${OWNER}/${REPO}/releases/${r.id}/assets{?name,label}`,
    html_url: `${web}/releases/tag/${r.tagName}`,
    id: r.id,
    author: { login: "github-actions[bot]", id: 41898282, type: "Bot", site_admin: false },
    node_id: `RE_${Buffer.from(String(r.id)).toString("base64url")}`,
    tag_name: r.tagName,
    target_commitish: "main",
    name: r.tagName,
    draft: r.draft,
    immutable: false,
    prerelease: r.prerelease,
    created_at: r.createdAt,
    published_at: r.publishedAt,
    assets: [],
    tarball_url: `${api}/tarball/${r.tagName}`,
    zipball_url: `${api}/zipball/${r.tagName}`,
    body: `Runner ${r.tagName}`,
  };
}

export function releaseRoutes(ctx: SimContext): Router {
  const r = Router();
  r.get("/repos/:owner/:repo/releases/latest", (req: Request, res: Response) => {
    const latest = isRunnerRepo(req) ? ctx.releases.latest() : undefined;
    if (!latest) throw new GitHubError(404, "Not Found", { documentation_url: "https://docs.github.com/rest/releases/releases#get-the-latest-release" });
    res.json(releaseJson(ctx, latest));
  });
  r.get("/repos/:owner/:repo/releases", (req: Request, res: Response) => {
    if (!isRunnerRepo(req)) throw notFound();
    res.json(pageOf(ctx, req, res, ctx.releases.published()).map((x) => releaseJson(ctx, x)));
  });
  return r;
}
