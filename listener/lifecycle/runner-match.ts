// Whether a workflow_job delivery may move one of our runners. GitHub names runners only within a
// scope (a repository, or an org's runners), so a runner_name alone proves nothing: any repository
// the App is installed on can register a runner of the same name and send a validly signed
// `completed` naming it. A delivery moves our runner only when it comes from where our runner can
// take jobs and, when both ids are known, names the registration we minted.
import { parseScopeKey } from "../adapters/github/github.js";
import { repoAllowed, type Allowlist } from "./allowlist.js";
import { UNCLAIMED, type RunnerRow } from "../store/store.js";

export interface RunnerEvent {
  /** repository.full_name of the delivery. */
  repo: string;
  /** repository.owner.login of the delivery. */
  owner: string;
  /** workflow_job.runner_id (null or absent before a runner took the job). */
  runnerId: number | null | undefined;
}

/** Why the delivery may not move this runner, or null when it may. */
export function whyNotThisRunner(runner: Pick<RunnerRow, "scope" | "githubRunnerId">, ev: RunnerEvent, allow: Allowlist): string | null {
  // A warm-pool member no job has claimed is registered nowhere: no job can run on it.
  if (runner.scope === UNCLAIMED) return "the runner is not registered anywhere yet";
  const scope = parseScopeKey(runner.scope);
  const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();
  // Repo mode: only jobs of that repository. Org mode: GitHub gives the runner to a job of ANY
  // repository of the org whose labels match, so every repository of the org is legitimate.
  const inScope = scope.kind === "repo" ? same(ev.repo, `${scope.owner}/${scope.repo}`) : same(ev.owner, scope.org);
  if (!inScope) return "the delivery's repository is outside the runner's scope";
  if (!repoAllowed(ev.repo, allow)) return "the delivery's repository is not in the allowlist";
  if (runner.githubRunnerId !== null && typeof ev.runnerId === "number" && ev.runnerId !== runner.githubRunnerId) {
    return "the delivery names another registration (runner_id) of the same name";
  }
  return null;
}
