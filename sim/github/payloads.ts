// GitHub-shaped JSON for our state: REST objects and the workflow_job webhook payload.
// The webhook payload starts from @octokit/webhooks-examples so every real field exists.
import { createRequire } from "node:module";
import type { SimRunner } from "./runners.js";
import type { JobAction, SimJob, SimRun } from "./scheduler.js";
import type { Account, Installation, Repo, RunnerGroup } from "./world.js";

type Json = Record<string, unknown>;

interface WebhookExampleIndex {
  name: string;
  examples: Json[];
}

const require = createRequire(import.meta.url);
let template: Json | undefined;

/** The `completed` example: it carries repository, organization and sender in full. */
function workflowJobTemplate(): Json {
  if (!template) {
    const index = require("@octokit/webhooks-examples/api.github.com/index.json") as WebhookExampleIndex[];
    const entry = index.find((e) => e.name === "workflow_job");
    const example = entry?.examples.find((e) => e.action === "completed" && e.organization);
    if (!example) throw new Error("@octokit/webhooks-examples has no workflow_job completed example");
    template = example;
  }
  return structuredClone(template);
}

const nodeId = (kind: string, id: number) => Buffer.from(`0${kind.length}:${kind}${id}`).toString("base64").replace(/=+$/, "");

export class Shapes {
  constructor(private readonly baseUrl: () => string) {}

  private get api(): string {
    return this.baseUrl();
  }

  account(a: Account): Json {
    const api = this.api;
    return {
      login: a.login,
      id: a.id,
      node_id: nodeId(a.type, a.id),
      avatar_url: `${api}/_sim/avatars/${a.id}`,
      gravatar_id: "",
      url: `${api}/users/${a.login}`,
      html_url: `${api}/${a.login}`,
      type: a.type,
      site_admin: false,
    };
  }

  repository(r: Repo, base: Json = {}): Json {
    const api = this.api;
    return {
      ...base,
      id: r.id,
      node_id: nodeId("Repository", r.id),
      name: r.name,
      full_name: r.fullName,
      private: r.private,
      visibility: r.private ? "private" : "public",
      owner: { ...((base.owner as Json) ?? {}), ...this.account(r.owner) },
      html_url: `${api}/${r.fullName}`,
      url: `${api}/repos/${r.fullName}`,
      default_branch: "main",
    };
  }

  organization(a: Account, base: Json = {}): Json {
    const api = this.api;
    return {
      ...base,
      login: a.login,
      id: a.id,
      node_id: nodeId("Organization", a.id),
      url: `${api}/orgs/${a.login}`,
      repos_url: `${api}/orgs/${a.login}/repos`,
      avatar_url: `${api}/_sim/avatars/${a.id}`,
      description: "",
    };
  }

  installation(i: Installation, appId: number, permissions: Record<string, string>): Json {
    const api = this.api;
    return {
      id: i.id,
      account: this.account(i.account),
      repository_selection: "selected",
      access_tokens_url: `${api}/app/installations/${i.id}/access_tokens`,
      repositories_url: `${api}/installation/repositories`,
      html_url: `${api}/organizations/${i.account.login}/settings/installations/${i.id}`,
      app_id: appId,
      app_slug: "pve-runners-sim",
      target_id: i.account.id,
      target_type: i.account.type,
      permissions,
      events: ["workflow_job"],
      created_at: i.createdAt,
      updated_at: i.createdAt,
      single_file_name: null,
      has_multiple_single_files: false,
      single_file_paths: [],
      suspended_by: null,
      suspended_at: null,
    };
  }

  runner(r: SimRunner): Json {
    return {
      id: r.id,
      name: r.name,
      os: r.os,
      status: r.status,
      busy: r.busy,
      ephemeral: true,
      runner_group_id: r.groupId,
      labels: r.labels.map((l) => ({ ...l })),
    };
  }

  /** The runner object in a generate-jitconfig answer: not yet started. */
  newRunner(r: SimRunner): Json {
    return { id: r.id, name: r.name, os: "unknown", status: "offline", busy: false, ephemeral: true, runner_group_id: r.groupId, labels: r.labels.map((l) => ({ ...l })) };
  }

