// Wires the listener together from a validated config: store, adapters, clone lane, pipeline, HTTP.
import { dirname, join } from "node:path";
import { readFile, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import type { Logger } from "pino";
import type { Config, Secrets } from "./config.js";
import { GitHubAdapter } from "../adapters/github/github.js";
import { EnvOptionDelivery, PctHelperDelivery, removeJitEnv, type JitDelivery } from "../adapters/jit/jit-delivery.js";
import { Pipeline, type PipelineSettings, type TerraformLike } from "../lifecycle/pipeline.js";
import { ProxmoxApi } from "../adapters/proxmox/proxmox.js";
import { containerPresence, type RecordedContainer } from "../adapters/proxmox/container-check.js";
import { LIVE_STATES, RETIREMENT_REASONS, Store } from "../store/store.js";
import { Terraform } from "../adapters/terraform/terraform.js";
import { nodeLoads, templateCopies } from "../lifecycle/placement.js";
import { CloneLane } from "../lifecycle/clone-lane.js";
import { CloneGate } from "../lifecycle/clone-gate.js";
import { webhookApp } from "../http/webhook-app.js";
import { listenLimited, type ServerLimits } from "../http/http-listen.js";
import { overlappingLabelSets } from "../lifecycle/labels.js";
import { Metrics } from "../metrics/metrics.js";
import { startAdmin } from "../http/admin.js";
import { renderStatusPage } from "../http/status-page.js";
import { Recent, webBaseUrlOf, type ErrorRecord, type StatusSnapshot, type SweepActionRecord } from "../http/status.js";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { sweep, sweepActionTarget, type SweepDeps, type SweepReport } from "../../sweeper/sweep.js";
import { scheduleSweeps, type SweepSchedule } from "../../sweeper/schedule.js";
import { scheduleRetention } from "../../sweeper/retention.js";
import { Recovery, type RecoveryReport } from "../../sweeper/recovery.js";
import { assertPortsFree } from "./port-check.js";
import { storeSnapshot } from "../store/store-snapshot.js";
import { lockStateDir } from "./state-lock.js";
import { RunnerFreshness } from "../templates/runner-freshness.js";
import { TemplateRotation } from "../templates/template-rotation.js";

export interface ServiceOverrides {
  /** Environment of the JIT delivery helper (tests: a `pct` stand-in first on PATH). */
  helperEnv?: NodeJS.ProcessEnv;
  /** Extra environment for terraform (tests: the provider stand-in's poll interval). */
  terraformEnv?: Record<string, string>;
  /** Poll interval while a runner boots (tests shorten it). */
  onlinePollMs?: number;
  retryBackoffMs?: number;
  githubThrottle?: boolean;
  /** Sweeper grace for records mid-creation (tests shorten it). */
  sweepGraceMs?: number;
  /** Admin listener port (tests: 0 for any free port). */
  adminPort?: number;
  /** Timeouts and connection cap of both listeners (tests: small ones); SERVER_LIMITS otherwise. */
  serverLimits?: Partial<ServerLimits>;
  /** false: hold the clone lane around whole applies instead of through the clone gate (a bench baseline). */
  cloneGate?: boolean;
  /** How often replaced templates are checked for being unused (default 60 s; also after each runner is gone). */
  templateRetireMs?: number;
  /** In place of terraform, for the pipeline and the sweeper (bench/soak.ts: an in-process stand-in for apply and destroy). */
  terraform?: TerraformLike;
  /** Retention window (read at each prune) and prune interval in ms, instead of retention.days and an hour (bench/soak.ts: pruning within a short run). */
  retention?: { keepMs: number; everyMs: number };
}

export interface Service {
  readonly url: string;
  /** The admin listener (status page, /metrics, API), when enabled. */
  readonly adminUrl: string | null;
  readonly metrics: Metrics;
  snapshot(): StatusSnapshot;
  setDraining(on: boolean): void;
  readonly store: Store;
  readonly pipeline: Pipeline;
  /** Blue/green template replacement: the copies runners clone from now, and the replaced ones. */
  readonly templates: TemplateRotation;
  /** One sweeper pass now (the cron schedule runs the same). */
  sweep(opts?: { dryRun?: boolean }): Promise<SweepReport>;
  /** One missed-webhook recovery pass now (redeliver failed deliveries, feed unseen queued jobs). */
  recover(): Promise<RecoveryReport>;
  /**
   * A config reload (SIGHUP): label sets, runner name prefix, allowlist, limits, timeouts, sweeper schedule and log
   * level take effect at once; what needs a restart is named in the result and left as it was.
   */
  reload(next: Config): { applied: string[]; needRestart: string[]; refused?: string };
  /** Reads the templates' runner versions and asks GitHub for actions/runner's releases now (null when runnerFreshness is off). */
  checkRunnerFreshness(): Promise<void> | null;
  /** The pid of the provider every terraform run attaches to (terraform.sharedProvider), if one runs. */
  sharedProviderPid(): Promise<number | undefined>;
  /** Settles when the `terraform init` started with the listener has ended (done or failed). */
  readonly terraformInitialised: Promise<void>;
  /** terraform's slots: runs going, waiting, on their way to their lanes, and how many the clone gate saw arrive. */
  terraformSlots(): ReturnType<Terraform["slotStats"]>;
  stop(): Promise<void>;
}

/** How often the listener asks PVE whether a task it waits for (a start) has ended. */
const TASK_POLL_MS = 100;

export function pipelineSettings(config: Config, o: ServiceOverrides = {}): PipelineSettings {
  return {
    stateDir: config.stateDir,
    labelSets: config.labelSets,
    allow: config.allow,
    runnerScope: config.github.runnerScope,
    maxRunners: config.limits.maxRunners,
    maxRunnersPerRepo: config.limits.maxRunnersPerRepo,
    proxmox: {
      endpoint: config.proxmox.endpoint,
      insecure: config.proxmox.insecure,
      node: config.proxmox.node,
      templates: templateCopies(config.proxmox),
      nodeLimits: Object.fromEntries(config.proxmox.nodes.map((n) => [n.name, { maxRunners: n.maxRunners, minFreeMemoryMb: n.minFreeMemoryMb }])),
      bridge: config.proxmox.bridge,
      vlan: config.proxmox.vlan,
      pool: config.proxmox.pool,
      storage: config.proxmox.storage,
      linkedClone: config.proxmox.linkedClone,
      vmids: config.proxmox.vmids,
    },
    timeouts: {
      applyMs: config.timeouts.apply * 1000,
      destroyMs: config.timeouts.destroy * 1000,
      bootMs: config.timeouts.boot * 1000,
      idleMs: config.timeouts.idle * 1000,
    },
    applyAttempts: 3,
    retryBackoffMs: o.retryBackoffMs ?? 5_000,
    onlinePollMs: o.onlinePollMs ?? 2_000,
    namePrefix: config.runners.namePrefix,
  };
}

/** The adapters and the store, shared by `serve` and the one-shot `sweep`. */
export function buildParts(config: Config, secrets: Secrets, logger: Logger, o: ServiceOverrides & { dryRun?: boolean; serving?: boolean } = {}) {
  // A dry run works on a copy: it must not create or change a file in the state dir.
  const dbFile = join(config.stateDir, "pve-runners.sqlite");
  const store = new Store(o.dryRun ? storeSnapshot(dbFile) : dbFile);
  // The listener's event loop answers webhooks: the store's checkpoints (a copy and two fsyncs) run beside it.
  if (o.serving && !o.dryRun) {
    store.checkpointInBackground({ onError: (message) => logger.warn({ err: message }, "store checkpoint thread failed; checkpoints are back on the main thread") });
  }
  const github = new GitHubAdapter({
    appId: config.github.appId,
    privateKey: secrets.githubAppPrivateKey,
    baseUrl: config.github.baseUrl,
    apiVersion: config.github.apiVersion,
    runnerGroupId: config.github.runnerGroupId,
    logger: logger.child({ adapter: "github" }),
    throttle: o.githubThrottle,
  });
  const terraform = new Terraform({
    binary: config.terraform.binary,
    cliConfigFile: config.terraform.cliConfigFile,
    sharedInitDir: join(config.stateDir, "terraform-init"),
    maxConcurrent: config.terraform.maxConcurrent,
    // No more applies on their way to their lanes than cores (one per lane always): the gate tells
    // when one's clone request reached its lane (onCloneQueued below).
    approachCap: o.cloneGate !== false ? availableParallelism() : undefined,
    schedIdle: config.terraform.schedIdle,
    nice: config.terraform.nice,
    // Only the long-running listener keeps a provider alive; the one-shot CLI runs start their own.
    sharedProviderDir: o.serving && config.terraform.sharedProvider ? join(config.stateDir, "provider") : undefined,
    // Stacks name no endpoint: straight to PVE here (the CLI's sweep), through the clone gate in the listener.
    env: { ...o.terraformEnv, PROXMOX_VE_ENDPOINT: config.proxmox.endpoint, PROXMOX_VE_INSECURE: String(config.proxmox.insecure), PROXMOX_VE_API_TOKEN: secrets.pveApiToken },
    logger: logger.child({ adapter: "terraform" }),
  });
  // Task polls (a container's start, the sweeper's stop and destroy) every 100 ms: a runner's start
  // is on the path from queued to started, and a 500 ms poll added 250 ms to it on average; one
  // light GET per 100 ms per start is nothing to pveproxy.
  const pve = new ProxmoxApi({ endpoint: config.proxmox.endpoint, token: secrets.pveApiToken, insecure: config.proxmox.insecure, logger, pollMs: TASK_POLL_MS });
  const sweepDeps = (wake?: (runner: string) => void): SweepDeps => ({
    store,
    github,
    pve,
    terraform: o.terraform ?? terraform,
    logger,
    wake,
    beforeStackDestroy: config.delivery.mode === "env" ? (node: string, vmid: number) => removeJitEnv(pve, node, vmid) : undefined,
    settings: {
      nodes: () => [...new Set([config.proxmox.node, ...templateCopies(config.proxmox).map((t) => t.node), ...store.runners(LIVE_STATES).flatMap((r) => (r.node ? [r.node] : []))])],
      stateDir: config.stateDir,
      // Every scope we have made runners in or seen jobs for: stale registrations can only be there.
      scopes: () => store.scopes(),
      hardTtlMs: config.sweeper.hardTtl * 1000,
      lockLimitMs: config.sweeper.lockLimit * 1000,
      graceMs: o.sweepGraceMs ?? config.sweeper.grace * 1000,
    },
  });
  return { store, github, terraform, pve, sweepDeps };
}

/**
 * Starts the listener. The state dir is locked first, before the store, the clone gate's
 * certificate or anything else is written: a second instance on it fails with StateDirBusyError
 * having changed no file. stop() lets go of it; so does the kernel if the process dies.
 */
export async function startService(config: Config, secrets: Secrets, logger: Logger, o: ServiceOverrides = {}): Promise<Service> {
  // A busy port is found before anything is written: nothing half-started, one clear error.
  await assertPortsFree([
    { what: "webhook listener", host: config.listener.host, port: config.listener.port },
    ...(config.admin.enabled ? [{ what: "admin API", host: config.admin.host, port: o.adminPort ?? config.admin.port }] : []),
  ]);
  const lock = lockStateDir(config.stateDir);
  let service: Service;
  try {
    service = await startLocked(config, secrets, logger, o);
  } catch (err) {
    lock.release();
    throw err;
  }
  return {
    ...service,
    async stop() {
      try {
        await service.stop();
      } finally {
        lock.release();
      }
    },
  };
}

async function startLocked(config: Config, secrets: Secrets, logger: Logger, o: ServiceOverrides): Promise<Service> {
  const { store, github, terraform, pve, sweepDeps } = buildParts(config, secrets, logger, { ...o, serving: true });
  const delivery: JitDelivery =
    config.delivery.mode === "env"
      ? new EnvOptionDelivery(pve, logger)
      : new PctHelperDelivery({ command: config.delivery.helper, env: o.helperEnv ?? process.env, logger });
  for (const o of overlappingLabelSets(config.labelSets))
    logger.warn(o, `label set ${o.large} has every label of ${o.small}: GitHub may run ${o.small} jobs on ${o.large} runners`);
  const lane = new CloneLane({ logger: logger.child({ part: "clone-lane" }) });
  const templates = new TemplateRotation({
    store,
    pve: { ...pveCalls(pve), poolMembers: async (pool) => (await pve.request<Array<{ members?: Array<Record<string, unknown>> }>>("GET", "/pools", { poolid: pool, type: "lxc" }))[0]?.members ?? [] },
    configured: () => templateCopies(config.proxmox),
    pool: config.proxmox.pool,
    runnerVmids: () => config.proxmox.vmids,
    logger: logger.child({ part: "templates" }),
  });
  // Runners are placed on the copies as replaced (the config names each as first built).
  const settingsFor = (c: Config): PipelineSettings => {
    const s = pipelineSettings(c, o);
    return { ...s, proxmox: { ...s.proxmox, templates: templates.effective() } };
  };
  // Only the active templates have lanes; the lane map itself holds busy lanes alone.
  const laneStats = () => ({ ...Object.fromEntries(templates.effective().map((t) => [t.key, { running: 0, waiting: 0 }])), ...lane.stats() });
  // The clone gate holds a template's lane for its clone task alone (terraform's own work runs in
  // parallel); terraform reaches PVE through it, trusting its certificate by SSL_CERT_FILE.
  let gate: CloneGate | null = null;
  if (o.cloneGate !== false) {
    gate = new CloneGate({
      upstream: config.proxmox.endpoint,
      // The one credential the gate admits: the token terraform is given (service's terraform env).
      apiToken: secrets.pveApiToken,
      insecure: config.proxmox.insecure,
      // Replaced templates too: a runner placed on one just before the switch still clones from it.
      templates: templates.knownKeys(),
      lane,
      certDir: config.stateDir,
      logger: logger.child({ part: "clone-gate" }),
      // Called only once clones run, after `metrics` below exists.
      onLaneWait: (_key, seconds) => metrics.phase("lane_wait", seconds),
      onCloneQueued: (runner) => terraform.reachedLane(runner),
    });
    const { url, caFile } = await gate.start();
    // The token's secret never passes on from terraform's output, should bpg ever print it.
    terraform.setEnv({ PROXMOX_VE_ENDPOINT: url, PROXMOX_VE_INSECURE: "false", SSL_CERT_FILE: await trustBundle(caFile) }, { hide: [secrets.pveApiToken.split("=").slice(1).join("=")] });
  }
  // One line at start saying whether terraform really runs below the listener's priority.
  void terraform.checkPriority().catch((err: Error) => logger.warn({ err: err.message }, "could not check terraform's CPU priority"));
  // Idempotent: after a restart the container may already run.
  const startContainer = (node: string, vmid: number) => pve.ensureStarted(node, vmid);
  // Cluster-wide: the container may be on any node (one that is down still lists its guests).
  const containerExists = async (name: string) => (await pve.clusterResources("vm")).some((c) => c.name === name);
  // At the runner's recorded node and vmid, by our marks: decides how (and whether) its stack is destroyed.
  const presence = (r: RecordedContainer) => containerPresence(pve, r);
  const readNodes = async () => nodeLoads(await pve.clusterResources("node"));
  const vmidProbe = {
    inUse: async () => new Set((await pve.clusterResources("vm")).map((c) => Number(c.vmid)).filter(Number.isInteger)),
    isFree: (vmid: number) => pve.vmidFree(vmid),
  };
  // The templates' runner against GitHub's releases: read, shown and warned about; never a gate.
  const freshness = config.runnerFreshness.enabled
    ? new RunnerFreshness({
        // The active copies: a replaced template is watched from the moment it takes over.
        templates: () => templates.effective(),
        templateConfig: (node, vmid) => pve.containerConfig(node, vmid),
        latestRelease: () => github.latestRunnerRelease(),
        releasesPage: (page) => github.runnerReleases(page),
        intervalMs: config.runnerFreshness.checkInterval * 1000,
        logger: logger.child({ part: "runner-freshness" }),
      })
    : null;
  const countByState = () => store.countByState();
  const metrics: Metrics = new Metrics({
    runnersByState: countByState,
    lanes: laneStats,
    queuedJobs: () => store.queuedJobs().length,
    githubRateLimitRemaining: () => github.rateLimitRemaining,
    // Read at scrape time, after the pipeline below exists.
    draining: (): boolean => pipeline.isDraining(),
    runnerFreshness: () => freshness?.snapshot() ?? null,
  });
  const pipeline: Pipeline = new Pipeline({ store, github, terraform: o.terraform ?? terraform, lane: gate ? undefined : lane, delivery, containerExists, containerPresence: presence, startContainer, readNodes, vmidProbe, metrics, settings: settingsFor(config), logger });
  // Draining survives a restart: an operator draining for maintenance must not be undone by one.
  const drainFlag = join(config.stateDir, "draining");
  if (existsSync(drainFlag)) pipeline.setDraining(true);
  const setDraining = (on: boolean) => {
    if (on) writeFileSync(drainFlag, `${new Date().toISOString()}\n`);
    else rmSync(drainFlag, { force: true });
    pipeline.setDraining(on);
  };
  const sweepLog = new Recent<SweepActionRecord>(50);
  const sweepErrors = new Recent<ErrorRecord>(20);
  const runSweep = async (opts: { dryRun?: boolean } = {}) => {
    const report = await sweep(sweepDeps((name) => pipeline.nudge(name)), opts);
    for (const a of report.actions) {
      if (!opts.dryRun) metrics.sweepAction(a.kind);
      sweepLog.push({ at: Date.now(), kind: a.kind, target: sweepActionTarget(a), reason: a.reason, dryRun: !!opts.dryRun });
    }
    for (const e of report.errors) sweepErrors.push({ at: Date.now(), message: `sweeper: ${e}` });
    return report;
  };
  const pkgVersion = (() => {
    try {
      return (JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }).version;
    } catch {
      return "unknown";
    }
  })();
  const startedAt = Date.now();
  const snapshot = (): StatusSnapshot => {
    const live = store.runners(LIVE_STATES).sort((a, b) => b.createdAt - a.createdAt);
    const finished = store.recentFinishedRunners(30);
    const runnerErrors: ErrorRecord[] = [...live, ...finished]
      .sort((a, b) => b.stateSince - a.stateSince)
      .filter((r) => r.lastError && !RETIREMENT_REASONS.includes(r.lastError))
      .slice(0, 20)
      .map((r) => ({ at: r.stateSince, runner: r.name, job: r.madeForJob ?? undefined, message: r.lastError! }));
    return {
      version: pkgVersion,
      startedAt,
      now: Date.now(),
      draining: pipeline.isDraining(),
      githubBaseUrl: config.github.baseUrl,
      webBaseUrl: webBaseUrlOf(config.github.baseUrl),
      counts: { queuedJobs: store.queuedJobs().length, liveRunners: live.length, runnersByState: countByState() },
      runners: [...live, ...finished],
      lanes: laneStats(),
      jobs: store.recentJobs(50),
      sweeps: sweepLog.list(),
      errors: [...runnerErrors, ...sweepErrors.list()].sort((a, b) => b.at - a.at).slice(0, 30),
      runnerFreshness: freshness?.snapshot() ?? null,
    };
  };
  const recovery = new Recovery(
    { store, github, logger: logger.child({ part: "recovery" }), onDelivery: (guid) => pipeline.handleDelivery(guid), reconcile: () => pipeline.reconcile() },
    {
      lookbackMs: config.sweeper.lookback * 1000,
      repoWindowMs: config.sweeper.repoWindow * 1000,
      staleQueuedMs: o.sweepGraceMs ?? config.sweeper.grace * 1000,
      alwaysRepos: () => config.allow.repos,
    },
  );

  let current = config;
  // A new template: gated first (its clones serialized), then placement takes it at once.
  const templateHooks = {
    view: () => templates.view(),
    suggestVmid: (copy: string) => templates.suggestVmid(copy),
    replace: async (from: string, vmid: number) => {
      const copy = await templates.replace(from, vmid);
      gate?.addTemplates([copy.key]);
      pipeline.updateSettings(settingsFor(current));
      void retireTemplates();
      return { from, to: copy.key, node: copy.node };
    },
  };
  const retireTemplates = () => templates.retireUnused().catch((err: Error) => logger.warn({ err: err.message }, "retiring replaced templates failed"));
  // Each runner that goes may have been the last one on a replaced template; a timer catches the rest.
  const unwatch = store.watchRunners((r) => {
    if ((r.state === "gone" || r.state === "failed") && r.template && store.templateReplacements().some((x) => x.from === r.template && x.destroyedAt === null)) void retireTemplates();
  });
  const retireTimer = setInterval(() => void retireTemplates(), o.templateRetireMs ?? 60_000);
  retireTimer.unref();

  const app = webhookApp({
    webhookPath: config.github.webhookPath,
    trustProxy: config.listener.trustProxy,
    webhook: {
      secret: secrets.webhookSecret,
      bodyLimitBytes: config.listener.bodyLimitBytes,
      failuresPerMinute: config.listener.failuresPerMinute,
      store,
      logger: logger.child({ part: "webhook" }),
      onResult: (r) => metrics.delivery(r),
      onDelivery: (guid, payload) => void pipeline.handleDelivery(guid, payload).catch((err) => logger.error({ err: String(err), delivery: guid }, "delivery processing failed")),
    },
    // The store answering is what the listener needs to take deliveries.
    healthy: () => (store.countRunners(LIVE_STATES), true),
  });
  const { server, url } = await listenLimited(app, config.listener.port, config.listener.host, o.serverLimits);
  logger.info({ url, webhook: config.github.webhookPath }, "listener up");
  let admin: { url: string; close(): Promise<void> } | null = null;
  if (config.admin.enabled) {
    admin = await startAdmin({
      host: config.admin.host,
      port: o.adminPort ?? config.admin.port,
      token: secrets.adminToken ?? "",
      allowedHosts: config.admin.allowedHosts,
      metrics,
      logger: logger.child({ part: "admin" }),
      serverLimits: o.serverLimits,
      hooks: { snapshot, setDraining, sweep: (dryRun) => runSweep({ dryRun }), renderPage: renderStatusPage, templates: templateHooks },
    });
  }
  // Not awaited: serving starts now, and the first job's prepare() joins this init.
  const initialising = pipeline.initTerraform().catch((err: unknown) => logger.warn({ err: err instanceof Error ? err.message : String(err) }, "terraform init (or the shared provider's start) at listener start failed; the first job tries again"));
  await pipeline.resume();
  freshness?.start();
  let schedule: SweepSchedule | undefined;
  const startSchedule = (c: Config) => {
    if (!c.sweeper.enabled) return;
    schedule = scheduleSweeps(c.sweeper.schedule, async () => {
      await recovery.run();
      await runSweep();
    }, logger.child({ part: "sweeper" }));
  };
  const reload = (next: Config) => {
    const liveSets = new Set(store.runners(LIVE_STATES).map((r) => r.labelSet));
    const removedLive = current.labelSets.filter((s) => !next.labelSets.some((n) => n.name === s.name) && liveSets.has(s.name));
    if (removedLive.length) {
      const refused = `label set(s) ${removedLive.map((s) => s.name).join(", ")} still have live runners: reload refused, nothing changed`;
      logger.error(refused);
      return { applied: [], needRestart: [], refused };
    }
    const restartOnly = ["github", "proxmox", "listener", "admin", "stateDir", "terraform", "delivery", "runnerFreshness"] as const;
    const needRestart = restartOnly.filter((k) => JSON.stringify(current[k]) !== JSON.stringify(next[k]));
    // runners (the name prefix) is live: the sweeper never goes by names, so a new prefix strands nothing.
    const live = ["labelSets", "runners", "allow", "limits", "timeouts", "sweeper", "retention", "log"] as const;
    const applied = live.filter((k) => JSON.stringify(current[k]) !== JSON.stringify(next[k]));
    const merged: Config = { ...next, ...Object.fromEntries(restartOnly.map((k) => [k, current[k]])) } as Config;
    pipeline.updateSettings(settingsFor(merged));
    logger.level = merged.log.level;
    if (applied.includes("sweeper")) {
      void schedule?.stop();
      schedule = undefined;
      startSchedule(merged);
    }
    current = merged;
    logger.info({ applied, needRestart }, needRestart.length ? "config reloaded; these sections need a restart to change" : "config reloaded");
    return { applied: [...applied], needRestart: [...needRestart] };
  };
  // Runs whether or not the sweeper does: the store must not grow for ever either way.
  const retention = o.retention
    ? scheduleRetention(store, () => o.retention!.keepMs / 86_400_000, logger.child({ part: "retention" }), o.retention.everyMs)
    : scheduleRetention(store, () => current.retention.days, logger.child({ part: "retention" }));
  if (config.sweeper.enabled) {
    // Deliveries lost while we were down are asked for again at once; the schedule repeats both.
    // Containers, registrations and stack dirs left by a crash are dealt with at once too.
    void recovery
      .run()
      .then(() => runSweep())
      .catch((err) => logger.warn({ err: String(err) }, "start-up recovery or sweep failed; the next sweep retries"));
    startSchedule(config);
  }

  return {
    url,
    store,
    pipeline,
    templates,
    adminUrl: admin?.url ?? null,
    metrics,
    snapshot,
    setDraining,
    sweep: runSweep,
    recover: () => recovery.run(),
    reload,
    checkRunnerFreshness: () => freshness?.tick({ force: true }) ?? null,
    sharedProviderPid: () => terraform.sharedProviderPid(),
    terraformSlots: () => terraform.slotStats(),
    terraformInitialised: initialising.then(() => undefined),
    async stop() {
      clearInterval(retireTimer);
      unwatch();
      await templates.settle();
      retention.stop();
      await freshness?.stop();
      await schedule?.stop();
      await admin?.close();
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
      await pipeline.stop();
      await initialising;
      await terraform.close();
      await gate?.stop();
      await store.stopBackgroundCheckpoints();
      store.close();
    },
  };
}

/**
 * SSL_CERT_FILE replaces Go's CA bundle file: the gate's certificate goes in beside the system
 * bundle, so terraform's other HTTPS (a registry, a remote backend) still verifies as before.
 */
/** The ProxmoxApi calls template rotation makes, bound. */
function pveCalls(pve: ProxmoxApi) {
  return {
    containerConfig: (node: string, vmid: number) => pve.containerConfig(node, vmid),
    clusterResources: (type: "vm") => pve.clusterResources(type),
    vmidFree: (vmid: number) => pve.vmidFree(vmid),
    destroy: (node: string, vmid: number) => pve.destroy(node, vmid),
    firewallRules: (node: string, vmid: number) => pve.request<Array<Record<string, unknown>>>("GET", `/nodes/${node}/lxc/${vmid}/firewall/rules`),
  };
}

async function trustBundle(gatePem: string): Promise<string> {
  const system = [process.env.SSL_CERT_FILE, "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"].find((f) => f && f !== gatePem && existsSync(f));
  const out = join(dirname(gatePem), "clone-gate-trust.pem");
  const parts = [await readFile(gatePem, "utf8"), system ? await readFile(system, "utf8") : ""];
  await writeFile(out, parts.join("\n"), { mode: 0o644 });
  return out;
}
