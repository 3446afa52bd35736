// Check runs (installation token with checks: write): how pve-runners tells the person who pushed
// that infrastructure, not their workflow, failed their job.
import { Router } from "express";
import type { SimContext } from "../context.js";
import { GitHubError, notAccessible, notFound } from "../errors.js";
import { intParam, repoScope, requireInstallation } from "./common.js";

export interface SimCheckRun {
  id: number;
  repo: string;
  name: string;
  headSha: string;
  status: string;
  conclusion: string | null;
  output: { title: string; summary: string; text?: string } | null;
  externalId: string | null;
}

const STATUSES = ["queued", "in_progress", "completed"];
const CONCLUSIONS = ["action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale", "timed_out"];

export function checkRoutes(ctx: SimContext, store: SimCheckRun[]): Router {
  const r = Router();
  r.post("/repos/:owner/:repo/check-runs", (req, res) => {
    const repo = repoScope(ctx, req, res);
    if (requireInstallation(res).token.permissions.checks !== "write") throw notAccessible();
    const b = (req.body ?? {}) as Record<string, unknown>;
    const invalid = (field: string) => new GitHubError(422, "Invalid request.", { errors: [{ resource: "CheckRun", field, code: "invalid" }] });
    if (typeof b.name !== "string" || !b.name) throw invalid("name");
    if (typeof b.head_sha !== "string" || !/^[0-9a-f]{40}$/.test(b.head_sha)) throw invalid("head_sha");
    const status = (b.status as string | undefined) ?? "queued";
    if (!STATUSES.includes(status)) throw invalid("status");
    const conclusion = (b.conclusion as string | undefined) ?? null;
    if (status === "completed" && (!conclusion || !CONCLUSIONS.includes(conclusion))) throw invalid("conclusion");
    const out = b.output as { title?: unknown; summary?: unknown; text?: unknown } | undefined;
    if (out && (typeof out.title !== "string" || typeof out.summary !== "string")) throw invalid("output");
    const run: SimCheckRun = {
      id: 7_000_000 + store.length + 1,
      repo: repo.fullName,
      name: b.name,
      headSha: b.head_sha,
      status,
      conclusion,
      output: out ? { title: out.title as string, summary: out.summary as string, ...(typeof out.text === "string" ? { text: out.text } : {}) } : null,
      externalId: typeof b.external_id === "string" ? b.external_id : null,
    };
    store.push(run);
    res.status(201).json({ id: run.id, head_sha: run.headSha, name: run.name, status: run.status, conclusion: run.conclusion, external_id: run.externalId, output: run.output, html_url: `${ctx.url()}/${repo.fullName}/runs/${run.id}` });
  });
  r.get("/repos/:owner/:repo/check-runs/:id", (req, res) => {
    const repo = repoScope(ctx, req, res);
    const run = store.find((c) => c.id === intParam(req, "id") && c.repo === repo.fullName);
    if (!run) throw notFound();
    res.json({ id: run.id, head_sha: run.headSha, name: run.name, status: run.status, conclusion: run.conclusion, output: run.output, external_id: run.externalId });
  });
  return r;
}