  runnerGroup(g: RunnerGroup, org: string): Json {
    return {
      id: g.id,
      name: g.name,
      visibility: "all",
      default: g.default,
      runners_url: `${this.api}/orgs/${org}/actions/runner-groups/${g.id}/runners`,
      inherited: false,
      allows_public_repositories: false,
      restricted_to_workflows: false,
      selected_workflows: [],
      workflow_restrictions_read_only: false,
    };
  }

  job(j: SimJob): Json {
    const api = this.api;
    return {
      id: j.id,
      run_id: j.runId,
      run_url: `${api}/repos/${j.repo}/actions/runs/${j.runId}`,
      run_attempt: j.runAttempt,
      node_id: nodeId("CheckRun", j.id),
      head_sha: j.headSha,
      head_branch: j.headBranch,
      url: `${api}/repos/${j.repo}/actions/jobs/${j.id}`,
      html_url: `${api}/${j.repo}/actions/runs/${j.runId}/job/${j.id}`,
      status: j.status,
      conclusion: j.conclusion,
      created_at: j.createdAt,
      started_at: j.startedAt,
      completed_at: j.completedAt,
      name: j.name,
      steps: steps(j),
      check_run_url: `${api}/repos/${j.repo}/check-runs/${j.id}`,
      labels: [...j.labels],
      runner_id: j.runnerId,
      runner_name: j.runnerName,
      runner_group_id: j.runnerGroupId,
      runner_group_name: j.runnerGroupName,
      workflow_name: j.workflowName,
    };
  }

  run(run: SimRun, jobs: SimJob[], repo: Repo): Json {
    const api = this.api;
    const { status, conclusion } = runStatus(jobs);
    return {
      id: run.id,
      name: run.workflowName,
      node_id: nodeId("WorkflowRun", run.id),
      head_branch: run.headBranch,
      head_sha: run.headSha,
      path: ".github/workflows/ci.yml",
      display_title: run.workflowName,
      run_number: run.runNumber,
      event: "push",
      status,
      conclusion,
      workflow_id: 1000 + repo.id,
      url: `${api}/repos/${run.repo}/actions/runs/${run.id}`,
      html_url: `${api}/${run.repo}/actions/runs/${run.id}`,
      jobs_url: `${api}/repos/${run.repo}/actions/runs/${run.id}/jobs`,
      created_at: run.createdAt,
      updated_at: run.updatedAt,
      run_attempt: 1,
      run_started_at: run.createdAt,
      repository: this.repository(repo),
    };
  }

  /** A complete workflow_job webhook body for `action`, from the job as it is now. */
  workflowJobEvent(action: JobAction, j: SimJob, repo: Repo, installationId: number): Json {
    const t = workflowJobTemplate();
    const payload: Json = {
      action,
      workflow_job: { ...(t.workflow_job as Json), ...this.job(j) },
      repository: this.repository(repo, t.repository as Json),
      sender: { ...(t.sender as Json), ...this.account({ login: "octocat", id: 583231, type: "User", installationId: 0 }) },
      installation: { id: installationId, node_id: nodeId("IntegrationInstallation", installationId) },
    };
    if (repo.owner.type === "Organization") payload.organization = this.organization(repo.owner, t.organization as Json);
    return payload;
  }
}

function runStatus(jobs: SimJob[]): { status: string; conclusion: string | null } {
  if (jobs.some((j) => j.status === "in_progress")) return { status: "in_progress", conclusion: null };
  if (jobs.some((j) => j.status === "queued")) return { status: "queued", conclusion: null };
  if (jobs.some((j) => j.status === "waiting")) return { status: "waiting", conclusion: null };
  const failed = jobs.find((j) => j.conclusion !== "success");
  return { status: "completed", conclusion: failed?.conclusion ?? "success" };
}

function steps(j: SimJob): Json[] {
  if (j.status === "queued" || j.status === "waiting") return [];
  const done = j.status === "completed";
  const step = (number: number, name: string, running: boolean): Json => ({
    name,
    status: running ? "in_progress" : done ? "completed" : "queued",
    conclusion: done ? (number === 1 ? "success" : j.conclusion) : null,
    number,
    started_at: running || done ? j.startedAt : null,
    completed_at: done ? j.completedAt : null,
  });
  return [step(1, "Set up job", !done), step(2, "Run tests", false)];
}
