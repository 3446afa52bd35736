// The GitHub adapter: the only code that talks to GitHub's REST API.
// GitHub App auth (JWT → installation tokens, cached by @octokit/auth-app), retries with backoff,
// throttling that honours rate limits, and the pinned API version header on every call.
import { Octokit } from "@octokit/rest";
import { createAppAuth } from "@octokit/auth-app";
import { retry } from "@octokit/plugin-retry";
import { throttling } from "@octokit/plugin-throttling";
import type { Logger } from "pino";
import { CONTROLLER_MARKER_PREFIX, hasLabel } from "../../lifecycle/ownership.js";

const GH = Octokit.plugin(retry, throttling);
type GHClient = InstanceType<typeof GH>;

export interface GitHubAdapterOptions {
  appId: number;
  privateKey: string;
  baseUrl: string;
  apiVersion: string;
  runnerGroupId: number;
  logger: Logger;
  /** Tests turn throttling off: it spaces writes 1 s apart. */
  throttle?: boolean;
  /** Retries of 5xx/network errors per call (plugin-retry). */
  retries?: number;
}

/** One attempt at a webhook delivery, as the App's deliveries API lists it. */
export interface DeliveryAttempt {
  id: number;
  guid: string;
  deliveredAt: number;
  redelivery: boolean;
  statusCode: number;
  event: string;
  action: string | null;
}

/** A job GitHub holds as queued, as the jobs API describes it. */
export interface QueuedJob {
  id: number;
  runId: number;
  runAttempt: number;
  labels: string[];
  status: string;
}

/** Where a runner is registered: a repository, or an organisation. */
export type Scope = { kind: "repo"; owner: string; repo: string } | { kind: "org"; org: string };

export function scopeKey(s: Scope): string {
  return s.kind === "repo" ? `repo:${s.owner}/${s.repo}` : `org:${s.org}`;
}
export function parseScopeKey(key: string): Scope {
  const [kind, rest] = key.split(":", 2);
  if (kind === "repo") {
    const [owner, repo] = rest.split("/", 2);
    return { kind, owner, repo };
  }
  if (kind === "org") return { kind, org: rest };
  throw new Error(`bad scope key ${key}`);
}

export interface RunnerInfo {
  id: number;
  name: string;
  status: "online" | "offline";
  busy: boolean;
  labels: string[];
}

export type JobState = "queued" | "in_progress" | "completed" | "waiting" | "requested" | "pending";

function status(err: unknown): number | undefined {
  return typeof err === "object" && err !== null && "status" in err ? Number((err as { status: unknown }).status) : undefined;
}

/** A release as GET /repos/{owner}/{repo}/releases[/latest] returns it (the fields we read). */
export interface ReleaseJson {
  tag_name?: unknown;
  published_at?: unknown;
  draft?: unknown;
  prerelease?: unknown;
}

export class GitHubAdapter {
  private readonly clients = new Map<number, GHClient>();
  private anonymousClient?: Octokit;
  private readonly installationIds = new Map<string, number>();
  private readonly app: GHClient;
  /** x-ratelimit-remaining of the latest answer (metrics). */
  rateLimitRemaining: number | null = null;

  constructor(private readonly opts: GitHubAdapterOptions) {
    this.app = this.client({ appId: opts.appId, privateKey: opts.privateKey });
  }

