// Workflow runs and jobs (installation token).
import { Router } from "express";
import type { SimContext } from "../context.js";
import { notFound } from "../errors.js";
import type { SimJob } from "../scheduler.js";
import { intParam, pageOf, queryString, repoScope } from "./common.js";

export function actionsRoutes(ctx: SimContext): Router {
  const r = Router();
  const jobsOf = (runJobIds: number[]): SimJob[] => runJobIds.map((id) => ctx.scheduler.job(id)).filter((j): j is SimJob => !!j);

  r.get("/repos/:owner/:repo/actions/jobs/:job_id", (req, res) => {
    const repo = repoScope(ctx, req, res);
    const job = ctx.scheduler.job(intParam(req, "job_id"));
    if (!job || job.repo !== repo.fullName) throw notFound();
    res.json(ctx.shapes.job(job));
  });

  r.get("/repos/:owner/:repo/actions/runs", (req, res) => {
    const repo = repoScope(ctx, req, res);
    const status = queryString(req, "status");
    const runs = ctx.scheduler
      .runs()
      .filter((run) => run.repo === repo.fullName)
      .sort((a, b) => b.id - a.id)
      .map((run) => ctx.shapes.run(run, jobsOf(run.jobIds), repo))
      .filter((run) => !status || run.status === status || run.conclusion === status);
    res.json({ total_count: runs.length, workflow_runs: pageOf(ctx, req, res, runs) });
  });

  r.get("/repos/:owner/:repo/actions/runs/:run_id", (req, res) => {
    const repo = repoScope(ctx, req, res);
    const run = ctx.scheduler.run(intParam(req, "run_id"));
    if (!run || run.repo !== repo.fullName) throw notFound();
    res.json(ctx.shapes.run(run, jobsOf(run.jobIds), repo));
  });

  r.get("/repos/:owner/:repo/actions/runs/:run_id/jobs", (req, res) => {
    const repo = repoScope(ctx, req, res);
    const run = ctx.scheduler.run(intParam(req, "run_id"));
    if (!run || run.repo !== repo.fullName) throw notFound();
    const jobs = jobsOf(run.jobIds);
    res.json({ total_count: jobs.length, jobs: pageOf(ctx, req, res, jobs).map((j) => ctx.shapes.job(j)) });
  });

  return r;
}
