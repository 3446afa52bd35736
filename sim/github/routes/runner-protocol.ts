// The runner side of GitHub, as seen by the simulated guest (the PVE simulator's container):
// connect with the JIT config, long-poll the runner's state, disconnect.
import { Router, type Request } from "express";
import type { SimContext } from "../context.js";
import { GitHubError } from "../errors.js";
import type { RunnerSessionState, SimRunner } from "../runners.js";
import { body, intParam, queryString } from "./common.js";

const MAX_WAIT_MS = 30_000;
const TERMINAL: RunnerSessionState[] = ["done", "gone"];

export function runnerProtocolRoutes(ctx: SimContext): Router {
  const r = Router();

  /** `Authorization: RemoteAuth <credentials.data.token>` must match the runner's secret. */
  const authedRunner = (req: Request): SimRunner => {
    const id = intParam(req, "id");
    const m = /^RemoteAuth\s+(\S+)$/i.exec(req.get("authorization") ?? "");
    const runner = ctx.runners.get(id);
    if (!m || !runner || !ctx.runners.secretMatches(id, m[1])) throw new GitHubError(401, "Bad credentials");
    return runner;
  };

  r.post("/connect", (req, res) => {
    const jitconfig = body(req).jitconfig;
    if (typeof jitconfig !== "string") throw new GitHubError(400, "jitconfig is required");
    const runner = ctx.scheduler.connect(jitconfig);
    res.json({ runner_id: runner.id, name: runner.name });
  });

  r.get("/:id/state", async (req, res) => {
    const runner = authedRunner(req);
    const answer = () => {
      const state = ctx.runners.sessionState(runner);
      return { state, job_id: runner.jobId };
    };
    const wait = Math.min(MAX_WAIT_MS, Math.max(0, Number(queryString(req, "wait") ?? 0) || 0));
    // `known` is the state the guest last saw; without it, any change from now counts.
    const known = queryString(req, "known") ?? ctx.runners.sessionState(runner);
    const deadline = Date.now() + wait;
    let closed = false;
    res.on("close", () => (closed = true));
    while (!closed && Date.now() < deadline) {
      const now = ctx.runners.sessionState(runner);
      if (now !== known || TERMINAL.includes(now)) break;
      const change = ctx.runners.waitForChange(runner.id);
      const timer = setTimeout(change.cancel, deadline - Date.now());
      const onClose = () => change.cancel();
      res.once("close", onClose);
      await change.promise;
      clearTimeout(timer);
      res.off("close", onClose);
      if (ctx.stopped()) break;
    }
    if (!closed) res.json(answer());
  });

  r.post("/:id/disconnect", (req, res) => {
    const runner = authedRunner(req);
    ctx.scheduler.disconnect(runner);
    res.json({ runner_id: runner.id, state: ctx.runners.sessionState(runner) });
  });

  return r;
}
