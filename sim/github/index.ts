// The stateful fake GitHub: REST API (App JWT + installation tokens), GitHub's job
// scheduler for self-hosted JIT runners, and workflow_job webhook delivery.
import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import express, { type NextFunction, type Request, type Response } from "express";
import { pino, type Logger } from "pino";
import { armAfterEffectFaults } from "./after-faults.js";
import { Authenticator, generateAppKey } from "./auth.js";
import { SimClock } from "./clock.js";
import type { MaybeCaller, SimContext } from "./context.js";
import { GitHubError, notFound } from "./errors.js";
import { FaultInjector, type FaultsBody } from "./faults.js";
import { Shapes } from "./payloads.js";
import { RateLimiter, primaryLimitExceeded } from "./ratelimit.js";
import { createRng } from "./rng.js";
import { actionsRoutes } from "./routes/actions.js";
import { releaseRoutes } from "./routes/releases.js";
import { RunnerReleases, type SimReleaseSpec } from "./releases.js";
import { checkRoutes, type SimCheckRun } from "./routes/checks.js";
import { appRoutes, deliverySummary } from "./routes/app.js";
import { controlRoutes } from "./routes/control.js";
import { runnerProtocolRoutes } from "./routes/runner-protocol.js";
import { runnerRoutes } from "./routes/runners.js";
import { webhookControlRoutes } from "./routes/webhook-control.js";
import { RunnerRegistry, type SimRunner } from "./runners.js";
import { Scheduler, type CreateJobInput, type SimJob, type SimRun } from "./scheduler.js";
import { WebhookDispatcher, type HeldDelivery, type HoldMatch, type HoldRule, type SimDelivery } from "./webhooks.js";
import { SimWorld, type WorldInstallationSpec } from "./world.js";
import { listen } from "../../listener/http/http-listen.js";

export type { SimJob, SimRun, SimRunner, SimDelivery, CreateJobInput, FaultsBody, SimCheckRun, HoldMatch, HoldRule, HeldDelivery, SimReleaseSpec };
export { encodeJitConfig, decodeJitConfig } from "./jit.js";

export interface GitHubSimOptions {
  /** Where workflow_job webhooks are POSTed (can be set later with setWebhook). */
  webhookUrl?: string;
  /** HMAC secret for X-Hub-Signature-256. */
  webhookSecret?: string;
  /** Default 1001. */
  appId?: number;
  /** If absent, an RSA 2048 key pair is generated at construction. */
  appPrivateKeyPem?: string;
  /** Multiplies simulated durations (job run time, JIT expiry, webhook delay/deadline, retry-after). Default 1. */
  timeScale?: number;
  /** An unused JIT runner is removed after this (default 5 min, scaled). */
  jitExpiryMs?: number;
  /** Default job run time when createJob gives none (default 20 s, scaled). */
  defaultJobMs?: number;
  /** How long GitHub takes to fail the job of a busy runner that vanished (default 5 s, scaled). */
  lostRunnerMs?: number;
  /** Primary rate limit per token per hour (default 5000). */
  rateLimit?: number;
  seed?: number;
  logger?: Logger;
  world?: { installations?: WorldInstallationSpec[] };
}

export class GitHubSim {
  readonly appId: number;
  readonly appPrivateKeyPem: string;
  private readonly ctx: SimContext;
  private readonly clock: SimClock;
  private readonly log: Logger;
  private server?: Server;
  private baseUrl = "";
  private isStopped = false;
  private readonly checkRunStore: SimCheckRun[] = [];

