// Self-hosted runner routes (installation token), repo and org variants.
import { Router, type Request, type Response } from "express";
import type { SimContext } from "../context.js";
import { GitHubError, notFound, validationFailed } from "../errors.js";
import { REPO_RUNNER_GROUP, type RunnerGroup } from "../world.js";
import { body, intParam, orgScope, pageOf, queryString, runnerScope } from "./common.js";

const SCOPES = ["/repos/:owner/:repo/actions/runners", "/orgs/:org/actions/runners"];

export function runnerRoutes(ctx: SimContext): Router {
  const r = Router();

  const generate = (req: Request, res: Response) => {
    const scope = runnerScope(ctx, req, res);
    const b = body(req);
    const name = b.name;
    if (typeof name !== "string" || name.trim() === "") throw validationFailed("name", "name is required");
    const groupId = b.runner_group_id;
    if (typeof groupId !== "number" || !Number.isInteger(groupId)) throw validationFailed("runner_group_id", "runner_group_id is required");
    const groups: RunnerGroup[] = scope.kind === "repo" ? [REPO_RUNNER_GROUP] : ctx.world.runnerGroups(scope.org);
    const group = groups.find((g) => g.id === groupId);
    if (!group) throw validationFailed("runner_group_id", `Runner group ${groupId} does not exist`);
    const labels = b.labels;
    if (!Array.isArray(labels) || labels.length < 1 || labels.length > 100) {
      throw validationFailed("labels", "labels must contain between 1 and 100 items");
    }
    if (!labels.every((l) => typeof l === "string" && l.trim() !== "" && l.length <= 256)) {
      throw validationFailed("labels", "labels must be non-empty strings");
    }
    const workFolder = typeof b.work_folder === "string" && b.work_folder ? b.work_folder : "_work";
    if (ctx.runners.listLive(scope).some((x) => x.name.toLowerCase() === name.toLowerCase())) {
      throw new GitHubError(409, `Already exists - A runner with the name ${name} already exists.`, {
        documentation_url: "https://docs.github.com/rest/actions/self-hosted-runners#create-configuration-for-a-just-in-time-runner-for-a-repository",
      });
    }
    const { runner, encodedJitConfig } = ctx.runners.mint({ scope, name, group, labels: labels as string[], workFolder, serverUrl: ctx.url() });
    ctx.scheduler.scheduleExpiry(runner);
    ctx.log.info({ runnerId: runner.id, name, scope: runner.owner }, "JIT runner minted");
    res.status(201).json({ runner: ctx.shapes.newRunner(runner), encoded_jit_config: encodedJitConfig });
  };

  const list = (req: Request, res: Response) => {
    const scope = runnerScope(ctx, req, res);
    const name = queryString(req, "name");
    const all = ctx.runners.listLive(scope).filter((x) => name === undefined || x.name === name);
    res.json({ total_count: all.length, runners: pageOf(ctx, req, res, all).map((x) => ctx.shapes.runner(x)) });
  };

  const getOne = (req: Request, res: Response) => {
    const runner = ctx.runners.live(runnerScope(ctx, req, res), intParam(req, "id"));
    if (!runner) throw notFound();
    res.json(ctx.shapes.runner(runner));
  };

  const remove = (req: Request, res: Response) => {
    const runner = ctx.runners.live(runnerScope(ctx, req, res), intParam(req, "id"));
    if (!runner) throw notFound();
    ctx.scheduler.deleteRunner(runner);
    res.status(204).end();
  };

  for (const base of SCOPES) {
    r.post(`${base}/generate-jitconfig`, generate);
    r.get(base, list);
    r.get(`${base}/:id`, getOne);
    r.delete(`${base}/:id`, remove);
  }

  r.get("/orgs/:org/actions/runner-groups", (req, res) => {
    const org = orgScope(ctx, req, res);
    const groups = ctx.world.runnerGroups(org);
    res.json({ total_count: groups.length, runner_groups: pageOf(ctx, req, res, groups).map((g) => ctx.shapes.runnerGroup(g, org.login)) });
  });

  return r;
}