  private client(auth: { appId: number; privateKey: string; installationId?: number }): GHClient {
    const log = this.opts.logger;
    const gh = new GH({
      baseUrl: this.opts.baseUrl,
      authStrategy: createAppAuth,
      auth,
      userAgent: "pve-runners",
      // Octokit's own logger: warnings only, never request bodies (a JIT config travels in one).
      // Failed requests are logged by Octokit as errors; the adapter decides what a status means
      // (404 on delete is "already gone"), so they are debug here and the caller logs the outcome.
      log: { debug: () => {}, info: () => {}, warn: (m: string) => log.warn({ octokit: true }, m), error: (m: string) => log.debug({ octokit: true }, m) },
      retry: { doNotRetry: [400, 401, 403, 404, 409, 410, 422, 451], retries: this.opts.retries ?? 3 },
      throttle: {
        enabled: this.opts.throttle ?? true,
        onRateLimit: (retryAfter: number, o: { method: string; url: string }, _k: unknown, n: number) => {
          log.warn({ retryAfter, method: o.method, url: o.url, attempt: n }, "GitHub rate limit hit");
          return n < 2;
        },
        onSecondaryRateLimit: (retryAfter: number, o: { method: string; url: string }, _k: unknown, n: number) => {
          log.warn({ retryAfter, method: o.method, url: o.url, attempt: n }, "GitHub secondary rate limit hit");
          return n < 2;
        },
      },
    });
    // A `headers` constructor option is silently ignored by Octokit: set the version on every request.
    gh.hook.before("request", (o) => {
      o.headers["x-github-api-version"] = this.opts.apiVersion;
    });
    gh.hook.after("request", (r) => {
      const v = Number(r.headers["x-ratelimit-remaining"]);
      if (Number.isFinite(v)) this.rateLimitRemaining = v;
    });
    return gh;
  }

  /** GET /app with the App's JWT: answers only if the private key is this App's (`pve-runners check`). */
  async appIdentity(): Promise<{ id: number; slug: string; name: string }> {
    const r = await this.app.rest.apps.getAuthenticated();
    const d = r.data as { id: number; slug?: string; name: string };
    return { id: d.id, slug: d.slug ?? "", name: d.name };
  }

  /** The installation covering a scope and the permissions it grants (`pve-runners check`). */
  async installationGrant(scope: Scope): Promise<{ id: number; account: string; permissions: Record<string, string> }> {
    const r =
      scope.kind === "repo"
        ? await this.app.rest.apps.getRepoInstallation({ owner: scope.owner, repo: scope.repo })
        : await this.app.rest.apps.getOrgInstallation({ org: scope.org });
    const account = (r.data.account as { login?: string } | null)?.login ?? "";
    return { id: r.data.id, account, permissions: { ...(r.data.permissions as Record<string, string>) } };
  }

  /** Every installation of the App with its permissions (`pve-runners check` with allow.any). */
  async installationGrants(): Promise<Array<{ id: number; account: string; permissions: Record<string, string> }>> {
    const all = await this.app.paginate(this.app.rest.apps.listInstallations, { per_page: 100 });
    return all.map((i) => ({ id: i.id, account: (i.account as { login?: string } | null)?.login ?? "", permissions: { ...(i.permissions as Record<string, string>) } }));
  }