  constructor(opts: GitHubSimOptions = {}) {
    this.appId = opts.appId ?? 1001;
    this.appPrivateKeyPem = opts.appPrivateKeyPem ?? generateAppKey();
    this.log = opts.logger ?? pino({ level: process.env.LOG_LEVEL ?? "silent" });
    this.clock = new SimClock(opts.timeScale ?? 1);
    const rng = createRng(opts.seed ?? 1);
    const world = new SimWorld(opts.world?.installations);
    const faults = new FaultInjector(rng, (s) => (s <= 0 ? 0 : Math.max(1, Math.ceil(s * this.clock.scale))));
    const webhooks = new WebhookDispatcher(this.appId, this.clock, faults, this.log.child({ part: "webhooks" }));
    webhooks.setTarget(opts.webhookUrl, opts.webhookSecret);
    const runners = new RunnerRegistry();
    const shapes = new Shapes(() => this.baseUrl);
    const scheduler = new Scheduler(
      world,
      runners,
      this.clock,
      { jitExpiryMs: opts.jitExpiryMs ?? 5 * 60_000, lostRunnerMs: opts.lostRunnerMs ?? 5_000, defaultJobMs: opts.defaultJobMs ?? 20_000 },
      (action, job, repo) =>
        webhooks.dispatch({
          event: "workflow_job",
          action,
          installationId: repo.installationId,
          repositoryId: repo.id,
          payload: shapes.workflowJobEvent(action, job, repo, repo.installationId),
        }),
      this.log.child({ part: "scheduler" }),
    );
    this.ctx = {
      appId: this.appId,
      world,
      auth: new Authenticator(this.appId, this.appPrivateKeyPem, world),
      limiter: new RateLimiter(opts.rateLimit ?? 5000),
      faults,
      runners,
      scheduler,
      webhooks,
      shapes,
      releases: new RunnerReleases(),
      clock: this.clock,
      log: this.log,
      url: () => this.baseUrl,
      stopped: () => this.isStopped,
    };
  }

  get url(): string {
    return this.baseUrl;
  }

  async start(port = 0, host = "127.0.0.1"): Promise<string> {
    if (this.server) throw new Error("GitHubSim already started");
    const { server, url } = await listen(this.buildApp(), port, host);
    this.server = server;
    this.baseUrl = url;
    this.log.info({ url: this.baseUrl }, "fake GitHub listening");
    return this.baseUrl;
  }

  async stop(): Promise<void> {
    this.isStopped = true;
    this.clock.stop();
    this.ctx.webhooks.stop();
    this.ctx.runners.wakeAll();
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    await this.ctx.webhooks.settle();
  }

  setWebhook(url: string, secret: string): void {
    this.ctx.webhooks.setTarget(url, secret);
  }

  /** Replaces actions/runner's releases (default: one, the version template/provision.sh pins, a day old). */
  setRunnerReleases(releases: readonly SimReleaseSpec[]): void {
    this.ctx.releases.set(releases);
  }

  setTimeScale(scale: number): void {
    this.clock.scale = scale;
  }

  async createJob(input: CreateJobInput): Promise<SimJob> {
    return structuredClone(this.ctx.scheduler.createJob(input));
  }

  cancelJob(jobId: number): SimJob {
    return structuredClone(this.ctx.scheduler.cancel(jobId));
  }

  approveJob(jobId: number): SimJob {
    return structuredClone(this.ctx.scheduler.approve(jobId));
  }

  setFaults(faults: FaultsBody): void {
    this.ctx.faults.apply(faults);
  }

  clearFaults(): void {
    this.ctx.faults.clear();
  }

  /** The fault switches in force (after-effect rules with their remaining count and how often they fired). */
  faults(): Record<string, unknown> {
    return this.ctx.faults.snapshot();
  }

  /** Expires the installation tokens issued so far (all, or one installation's). */
  expireTokens(installationId?: number): void {
    this.ctx.auth.expireTokens(installationId);
  }

  /** Check runs the App created (pve-runners reports infrastructure failures this way). */
  checkRuns(): SimCheckRun[] {
    return structuredClone(this.checkRunStore);
  }

  jobs(): SimJob[] {
    return structuredClone(this.ctx.scheduler.jobs());
  }

  runs(): SimRun[] {
    return structuredClone(this.ctx.scheduler.runs());
  }

  /** Every runner ever minted, removed ones included (see `removedAt`). */
  runners(): SimRunner[] {
    return structuredClone(this.ctx.runners.all());
  }

  deliveries(): SimDelivery[] {
    return structuredClone(this.ctx.webhooks.list());
  }

  /**
   * Holds back later first deliveries matching event/action/job id (all given fields) until
   * releaseDeliveries() names them; they skip the webhook faults. Returns the rule.
   */
  holdDeliveries(match: HoldMatch = {}): HoldRule {
    return this.ctx.webhooks.hold(match);
  }

  /** Removes one hold rule (or all); deliveries already held stay held. */
  unholdDeliveries(ruleId?: number): void {
    this.ctx.webhooks.unhold(ruleId);
  }

  heldDeliveries(): HeldDelivery[] {
    return this.ctx.webhooks.heldDeliveries();
  }

