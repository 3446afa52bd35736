// `pve-runners status|runners|jobs|drain|resume`: the admin API of a running listener, as tables
// (or --json). The address and token come from the same config file the listener runs with.
import { Command } from "commander";
import { readFileSync } from "node:fs";
import { loadConfig, orExit } from "../listener/app/config.js";
import type { StatusSnapshot } from "../listener/http/status.js";
import { RETIREMENT_REASONS, type JobRow, type RunnerRow } from "../listener/store/store.js";

export interface Target {
  url: string;
  token: string;
}

/** Where the CLI finds the admin token when neither --token-file nor the config says otherwise. */
export const ADMIN_TOKEN_FILE_ENV = "PVE_RUNNERS_ADMIN_TOKEN_FILE";

export interface TargetOptions {
  config: string;
  url?: string;
  tokenFile?: string;
}

/**
 * The admin API's address and token. The token file: --token-file, else $PVE_RUNNERS_ADMIN_TOKEN_FILE,
 * else admin.tokenFile of the config (its ${CREDENTIALS_DIRECTORY} is /etc/pve-runners/credentials,
 * where install.sh writes admin-token, root-only).
 */
export function targetOf(o: TargetOptions): Target {
  // --url replaces the config: with it and a token file the config is never read (it may not exist).
  const explicitFile = o.tokenFile ?? process.env[ADMIN_TOKEN_FILE_ENV];
  const config = o.url && explicitFile ? undefined : orExit(o.config, () => loadConfig(o.config, { readSecrets: false, env: { CREDENTIALS_DIRECTORY: "/etc/pve-runners/credentials", ...process.env } })).config;
  const file = explicitFile ?? config!.admin.tokenFile;
  let token = "";
  try {
    token = readFileSync(file, "utf8").trim();
  } catch (err) {
    process.stderr.write(`pve-runners: cannot read the admin token ${file} (${(err as NodeJS.ErrnoException).code}): run as root, or point --token-file or ${ADMIN_TOKEN_FILE_ENV} at a copy you can read\n`);
    process.exit(2);
  }
  if (!token) {
    process.stderr.write(`pve-runners: the admin token file ${file} is empty\n`);
    process.exit(2);
  }
  if (o.url) return { url: o.url.replace(/\/+$/, ""), token };
  const host = config!.admin.host.includes(":") ? `[${config!.admin.host}]` : config!.admin.host;
  return { url: `http://${host}:${config!.admin.port}`, token };
}

/**
 * One admin API request: the one place the token is added. A POST carries a JSON body (the admin
 * refuses any other: a cross-site form cannot send JSON).
 */
