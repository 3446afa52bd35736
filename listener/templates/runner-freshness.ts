// Runner freshness: which GitHub Actions runner each template copy baked in (its `runner-<version>`
// tag, read from PVE), how far behind actions/runner's releases that is (asked of GitHub once a
// day), and how long until GitHub stops queueing jobs to it (listener/templates/runner-release.ts has the
// rule). Shown on the status page, in `pve-runners status` and as metrics; logged as a warning from
// 14 days before the cutoff and as an error past it, once a day per template, never per job.
//
// A failed GitHub answer is logged once (until one succeeds again) and the last good answer kept;
// the check is tried again after `retryMs`. Nothing here ever stops a runner from being made.
import type { Logger } from "pino";
import type { ReleaseJson } from "../adapters/github/github.js";
import type { TemplateCopy } from "../lifecycle/placement.js";
import { assessFreshness, compareRunnerVersions, DAY_MS, releaseOf, runnerVersionOfTags, wholeDays, type FreshnessLevel, type RunnerRelease } from "./runner-release.js";

export interface RunnerFreshnessDeps {
  /** The template copies to watch (a function: a blue/green deploy may add one while we run). */
  templates: () => TemplateCopy[];
  /** The template's PVE config (GET /nodes/{node}/lxc/{vmid}/config): its tags are read. */
  templateConfig: (node: string, vmid: number) => Promise<Record<string, unknown>>;
  latestRelease: () => Promise<ReleaseJson>;
  /** One page (1-based, newest first, 100 a page) of the releases list. */
  releasesPage: (page: number) => Promise<ReleaseJson[]>;
  logger: Logger;
  /** Between release checks (default a day). */
  intervalMs?: number;
  /** After a failed release check (default min(intervalMs, 1 h)). */
  retryMs?: number;
  /** Between reads of the templates' tags (default min(intervalMs, 10 min)): a rebuilt template shows soon. */
  templateReadMs?: number;
  now?: () => number;
}

/** One template copy's runner, as the status page and `pve-runners status` show it. */
export interface TemplateRunnerState {
  /** The template's key, "node/vmid". */
  template: string;
  /** The runner version of its tag; null when it has none (or PVE could not be read: see readError). */
  version: string | null;
  readError: string | null;
  level: FreshnessLevel;
  /** The release that superseded it: the 30 days count from its publication. */
  supersededBy: { version: string; publishedAt: number } | null;
  /** Whole days since supersededBy came out (0 while current). */
  behindDays: number;
  /** Whole days left before the cutoff (30 while current; negative past it). */
  leftDays: number;
  behindMs: number;
  leftMs: number;
  /** When GitHub stops queueing jobs to it; null while current. */
  cutoffAt: number | null;
}

export interface RunnerFreshnessSnapshot {
  /** The newest full release of actions/runner GitHub named; null before the first good answer. */
  latest: { version: string; publishedAt: number } | null;
  /** When GitHub last answered. */
  checkedAt: number | null;
  /** The last failed check's reason, while GitHub has not answered since. */
  lastError: string | null;
  templates: TemplateRunnerState[];
}

const MAX_PAGES = 10;

/** Control characters (C0, DEL, C1) runs become one space; at most 300 characters. */
function oneLine(s: string): string {
  return Array.from(s, (c) => {
    const code = c.codePointAt(0)!;
    return code < 0x20 || (code >= 0x7f && code <= 0x9f) ? "\n" : c;
  })
    .join("")
    .replace(/\n+/g, " ")
    .slice(0, 300);
}