  /** Sends held deliveries in the given order (default all, as held), each answered before the next. */
  releaseDeliveries(heldIds?: number[]): Promise<SimDelivery[]> {
    return this.ctx.webhooks.release(heldIds).then((ds) => structuredClone(ds));
  }

  /**
   * Signs and delivers an arbitrary payload as `event` (with `guid`, or a new one) with every real
   * header; recorded like any delivery, so redelivery works. null only once the sim is stopping.
   */
  async sendWebhook(payload: Record<string, unknown>, opts: { event: string; guid?: string }): Promise<SimDelivery | null> {
    const d = await this.ctx.webhooks.send(payload, opts);
    return d && structuredClone(d);
  }

  /** Resolves when no webhook delivery is in flight or waiting (delayed/reordered; held ones do not count). */
  settle(): Promise<void> {
    return this.ctx.webhooks.settle();
  }

  state(): Record<string, unknown> {
    return {
      url: this.baseUrl,
      appId: this.appId,
      timeScale: this.clock.scale,
      jobs: this.jobs(),
      runs: this.runs(),
      runners: this.runners(),
      deliveries: this.ctx.webhooks.list().map((d) => ({ ...deliverySummary(d), duplicate: d.duplicate, dropped: d.dropped })),
      faults: this.ctx.faults.snapshot(),
      holds: this.ctx.webhooks.holds(),
      held: this.ctx.webhooks.heldDeliveries(),
    };
  }

  private buildApp(): express.Express {
    const ctx = this.ctx;
    const app = express();
    app.disable("x-powered-by");
    app.set("etag", false);
    app.use((_req, res, next) => {
      res.setHeader("x-github-request-id", randomBytes(8).toString("hex").toUpperCase().replace(/(.{4})(.{4})(.{4})(.{4})/, "$1:$2:$3:$4"));
      res.setHeader("x-github-api-version-selected", "2022-11-28");
      res.setHeader("x-github-media-type", "github.v3; format=json");
      next();
    });
    // GitHub accepts JSON bodies whatever the content type says.
    app.use(express.json({ limit: "1mb", type: () => true }));

    app.use("/_sim/runner", runnerProtocolRoutes(ctx));
    app.use("/_sim/webhooks", webhookControlRoutes(ctx));
    app.use(
      "/_sim",
      controlRoutes(ctx, {
        setWebhook: (url, secret) => this.setWebhook(url, secret),
        setTimeScale: (s) => this.setTimeScale(s),
        state: () => this.state(),
      }),
    );

    app.use(async (req: Request, res: Response, next: NextFunction) => {
      const header = req.get("authorization");
      let caller: MaybeCaller;
      try {
        caller = header ? await ctx.auth.authenticate(header) : { kind: "anonymous", rateKey: `ip:${req.ip}` };
      } catch (err) {
        // Failed logins still count against the address's anonymous budget.
        const rl = ctx.limiter.take(`ip:${req.ip}`, false);
        res.set(rl.headers);
        throw err;
      }
      res.locals.caller = caller;
      const rl = ctx.limiter.take(caller.rateKey, caller.kind !== "anonymous");
      res.set(rl.headers);
      if (rl.exceeded) {
        throw primaryLimitExceeded(caller.kind === "installation" ? `installation ID ${caller.installation.id}` : "this app");
      }
      const fault = ctx.faults.forRequest(req.path);
      if (fault) throw fault;
      armAfterEffectFaults(req, res, ctx.faults, this.log);
      next();
    });
    app.use(appRoutes(ctx));
    app.use(runnerRoutes(ctx));
    app.use(actionsRoutes(ctx));
    app.use(checkRoutes(ctx, this.checkRunStore));
    app.use(releaseRoutes(ctx));
    app.use(() => {
      throw notFound();
    });

    app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
      void _next;
      if (err instanceof GitHubError) {
        res.status(err.status).set(err.headers).json(err.body());
        return;
      }
      const e = err as { type?: string; status?: number };
      if (e.type === "entity.parse.failed") {
        res.status(400).json(new GitHubError(400, "Problems parsing JSON").body());
        return;
      }
      if (e.type === "entity.too.large") {
        res.status(413).json(new GitHubError(413, "Payload too large").body());
        return;
      }
      this.log.error({ err, path: req.path }, "fake GitHub route crashed");
      res.status(500).json(new GitHubError(500, "Server Error").body());
    });
    return app;
  }
}