export async function call<T>(t: Target, method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
  let res: Response;
  const headers: Record<string, string> = { authorization: `Bearer ${t.token}` };
  if (method === "POST") headers["content-type"] = "application/json";
  try {
    res = await fetch(t.url + path, { method, headers, body: method === "POST" ? JSON.stringify(body ?? {}) : undefined, signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    process.stderr.write(`pve-runners: the listener's admin API at ${t.url} does not answer (${(err as Error).cause ?? (err as Error).message}): is pve-runners running?\n`);
    process.exit(1);
  }
  const parsed = (await res.json().catch(() => ({}))) as T & { error?: string };
  if (!res.ok) {
    process.stderr.write(`pve-runners: ${method} ${path}: ${res.status} ${parsed.error ?? res.statusText}\n`);
    process.exit(1);
  }
  return parsed;
}

/**
 * One call to the running listener's admin API with the address and token from the config (as the
 * admin commands make it): for `sweep` run as root, which must not run terraform in the listener's
 * state itself. Exits with one line when the listener does not answer or refuses.
 */
export function adminRequest<T>(o: TargetOptions, method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
  return call<T>(targetOf(o), method, path, body);
}

const ago = (now: number, at: number) => {
  const s = Math.max(0, Math.round((now - at) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
};

/** A plain aligned table; cells are clipped so one long error cannot wreck it. */
export function table(header: string[], rows: string[][], max = 60): string {
  const clip = (c: string) => (c.length > max ? `${c.slice(0, max - 1)}…` : c);
  const all = [header, ...rows.map((r) => r.map(clip))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : (c ?? "").padEnd(widths[i]))).join("  ").trimEnd()).join("\n") + "\n";
}

export function runnersTable(s: Pick<StatusSnapshot, "now">, runners: RunnerRow[]): string {
  // Why a healthy runner was retired (surplus, idle timeout) is not an error: a column of its own.
  const retired = (r: RunnerRow) => (r.lastError && RETIREMENT_REASONS.includes(r.lastError) ? r.lastError : "");
  return table(
    ["RUNNER", "SET", "STATE", "FOR", "RAN", "CT", "SINCE", "RETIRED", "ERROR"],
    runners.map((r) => [r.name, r.labelSet, r.state, String(r.madeForJob ?? "-"), String(r.jobId ?? "-"), String(r.vmid ?? "-"), ago(s.now, r.stateSince), retired(r) || "-", retired(r) ? "" : (r.lastError ?? "")]),
  );
}

export function jobsTable(jobs: JobRow[]): string {
  return table(
    ["JOB", "REPO", "LABELS", "SET", "STATUS", "RUNNER"],
    jobs.map((j) => [String(j.jobId), j.repo, j.labels.join(","), j.labelSet ?? "(not ours)", j.conclusion ? `${j.status}/${j.conclusion}` : j.status, j.runnerName ?? "-"]),
  );
}

/** The templates' runners: version, the release that superseded it and when, days left before GitHub's 30-day cutoff. */
export function templatesTable(s: StatusSnapshot): string {
  const f = s.runnerFreshness;
  if (!f) return "";
  const head = `runner releases: ${f.latest ? `latest ${f.latest.version} (${new Date(f.latest.publishedAt).toISOString().slice(0, 10)})` : "latest not known yet"}${f.checkedAt ? `, asked ${ago(s.now, f.checkedAt)} ago` : ""}${f.lastError ? `; last check failed: ${f.lastError}` : ""}`;
  const days = (t: NonNullable<StatusSnapshot["runnerFreshness"]>["templates"][number]) =>
    t.level === "unknown" ? "-" : t.level === "current" ? "current" : t.leftMs < 0 ? `PAST (${Math.trunc(-t.leftMs / 86_400_000)}d ago)` : `${t.leftDays}${t.level === "warning" ? " !" : ""}`;
  const rows = f.templates.map((t) => [
    t.template,
    t.version ?? (t.readError ? "unknown (unreadable)" : "unknown (no tag)"),
    t.supersededBy ? `${t.supersededBy.version} ${t.behindDays}d ago` : "-",
    t.cutoffAt === null ? "-" : new Date(t.cutoffAt).toISOString().slice(0, 10),
    days(t),
  ]);
  return `${head}\n${table(["TEMPLATE", "RUNNER", "SUPERSEDED BY", "CUTOFF", "DAYS LEFT"], rows)}`;
}

export function statusText(s: StatusSnapshot): string {
  const states = Object.entries(s.counts.runnersByState).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
  const lanes = Object.entries(s.lanes).map(([k, l]) => `${k}: ${l.running} cloning, ${l.waiting} waiting`).join("; ") || "idle";
  const lines = [
    `pve-runners ${s.version}, up ${ago(s.now, s.startedAt)}${s.draining ? ", DRAINING (no new runners)" : ""}`,
    `jobs queued: ${s.counts.queuedJobs}   live runners: ${s.counts.liveRunners}   all runners since start: ${states}`,
    `clone lanes: ${lanes}`,
    ...(s.runnerFreshness ? ["", templatesTable(s).trimEnd()] : []),
    "",
    runnersTable(s, s.runners.slice(0, 20)).trimEnd(),
  ];
  if (s.errors.length) lines.push("", "recent errors:", ...s.errors.slice(0, 5).map((e) => `  ${ago(s.now, e.at)} ago ${e.runner ?? ""} ${e.message}`.replace(/\s+/g, " ")));
  return lines.join("\n") + "\n";
}

export function registerAdminCommands(program: Command): void {
  const common = (c: Command) =>
    c
      .option("--config <path>", "config file (for the admin address and token)", "/etc/pve-runners/config.yaml")
      .option("--url <url>", "admin API base URL (default: from the config); with --token-file the config is not read")
      .option("--token-file <path>", `the admin token (default: $${ADMIN_TOKEN_FILE_ENV}, else admin.tokenFile of the config)`).option("--json", "print JSON", false);
  const out = (json: boolean, value: unknown, text: () => string) => process.stdout.write(json ? JSON.stringify(value, null, 2) + "\n" : text());

  common(program.command("status").description("what the running listener is doing: counts, lanes, runners, errors")).action(async (o: TargetOptions & { json: boolean }) => {
    const s = await call<StatusSnapshot>(targetOf(o), "GET", "/api/status");
    out(o.json, s, () => statusText(s));
  });
  common(program.command("runners").description("live and recently finished runners")).action(async (o: TargetOptions & { json: boolean }) => {
    const s = await call<StatusSnapshot>(targetOf(o), "GET", "/api/status");
    out(o.json, s.runners, () => runnersTable(s, s.runners));
  });
  common(program.command("jobs").description("recent jobs and what served them")).action(async (o: TargetOptions & { json: boolean }) => {
    const jobs = await call<JobRow[]>(targetOf(o), "GET", "/api/jobs");
    out(o.json, jobs, () => jobsTable(jobs));
  });
  common(program.command("drain").description("stop making runners; those alive finish their jobs (kept across restarts)")).action(async (o: TargetOptions & { json: boolean }) => {
    const r = await call<{ draining: boolean }>(targetOf(o), "POST", "/api/drain");
    out(o.json, r, () => "draining: no new runners until `pve-runners resume`\n");
  });
  common(program.command("resume").description("make runners again after a drain")).action(async (o: TargetOptions & { json: boolean }) => {
    const r = await call<{ draining: boolean }>(targetOf(o), "POST", "/api/resume");
    out(o.json, r, () => "resumed: taking jobs again\n");
  });
}