  /**
   * actions/runner's releases are public: asked without credentials (no App token is spent or sent;
   * 60 requests an hour per address is plenty for a daily check), without retries (the caller asks
   * again on its next round) and with a timeout, so a hanging GitHub cannot stall the check.
   */
  private anonymous(): Octokit {
    if (!this.anonymousClient) {
      const gh = new Octokit({ baseUrl: this.opts.baseUrl, userAgent: "pve-runners", log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} } });
      gh.hook.before("request", (o) => {
        o.headers["x-github-api-version"] = this.opts.apiVersion;
      });
      this.anonymousClient = gh;
    }
    return this.anonymousClient;
  }

  /** GET /repos/actions/runner/releases/latest: the newest full release (no draft, no prerelease). */
  async latestRunnerRelease(timeoutMs = 30_000): Promise<ReleaseJson> {
    const r = await this.anonymous().rest.repos.getLatestRelease({ owner: "actions", repo: "runner", request: { signal: AbortSignal.timeout(timeoutMs) } });
    return r.data;
  }

  /** One page (newest first) of GET /repos/actions/runner/releases. */
  async runnerReleases(page: number, timeoutMs = 30_000): Promise<ReleaseJson[]> {
    const r = await this.anonymous().rest.repos.listReleases({ owner: "actions", repo: "runner", per_page: 100, page, request: { signal: AbortSignal.timeout(timeoutMs) } });
    return r.data;
  }

  /** The installation that covers a scope; payloads carry it, otherwise it is looked up once and cached. */
  async installationFor(scope: Scope, hint?: number | null): Promise<number> {
    const key = scopeKey(scope);
    if (hint) {
      this.installationIds.set(key, hint);
      return hint;
    }
    const cached = this.installationIds.get(key);
    if (cached) return cached;
    const r =
      scope.kind === "repo"
        ? await this.app.rest.apps.getRepoInstallation({ owner: scope.owner, repo: scope.repo })
        : await this.app.rest.apps.getOrgInstallation({ org: scope.org });
    this.installationIds.set(key, r.data.id);
    return r.data.id;
  }

  private async forScope(scope: Scope, installationHint?: number | null): Promise<GHClient> {
    const id = await this.installationFor(scope, installationHint);
    let c = this.clients.get(id);
    if (!c) {
      c = this.client({ appId: this.opts.appId, privateKey: this.opts.privateKey, installationId: id });
      this.clients.set(id, c);
    }
    return c;
  }

  /**
   * Mints a single-use JIT config for `name`. A 409 means the name exists: a retry after a 5xx that
   * GitHub had already honoured, or a restart mid-mint. An idle, unused runner of ours by that name
   * is deleted and the mint retried once; a busy one is an error. Ours means it carries the
   * controller label we mint with (listener/lifecycle/ownership.ts): a registration that merely has the name
   * is someone else's and is never deleted.
   */
  async generateJitConfig(scope: Scope, name: string, labels: string[], installationHint?: number | null): Promise<{ runnerId: number; encodedJitConfig: string }> {
    const gh = await this.forScope(scope, installationHint);
    const body = { name, labels, runner_group_id: this.opts.runnerGroupId, work_folder: "_work" };
    const mint = async () => {
      const r =
        scope.kind === "repo"
          ? await gh.rest.actions.generateRunnerJitconfigForRepo({ owner: scope.owner, repo: scope.repo, ...body })
          : await gh.rest.actions.generateRunnerJitconfigForOrg({ org: scope.org, ...body });
      return { runnerId: r.data.runner.id, encodedJitConfig: r.data.encoded_jit_config };
    };
    try {
      return await mint();
    } catch (err) {
      if (status(err) !== 409) throw err;
      const existing = await this.findRunnerByName(scope, name, installationHint);
      const marker = labels.find((l) => l.startsWith(CONTROLLER_MARKER_PREFIX));
      if (existing && !(marker && hasLabel(existing.labels, marker)))
        throw new Error(`runner name ${name} is taken by a registration that is not ours (id ${existing.id}): left alone`, { cause: err });
      if (existing) {
        const outcome = await this.deleteRunner(scope, existing.id, installationHint);
        if (outcome === "busy") throw new Error(`runner ${name} already exists and is running a job`, { cause: err });
      }
      this.opts.logger.info({ runner: name }, "JIT name already registered: removed the stale registration, minting again");
      return await mint();
    }
  }

  /** The job's live status; undefined when GitHub does not know it (404). */
  async jobStatus(repoFullName: string, jobId: number, installationHint?: number | null): Promise<JobState | undefined> {
    const [owner, repo] = repoFullName.split("/", 2);
    const gh = await this.forScope({ kind: "repo", owner, repo }, installationHint);
    try {
      const r = await gh.rest.actions.getJobForWorkflowRun({ owner, repo, job_id: jobId });
      return r.data.status as JobState;
    } catch (err) {
      if (status(err) === 404) return undefined;
      throw err;
    }
  }

  async getRunner(scope: Scope, id: number, installationHint?: number | null): Promise<RunnerInfo | undefined> {
    const gh = await this.forScope(scope, installationHint);
    try {
      const r =
        scope.kind === "repo"
          ? await gh.rest.actions.getSelfHostedRunnerForRepo({ owner: scope.owner, repo: scope.repo, runner_id: id })
          : await gh.rest.actions.getSelfHostedRunnerForOrg({ org: scope.org, runner_id: id });
      return toRunnerInfo(r.data);
    } catch (err) {
      if (status(err) === 404) return undefined;
      throw err;
    }
  }

  async findRunnerByName(scope: Scope, name: string, installationHint?: number | null): Promise<RunnerInfo | undefined> {
    const all = await this.listRunners(scope, installationHint, name);
    return all.find((r) => r.name === name);
  }

  async listRunners(scope: Scope, installationHint?: number | null, name?: string): Promise<RunnerInfo[]> {
    const gh = await this.forScope(scope, installationHint);
    const runners =
      scope.kind === "repo"
        ? await gh.paginate(gh.rest.actions.listSelfHostedRunnersForRepo, { owner: scope.owner, repo: scope.repo, per_page: 100, ...(name ? { name } : {}) })
        : await gh.paginate(gh.rest.actions.listSelfHostedRunnersForOrg, { org: scope.org, per_page: 100, ...(name ? { name } : {}) });
    return runners.map(toRunnerInfo);
  }

  /** Delivery attempts of the App's webhook since `sinceMs`, newest first (GitHub keeps 3 days). */
  async deliveriesSince(sinceMs: number): Promise<DeliveryAttempt[]> {
    const out: DeliveryAttempt[] = [];
    for await (const page of this.app.paginate.iterator(this.app.rest.apps.listWebhookDeliveries, { per_page: 100 })) {
      for (const d of page.data) {
        const at = Date.parse(d.delivered_at);
        if (at < sinceMs) return out;
        out.push({ id: d.id, guid: d.guid, deliveredAt: at, redelivery: d.redelivery, statusCode: d.status_code, event: d.event, action: d.action ?? null });
      }
    }
    return out;
  }

  /** Asks GitHub to send a delivery again: same GUID, same payload. */
  async redeliver(deliveryId: number): Promise<void> {
    await this.app.rest.apps.redeliverWebhookDelivery({ delivery_id: deliveryId });
  }

  /** Jobs GitHub holds as queued in a repository (bounded: the newest 100 queued runs). */
  async queuedJobs(repoFullName: string, installationHint?: number | null): Promise<QueuedJob[]> {
    const [owner, repo] = repoFullName.split("/", 2);
    const gh = await this.forScope({ kind: "repo", owner, repo }, installationHint);
    const runs = await gh.rest.actions.listWorkflowRunsForRepo({ owner, repo, status: "queued", per_page: 100 });
    const out: QueuedJob[] = [];
    for (const run of runs.data.workflow_runs) {
      const jobs = await gh.paginate(gh.rest.actions.listJobsForWorkflowRun, { owner, repo, run_id: run.id, filter: "latest", per_page: 100 });
      for (const j of jobs) if (j.status === "queued") out.push({ id: j.id, runId: j.run_id, runAttempt: j.run_attempt ?? 1, labels: j.labels, status: j.status });
    }
    return out;
  }

  /**
   * Tells the person who pushed that infrastructure failed their job: a completed check run on the
   * commit (App permission: Checks write). Returns its id.
   */
  async reportInfraFailure(repoFullName: string, headSha: string, report: { jobId: number; title: string; summary: string }, installationHint?: number | null): Promise<number> {
    const [owner, repo] = repoFullName.split("/", 2);
    const gh = await this.forScope({ kind: "repo", owner, repo }, installationHint);
    const r = await gh.rest.checks.create({
      owner,
      repo,
      name: "pve-runners",
      head_sha: headSha,
      status: "completed",
      conclusion: "failure",
      external_id: `job-${report.jobId}`,
      output: { title: report.title, summary: report.summary },
    });
    return r.data.id;
  }

  /** Deletes a registration. 404 counts as done; 422 means it is running a job right now. */
  async deleteRunner(scope: Scope, id: number, installationHint?: number | null): Promise<"deleted" | "gone" | "busy"> {
    const gh = await this.forScope(scope, installationHint);
    try {
      if (scope.kind === "repo") await gh.rest.actions.deleteSelfHostedRunnerFromRepo({ owner: scope.owner, repo: scope.repo, runner_id: id });
      else await gh.rest.actions.deleteSelfHostedRunnerFromOrg({ org: scope.org, runner_id: id });
      return "deleted";
    } catch (err) {
      if (status(err) === 404) return "gone";
      if (status(err) === 422) return "busy";
      throw err;
    }
  }
}

function toRunnerInfo(r: { id: number; name: string; status: string; busy: boolean; labels: Array<{ name: string }> }): RunnerInfo {
  return { id: r.id, name: r.name, status: r.status === "online" ? "online" : "offline", busy: r.busy, labels: r.labels.map((l) => l.name) };
}
