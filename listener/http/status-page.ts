// The status page: one self-contained, server-rendered HTML document (no scripts, no external assets)
// drawn from a StatusSnapshot. Everything in the snapshot is untrusted text — repository names, labels
// and error messages come from webhooks and APIs — so every interpolated value goes through esc(), and
// the only links are job pages built by jobUrl() that stay on the GitHub web origin over http(s).
import { createHash } from "node:crypto";
import { LIVE_STATES, type JobRow, type RunnerRow } from "../store/store.js";
import { jobUrl, type ErrorRecord, type StatusSnapshot, type SweepActionRecord } from "./status.js";
import type { TemplateRunnerState } from "../templates/runner-freshness.js";

/** Seconds between reloads of the page (a `<meta http-equiv="refresh">`). */
export const STATUS_PAGE_REFRESH_SECONDS = 5;

const STATE_ORDER = ["requested", "provisioning", "warm", "booting", "idle", "busy", "done", "destroying", "failed", "gone"];
const LAST_ERROR_MAX = 90;
const MESSAGE_MAX = 600;

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;" };

/** HTML-escapes any value for text content and double-quoted attributes. */
export function esc(v: unknown): string {
  return String(v ?? "").replace(/[&<>"'`]/g, (c) => HTML_ESCAPES[c]);
}

/** Cuts a string to at most `max` characters (code points, so no half surrogate pair) with an ellipsis. */
function truncate(s: string, max: number): string {
  const cps = Array.from(s);
  return cps.length <= max ? s : `${cps.slice(0, max - 1).join("")}…`;
}

/** "12 s", "4 min", "2 h 5 min", "3 d 4 h". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return "—";
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

/** "just now", "12 s ago", "3 min ago", relative to `now`; a time in the future (clock skew) is "just now". */
export function formatAgo(at: number, now: number): string {
  if (!Number.isFinite(at) || !Number.isFinite(now)) return "—";
  return now - at < 1000 ? "just now" : `${formatDuration(now - at)} ago`;
}

function isoOf(at: number): string | null {
  if (!Number.isFinite(at)) return null;
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** A relative time with the absolute one as its tooltip. */
function time(at: number, now: number, text = formatAgo(at, now)): string {
  const iso = isoOf(at);
  if (!iso) return `<span class="muted">—</span>`;
  return `<time datetime="${esc(iso)}" title="${esc(iso.replace("T", " ").replace(/\.\d+Z$/, " UTC"))}">${esc(text)}</time>`;
}

/** The job's page on GitHub, or null unless it is an http(s) URL on the snapshot's web origin. */
export function safeJobHref(s: Pick<StatusSnapshot, "webBaseUrl">, j: Pick<JobRow, "repo" | "runId" | "jobId">): string | null {
  try {
    const base = new URL(s.webBaseUrl);
    const u = new URL(jobUrl(s, j));
    if (u.protocol !== "https:" && u.protocol !== "http:") return null;
    if (u.origin !== base.origin || u.username || u.password) return null;
    return u.href;
  } catch {
    return null;
  }
}

const dash = `<span class="muted">—</span>`;

function badge(text: string, tone: string, title?: string): string {
  return `<span class="badge tone-${esc(tone)}"${title ? ` title="${esc(title)}"` : ""}>${esc(text)}</span>`;
}

function stateTone(state: string): string {
  return STATE_ORDER.includes(state) ? state : "unknown";
}

function jobTone(j: JobRow): { text: string; tone: string } {
  if (j.status === "completed") {
    const c = j.conclusion ?? "completed";
    const tone = c === "success" ? "ok" : c === "failure" || c === "timed_out" || c === "startup_failure" ? "bad" : "quiet";
    return { text: c.replace(/_/g, " "), tone };
  }
  if (j.status === "in_progress") return { text: "in progress", tone: "run" };
  return { text: String(j.status ?? "unknown").replace(/_/g, " "), tone: "wait" };
}

function chips(items: readonly unknown[]): string {
  if (!Array.isArray(items) || items.length === 0) return dash;
  return `<span class="chips">${items.map((l) => `<span class="chip">${esc(l)}</span>`).join("")}</span>`;
}

/** A job id, linked to its page when the snapshot knows the job. */
function jobRef(s: StatusSnapshot, jobId: number | null | undefined, byId: Map<number, JobRow>): string {
  if (jobId === null || jobId === undefined) return dash;
  const j = byId.get(jobId);
  const href = j ? safeJobHref(s, j) : null;
  const text = `#${esc(jobId)}`;
  return href ? `<a class="mono" href="${esc(href)}" rel="noopener noreferrer">${text}</a>` : `<span class="mono">${text}</span>`;
}

function table(cls: string, head: string[], rows: string[]): string {
  const th = head.map((h) => `<th scope="col">${esc(h)}</th>`).join("");
  return `<div class="table-wrap wrap-${cls}"><table class="${cls}"><thead><tr>${th}</tr></thead><tbody>${rows.join("\n")}</tbody></table></div>`;
}

function empty(title: string, detail: string): string {
  return `<div class="empty"><strong>${esc(title)}</strong><span>${esc(detail)}</span></div>`;
}

function section(id: string, title: string, note: string, body: string): string {
  return `<section id="${esc(id)}"><h2>${esc(title)}${note ? ` <span class="note">${esc(note)}</span>` : ""}</h2>${body}</section>`;
}

function runnersSection(s: StatusSnapshot, byId: Map<number, JobRow>): string {
  const runners = Array.isArray(s.runners) ? s.runners : [];
  if (runners.length === 0) {
    return section("runners", "Runners", "", empty("No runners — scaled to zero.", "A runner is cloned when a job of one of our label sets is queued, and destroyed after its one job."));
  }
  const rows = runners.map((r: RunnerRow) => {
    const err = r.lastError ? `<span class="err" title="${esc(r.lastError)}">${esc(truncate(r.lastError, LAST_ERROR_MAX))}</span>` : dash;
    const attempts = r.attempts > 1 ? ` <span class="muted small" title="apply attempts">×${esc(r.attempts)}</span>` : "";
    return (
      `<tr class="state-${esc(stateTone(r.state))}">` +
      `<td><span class="mono strong">${esc(r.name)}</span></td>` +
      `<td>${esc(r.labelSet)}<div class="muted small">${esc(r.scope)}</div></td>` +
      `<td>${badge(r.state, stateTone(r.state))}${attempts}</td>` +
      `<td class="num mono">${r.vmid === null || r.vmid === undefined ? dash : esc(r.vmid)}</td>` +
      `<td>${jobRef(s, r.madeForJob, byId)}</td>` +
      `<td>${jobRef(s, r.jobId, byId)}</td>` +
      `<td class="nowrap">${time(r.stateSince, s.now, formatDuration(s.now - r.stateSince))}</td>` +
      `<td class="wrap">${err}</td>` +
      `</tr>`
    );
  });
  const live = runners.filter((r) => (LIVE_STATES as string[]).includes(r.state)).length;
  return section(
    "runners",
    "Runners",
    `${live} live, ${runners.length - live} finished`,
    table("runners", ["Runner", "Label set", "State", "VMID", "Made for", "Ran", "In state", "Last error"], rows),
  );
}

function lanesSection(s: StatusSnapshot): string {
  const lanes = Object.entries(s.lanes ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (lanes.length === 0) {
    return section("lanes", "Clone lanes", "", empty("No clones since start.", "Clones of one template run one at a time; a lane appears with its first clone."));
  }
  const rows = lanes.map(([key, l]) => {
    const n = (v: number) => (v > 0 ? `<span class="strong">${esc(v)}</span>` : `<span class="muted">0</span>`);
    const state = l.running > 0 ? badge("cloning", "run") : l.waiting > 0 ? badge("waiting", "wait") : `<span class="muted">idle</span>`;
    return `<tr><td class="mono">${esc(key)}</td><td>${state}</td><td class="num">${n(l.running)}</td><td class="num">${n(l.waiting)}</td></tr>`;
  });
  return section("lanes", "Clone lanes", "one clone at a time per template (node/vmid)", table("lanes", ["Template", "Lane", "Cloning", "Waiting"], rows));
}

/** "12 days left", "cutoff passed 3 days ago", "current". */
export function freshnessText(t: Pick<TemplateRunnerState, "level" | "leftDays" | "leftMs">): string {
  if (t.level === "unknown") return "unknown";
  if (t.level === "current") return "current";
  if (t.leftMs < 0) return `cutoff passed ${Math.trunc(-t.leftMs / 86_400_000)} d ago`;
  return `${t.leftDays} d left`;
}

const FRESHNESS_TONE: Record<string, string> = { current: "ok", behind: "quiet", warning: "wait", expired: "bad", unknown: "unknown" };

/** Each template copy's runner: its version, how long since a newer release came out, the days left before GitHub's 30-day cutoff. */
function templatesSection(s: StatusSnapshot): string {
  const f = s.runnerFreshness;
  if (!f) return "";
  const latest = f.latest ? `latest actions/runner ${f.latest.version}` : "latest actions/runner release not known yet";
  const checked = f.checkedAt ? `, asked ${formatAgo(f.checkedAt, s.now)}` : "";
  const failing = f.lastError ? `; the last check failed: ${truncate(f.lastError, 120)}` : "";
  const templates = Array.isArray(f.templates) ? f.templates : [];
  const rows = templates.map((t) => {
    const by = t.supersededBy;
    const cutoff = t.cutoffAt === null ? dash : time(t.cutoffAt, s.now, isoOf(t.cutoffAt)?.slice(0, 10) ?? "—");
    return (
      `<tr><td class="mono">${esc(t.template)}</td>` +
      `<td class="mono">${t.version ? esc(t.version) : `<span class="muted" title="${esc(t.readError ?? "no runner-<version> tag")}">unknown</span>`}</td>` +
      `<td>${by ? `<span class="mono">${esc(by.version)}</span> <span class="muted small">${esc(t.behindDays)} d ago</span>` : dash}</td>` +
      `<td class="nowrap">${cutoff}</td>` +
      `<td>${badge(freshnessText(t), FRESHNESS_TONE[t.level] ?? "unknown")}</td></tr>`
    );
  });
  const body = rows.length ? table("templates", ["Template", "Runner", "Superseded by", "Cutoff", "Days left"], rows) : empty("No templates.", "");
  return section("templates", "Templates", `${latest}${checked}${failing}; GitHub stops queueing jobs to a runner 30 days after a newer release`, body);
}

function jobsSection(s: StatusSnapshot): string {
  const jobs = Array.isArray(s.jobs) ? s.jobs : [];
  if (jobs.length === 0) return section("jobs", "Recent jobs", "", empty("No jobs seen yet.", "Jobs appear here as workflow_job webhooks arrive."));
  const rows = jobs.map((j) => {
    const href = safeJobHref(s, j);
    const id = href ? `<a class="mono" href="${esc(href)}" rel="noopener noreferrer">#${esc(j.jobId)}</a>` : `<span class="mono">#${esc(j.jobId)}</span>`;
    const st = jobTone(j);
    return (
      `<tr><td>${id}</td>` +
      `<td class="wrap">${esc(j.repo)}</td>` +
      `<td>${chips(j.labels)}</td>` +
      `<td>${j.labelSet === null || j.labelSet === undefined ? `<span class="muted">not ours</span>` : esc(j.labelSet)}</td>` +
      `<td>${badge(st.text, st.tone)}</td>` +
      `<td>${j.runnerName ? `<span class="mono">${esc(j.runnerName)}</span>` : dash}</td>` +
      `<td class="nowrap">${time(j.updatedAt, s.now)}</td></tr>`
    );
  });
  return section("jobs", "Recent jobs", "newest first", table("jobs", ["Job", "Repository", "Labels", "Label set", "Status", "Runner", "Updated"], rows));
}

function sweepsSection(s: StatusSnapshot): string {
  const sweeps: SweepActionRecord[] = Array.isArray(s.sweeps) ? s.sweeps : [];
  if (sweeps.length === 0) return section("sweeps", "Sweeper actions", "", empty("Nothing swept.", "The sweeper has found nothing to clean up or recover since start."));
  const rows = sweeps.map(
    (a) =>
      `<tr><td class="nowrap">${time(a.at, s.now)}</td>` +
      `<td>${badge(a.kind, "quiet")}${a.dryRun ? ` ${badge("dry run", "wait")}` : ""}</td>` +
      `<td class="mono wrap">${esc(a.target)}</td>` +
      `<td class="wrap">${esc(truncate(String(a.reason ?? ""), MESSAGE_MAX))}</td></tr>`,
  );
  return section("sweeps", "Sweeper actions", "most recent first", table("sweeps", ["When", "Action", "Target", "Reason"], rows));
}

function errorsSection(s: StatusSnapshot, byId: Map<number, JobRow>): string {
  const errors: ErrorRecord[] = Array.isArray(s.errors) ? s.errors : [];
  if (errors.length === 0) return section("errors", "Recent errors", "", empty("No errors.", "Failed applies, boots and sweeper problems would be listed here."));
  const rows = errors.map(
    (e) =>
      `<tr><td class="nowrap">${time(e.at, s.now)}</td>` +
      `<td>${e.runner ? `<span class="mono">${esc(e.runner)}</span>` : dash}</td>` +
      `<td>${jobRef(s, e.job, byId)}</td>` +
      `<td class="wrap"><span class="err msg" title="${esc(e.message)}">${esc(truncate(String(e.message ?? ""), MESSAGE_MAX))}</span></td></tr>`,
  );
  return section("errors", "Recent errors", "most recent first", table("errors", ["When", "Runner", "Job", "Message"], rows));
}

function countsSection(s: StatusSnapshot): string {
  const by = s.counts?.runnersByState ?? {};
  const states = [...STATE_ORDER, ...Object.keys(by).filter((k) => !STATE_ORDER.includes(k)).sort()];
  const lanes = Object.values(s.lanes ?? {});
  const cloning = lanes.reduce((n, l) => n + (Number(l.running) || 0), 0);
  const waiting = lanes.reduce((n, l) => n + (Number(l.waiting) || 0), 0);
  const errors = Array.isArray(s.errors) ? s.errors.length : 0;
  const card = (label: string, value: string | number, sub: string, tone = "") =>
    `<div class="card${tone ? ` card-${tone}` : ""}"><div class="card-value">${esc(value)}</div><div class="card-label">${esc(label)}</div><div class="card-sub">${esc(sub)}</div></div>`;
  const stateChips = states
    .map((st) => {
      const n = Number(by[st] ?? 0) || 0;
      return `<span class="state-count${n ? "" : " zero"}">${badge(st, stateTone(st))}<span class="count">${esc(n)}</span></span>`;
    })
    .join("");
  return (
    `<section id="counts" aria-label="Counts"><div class="cards">` +
    card("queued jobs", s.counts?.queuedJobs ?? 0, "waiting for a runner of ours", (s.counts?.queuedJobs ?? 0) > 0 ? "wait" : "") +
    card("live runners", s.counts?.liveRunners ?? 0, "requested … destroying", (s.counts?.liveRunners ?? 0) > 0 ? "run" : "") +
    card("cloning", cloning, `${waiting} waiting in the clone lanes`) +
    card("recent errors", errors, errors ? "see below" : "all quiet", errors ? "bad" : "") +
    `</div><div class="states" aria-label="Runners by state">${stateChips}</div></section>`
  );
}

const CSS = `
:root{--bg:#f6f7f9;--panel:#fff;--fg:#1f2328;--muted:#6a737d;--line:#e3e6ea;--head:#f0f2f5;--link:#0b5cad;--banner:#fff4d6;--banner-line:#e8c26b;--err:#a4262c}
@media (prefers-color-scheme:dark){:root{--bg:#14171b;--panel:#1c2026;--fg:#e3e6ea;--muted:#9aa3ad;--line:#2d333b;--head:#22272e;--link:#6cb6ff;--banner:#3a2f12;--banner-line:#8a6d1f;--err:#ff8b8b}}
*{box-sizing:border-box}
html{background:var(--bg)}
body{margin:0;color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;-webkit-font-smoothing:antialiased}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px}
.strong{font-weight:600}.muted{color:var(--muted)}.small{font-size:12px}.nowrap{white-space:nowrap}
a{color:var(--link);text-decoration:none}a:hover{text-decoration:underline}
header{background:var(--panel);border-bottom:1px solid var(--line)}
.bar{max-width:1240px;margin:0 auto;padding:14px 20px;display:flex;flex-wrap:wrap;align-items:baseline;gap:6px 18px}
.brand{font-size:18px;font-weight:650;margin:0;letter-spacing:-.01em}
.meta{color:var(--muted);display:flex;flex-wrap:wrap;gap:4px 16px;min-width:0}
.meta b{color:var(--fg);font-weight:600}
.banner{background:var(--banner);border-bottom:1px solid var(--banner-line)}
.banner .bar{padding:10px 20px;display:block}
main{max-width:1240px;margin:0 auto;padding:18px 20px 40px}
section{margin:0 0 22px}
h2{font-size:15px;font-weight:650;margin:0 0 8px}
h2 .note{font-weight:400;color:var(--muted);font-size:13px;margin-left:6px}
.cards{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:12px;margin-bottom:10px}
.card{background:var(--panel);border:1px solid var(--line);border-left:4px solid var(--line);border-radius:8px;padding:10px 14px}
.card-wait{border-left-color:#d4a72c}.card-run{border-left-color:#3b82c4}.card-bad{border-left-color:#cf4a4a}
.card-value{font-size:26px;font-weight:650;line-height:1.1;font-variant-numeric:tabular-nums}
.card-label{font-weight:600;margin-top:2px}.card-sub{color:var(--muted);font-size:12px}
.states{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center;padding:2px 2px 0}
.state-count{display:inline-flex;align-items:center;gap:5px}
.state-count .count{font-variant-numeric:tabular-nums;font-weight:600}
.state-count.zero{opacity:.45}
.table-wrap{background:var(--panel);border:1px solid var(--line);border-radius:8px;overflow-x:auto}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:baseline}
th{background:var(--head);font-size:12px;font-weight:600;color:var(--muted);white-space:nowrap}
tbody tr:last-child td{border-bottom:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.wrap-lanes{width:fit-content;max-width:100%}table.lanes{min-width:560px}
table.lanes td.num,table.lanes th.num{text-align:left}
td.wrap{overflow-wrap:anywhere;word-break:break-word}
td{overflow-wrap:anywhere}
table.runners td:nth-child(8){max-width:320px}
table.errors td:nth-child(4){width:70%}
table.sweeps td:nth-child(4){width:55%}
tr.state-gone td,tr.state-failed td{background:color-mix(in srgb,var(--head) 45%,transparent)}
.err{color:var(--err)}
.msg{white-space:pre-wrap}
.badge{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:600;line-height:18px;white-space:nowrap;border:1px solid transparent}
.tone-requested{background:#eef0f3;color:#57606a;border-color:#d5d9de}
.tone-provisioning{background:#e6f0fb;color:#1c5fa8;border-color:#bcd6f2}
.tone-booting{background:#ece9fb;color:#5a3fb8;border-color:#d2c9f3}
.tone-idle{background:#e3f5f3;color:#1a7a70;border-color:#b5e2dc}
.tone-busy,.tone-run{background:#dcecfc;color:#0b55a3;border-color:#a9cdf2}
.tone-done,.tone-ok{background:#e4f5e7;color:#1f7a34;border-color:#b7e0c0}
.tone-destroying,.tone-wait{background:#fdf3d8;color:#8a5a00;border-color:#efd592}
.tone-failed,.tone-bad{background:#fde7e7;color:#b42323;border-color:#f3baba}
.tone-gone,.tone-quiet,.tone-unknown{background:#f1f2f4;color:#6a737d;border-color:#e0e3e7}
@media (prefers-color-scheme:dark){
.tone-requested,.tone-gone,.tone-quiet,.tone-unknown{background:rgba(139,148,158,.14);color:#adb5bd;border-color:rgba(139,148,158,.35)}
.tone-provisioning,.tone-busy,.tone-run{background:rgba(56,139,253,.16);color:#79b8ff;border-color:rgba(56,139,253,.4)}
.tone-booting{background:rgba(150,120,250,.16);color:#b8a4ff;border-color:rgba(150,120,250,.4)}
.tone-idle{background:rgba(45,180,160,.16);color:#6fd6c4;border-color:rgba(45,180,160,.4)}
.tone-done,.tone-ok{background:rgba(63,185,80,.16);color:#7ee08f;border-color:rgba(63,185,80,.4)}
.tone-destroying,.tone-wait{background:rgba(210,153,34,.16);color:#e3b341;border-color:rgba(210,153,34,.4)}
.tone-failed,.tone-bad{background:rgba(248,81,73,.16);color:#ff8e87;border-color:rgba(248,81,73,.4)}}
.chips{display:inline-flex;flex-wrap:wrap;gap:3px}
.chip{display:inline-block;padding:0 6px;border-radius:4px;background:var(--head);border:1px solid var(--line);font-size:12px;line-height:18px;overflow-wrap:anywhere}
.empty{background:var(--panel);border:1px dashed var(--line);border-radius:8px;padding:14px 16px;display:flex;flex-direction:column;gap:2px}
.empty strong{font-weight:600}.empty span{color:var(--muted);font-size:13px}
footer{color:var(--muted);font-size:12px;margin-top:8px}
@media (max-width:900px){.cards{grid-template-columns:repeat(2,minmax(0,1fr))}}
`;

const CSS_HASH = createHash("sha256").update(CSS).digest("base64");

/**
 * The page's own Content-Security-Policy (also sent as a `<meta>`): nothing but the page's one stylesheet.
 * frame-ancestors cannot be set from a `<meta>`: the admin server sends it as a header.
 */
export const STATUS_PAGE_CSP = `default-src 'none'; style-src 'sha256-${CSS_HASH}'; img-src data:; base-uri 'none'; form-action 'none'`;

/** The status page for one snapshot: a complete HTML document. */
export function renderStatusPage(s: StatusSnapshot): string {
  const byId = new Map<number, JobRow>();
  for (const j of Array.isArray(s.jobs) ? s.jobs : []) byId.set(j.jobId, j);
  const uptime = formatDuration(s.now - s.startedAt);
  const queued = s.counts?.queuedJobs ?? 0;
  const live = s.counts?.liveRunners ?? 0;
  const title = `${s.draining ? "[draining] " : ""}pve-runners — ${queued} queued, ${live} live`;
  const banner = s.draining
    ? `<div class="banner" role="status"><div class="bar"><strong>Draining.</strong> No new runners are made; running ones finish their jobs. <span class="muted">Resume with <span class="mono">pve-runners resume</span>.</span></div></div>`
    : "";
  const stale = (s.runnerFreshness?.templates ?? []).filter((t) => t.level === "warning" || t.level === "expired");
  const staleBanner = stale.length
    ? `<div class="banner" role="status"><div class="bar"><strong>Rebuild the template.</strong> ${stale.map((t) => `${esc(t.template)}: runner ${esc(t.version)}, ${esc(freshnessText(t))}`).join("; ")} before GitHub stops queueing jobs to it. <span class="muted">See Templates below; <span class="mono">pve-runners template deploy</span>.</span></div></div>`
    : "";
  let github = "";
  try {
    github = new URL(s.githubBaseUrl).host;
  } catch {
    github = String(s.githubBaseUrl ?? "");
  }
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${esc(STATUS_PAGE_CSP)}">
<meta http-equiv="refresh" content="${STATUS_PAGE_REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="color-scheme" content="light dark">
<link rel="icon" href="data:,">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<header><div class="bar">
<h1 class="brand">pve-runners</h1>
<div class="meta">
<span>version <b>${esc(s.version)}</b></span>
<span>up <b>${time(s.startedAt, s.now, uptime)}</b></span>
<span>GitHub <b>${esc(github)}</b></span>
<span>${s.draining ? badge("draining", "wait") : badge("accepting jobs", "ok")}</span>
</div>
</div></header>
${banner}${staleBanner}
<main>
${countsSection(s)}
${runnersSection(s, byId)}
${lanesSection(s)}
${templatesSection(s)}
${jobsSection(s)}
${sweepsSection(s)}
${errorsSection(s, byId)}
<footer>Snapshot taken ${time(s.now, s.now, isoOf(s.now)?.replace("T", " ").replace(/\.\d+Z$/, " UTC") ?? "—")}; this page reloads every ${STATUS_PAGE_REFRESH_SECONDS} s. JSON: <span class="mono">/api/status</span>, metrics: <span class="mono">/metrics</span>.</footer>
</main>
</body>
</html>
`;
}