export class RunnerFreshness {
  private releases: RunnerRelease[] = [];
  private latest: RunnerRelease | null = null;
  private checkedAt: number | null = null;
  private lastError: string | null = null;
  private readonly versions = new Map<string, { version: string | null; readError: string | null }>();
  private readonly warned = new Map<string, { at: number; level: FreshnessLevel }>();
  private timer: NodeJS.Timeout | null = null;
  private nextReleaseCheck = 0;
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly d: RunnerFreshnessDeps) {
    this.now = d.now ?? Date.now;
  }

  private get intervalMs(): number {
    return this.d.intervalMs ?? DAY_MS;
  }

  /** Checks now, then keeps checking on its schedule until stop(). */
  start(): void {
    const loop = async () => {
      await this.tick().catch((err: Error) => this.d.logger.error({ err: err.message }, "runner freshness check failed"));
      if (!this.stopped) this.timer = setTimeout(() => void loop(), this.d.templateReadMs ?? Math.min(this.intervalMs, 600_000)).unref();
    };
    void loop();
  }

  /** Stops the schedule; a round under way gets 2 s to finish (a hanging GitHub must not hold up a shutdown). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.running, new Promise((r) => (timer = setTimeout(r, 2_000)))]);
    clearTimeout(timer);
  }

  /** One round: the templates' tags always; GitHub's releases when due (or `force`). Never throws for GitHub or PVE. */
  async tick(opts: { force?: boolean } = {}): Promise<void> {
    while (this.running) await this.running;
    this.running = (async () => {
      await this.readTemplates();
      if (opts.force || this.now() >= this.nextReleaseCheck) await this.checkReleases();
      this.report();
    })().finally(() => (this.running = null));
    return this.running;
  }

  private async readTemplates(): Promise<void> {
    const copies = this.d.templates();
    const keys = new Set(copies.map((c) => c.key));
    for (const k of this.versions.keys()) if (!keys.has(k)) this.versions.delete(k);
    await Promise.all(
      copies.map(async (c) => {
        try {
          const conf = await this.d.templateConfig(c.sourceNode, c.vmid);
          const tags = typeof conf.tags === "string" ? conf.tags : undefined;
          const was = this.versions.get(c.key);
          const version = runnerVersionOfTags(tags);
          if (!version && (!was || was.version || was.readError)) this.d.logger.warn({ template: c.key }, `template ${c.key} has no runner-<version> tag: its runner's age is unknown (rebuild it with \`pve-runners template deploy\`, or tag it: pct set ${c.vmid} --tags "pve-runners-template;runner-X.Y.Z")`);
          this.versions.set(c.key, { version, readError: null });
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          // The version read last stays: a node briefly down does not make the template unknown.
          const was = this.versions.get(c.key);
          if (!was?.readError) this.d.logger.warn({ template: c.key, err: message }, `could not read template ${c.key}'s config for its runner version; trying again later`);
          this.versions.set(c.key, { version: was?.version ?? null, readError: message });
        }
      }),
    );
  }

  /** GET …/releases/latest; when a template is behind it, the list pages back to its version. */
  private async checkReleases(): Promise<void> {
    try {
      const latest = releaseOf(await this.d.latestRelease());
      if (!latest) throw new Error("GitHub's latest actions/runner release has no usable tag_name/published_at");
      const known = new Map<string, RunnerRelease>([[latest.version, latest]]);
      const versions = [...this.versions.values()].flatMap((v) => (v.version ? [v.version] : []));
      const oldest = versions.sort(compareRunnerVersions)[0];
      if (oldest && compareRunnerVersions(latest.version, oldest) > 0) {
        for (let page = 1; page <= MAX_PAGES; page++) {
          const rows = await this.d.releasesPage(page);
          for (const r of rows.map(releaseOf)) if (r) known.set(r.version, r);
          // Newest first: once a page reaches the oldest template's version, every release after it is known.
          const reached = rows.some((r) => typeof r.tag_name === "string" && /^v?\d+\.\d+\.\d+$/.test(r.tag_name) && compareRunnerVersions(r.tag_name, oldest) <= 0);
          if (reached || rows.length < 100) break;
        }
      }
      this.releases = [...known.values()];
      this.latest = latest;
      this.checkedAt = this.now();
      if (this.lastError) this.d.logger.info({ latest: latest.version }, "GitHub answers the actions/runner release check again");
      this.lastError = null;
      this.nextReleaseCheck = this.now() + this.intervalMs;
    } catch (err) {
      const status = typeof err === "object" && err !== null && "status" in err ? ` (HTTP ${(err as { status: unknown }).status})` : "";
      // Shown in the CLI and on the page: one line, no control characters, bounded.
      const message = oneLine(`${err instanceof Error ? err.message : String(err)}${status}`);
      if (!this.lastError)
        this.d.logger.warn(
          { err: message, keeping: this.latest?.version ?? null },
          `could not ask GitHub for the latest actions/runner release: ${this.latest ? `keeping the answer from ${new Date(this.checkedAt!).toISOString()}` : "the templates' runner age is unknown until it answers"}; trying again later`,
        );
      this.lastError = message;
      this.nextReleaseCheck = this.now() + (this.d.retryMs ?? Math.min(this.intervalMs, 3_600_000));
    }
  }

  /** Warning from 14 days before the cutoff, error past it: once a day per template (and when it gets worse). */
  private report(): void {
    const now = this.now();
    for (const t of this.snapshot().templates) {
      if (t.level !== "warning" && t.level !== "expired") {
        this.warned.delete(t.template);
        continue;
      }
      const last = this.warned.get(t.template);
      if (last && last.level === t.level && now - last.at < DAY_MS) continue;
      this.warned.set(t.template, { at: now, level: t.level });
      const by = t.supersededBy!;
      const fields = { template: t.template, runner: t.version, supersededBy: by.version, supersededAt: new Date(by.publishedAt).toISOString(), cutoffAt: new Date(t.cutoffAt!).toISOString(), daysLeft: t.leftDays };
      if (t.level === "expired")
        this.d.logger.error(fields, `template ${t.template}'s runner ${t.version} is more than 30 days behind GitHub's runner releases (${by.version} came out ${t.behindDays} days ago): GitHub no longer queues jobs to it; rebuild the template (pve-runners template deploy)`);
      else
        this.d.logger.warn(fields, `template ${t.template}'s runner ${t.version} has ${t.leftDays} days left before GitHub stops queueing jobs to it (${by.version} came out ${t.behindDays} days ago): rebuild the template (pve-runners template deploy)`);
    }
  }

  snapshot(): RunnerFreshnessSnapshot {
    const now = this.now();
    const templates = this.d.templates().map((c): TemplateRunnerState => {
      const v = this.versions.get(c.key) ?? { version: null, readError: null };
      // Without any answer from GitHub nothing can be said about its age.
      const f = assessFreshness(this.checkedAt === null ? null : v.version, this.releases, now);
      return {
        template: c.key,
        version: v.version,
        readError: v.readError,
        level: f.level,
        supersededBy: f.supersededBy,
        behindDays: wholeDays(f.behindMs),
        leftDays: wholeDays(f.leftMs),
        behindMs: f.behindMs,
        leftMs: f.leftMs,
        cutoffAt: f.cutoffAt,
      };
    });
    return { latest: this.latest, checkedAt: this.checkedAt, lastError: this.lastError, templates };
  }
}
