// `pve-runners check`: everything `serve` needs, checked before it is needed, one line per check.
// Config and secret files (as serve reads them), terraform, Proxmox (the token, the nodes, the
// templates, the token's privileges as PVE itself computes them), and the GitHub App (its key, its
// installations and the permissions they grant). Nothing is changed anywhere; no secret is printed.
import { createPrivateKey } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, loadConfig, type Config, type Secrets } from "../listener/app/config.js";
import { GitHubAdapter, type Scope } from "../listener/adapters/github/github.js";
import { templateCopies, type TemplateCopy } from "../listener/lifecycle/placement.js";
import { Store } from "../listener/store/store.js";
import { storeSnapshot } from "../listener/store/store-snapshot.js";
import { followReplacements } from "../listener/templates/template-rotation.js";
import { ProxmoxApi, ProxmoxError } from "../listener/adapters/proxmox/proxmox.js";
import { Terraform } from "../listener/adapters/terraform/terraform.js";
import { pino } from "pino";
import { plural } from "./text.js";

export interface CheckResult {
  ok: boolean;
  /** A passing check with something the operator may want to change (printed with "!"). */
  warn?: boolean;
  what: string;
  detail: string;
  /** How to make a failing (or warned) check pass. */
  fix?: string;
}

/**
 * The privileges the runners token needs where the runners live (README step 3: role PVERunners on
 * /pool/<pool>), and SDN.Use on the CI bridge. pveum-setup.sh grants exactly these.
 */
export const RUNNER_PRIVILEGES = [
  "VM.Clone",
  "VM.Allocate",
  "VM.PowerMgmt",
  "VM.Config.Network",
  "VM.Config.CPU",
  "VM.Config.Memory",
  "VM.Config.Options",
  "VM.Audit",
  "Datastore.AllocateSpace",
] as const;
export const BRIDGE_PRIVILEGES = ["SDN.Use"] as const;

/** What each runner scope needs from the App's installation (systemd/github-app-manifest.json). */
export function requiredAppPermissions(runnerScope: "repo" | "org"): Record<string, "read" | "write"> {
  return {
    ...(runnerScope === "repo" ? { administration: "write" } : { organization_self_hosted_runners: "write" }),
    actions: "read",
    checks: "write",
    metadata: "read",
  } as Record<string, "read" | "write">;
}

const grants = (have: string | undefined, need: "read" | "write") => have === "write" || (need === "read" && have === "read");

export interface PreflightOptions {
  /** For `${VAR}` in the config's paths (CREDENTIALS_DIRECTORY). */
  env?: NodeJS.ProcessEnv;
  /** The simulator's http PVE, exempt from the https rule (as for serve). */
  simulatorPveEndpoint?: string;
}

/** Runs every check in order and reports each as it completes. */
export async function preflight(configPath: string, o: PreflightOptions, report: (r: CheckResult) => void): Promise<void> {
  let loaded: { config: Config; secrets: Secrets };
  try {
    loaded = loadConfig(configPath, { env: o.env, simulatorPveEndpoint: o.simulatorPveEndpoint });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) report({ ok: false, what: "config", detail: p, fix: "see docs/config.md" });
    return;
  }
  const { config, secrets } = loaded;
  const templates = activeCopies(config);
  report({ ok: true, what: "config", detail: `${configPath} is valid: ${plural(config.labelSets.length, "label set")}, ${plural(templates.length, "template copy", "template copies")}` });
  secretLines(config, secrets).forEach(report);
  report(await terraformLine(config));
  await proxmoxChecks(config, secrets, templates, report);
  await githubChecks(config, secrets, report);
}

function secretLines(config: Config, secrets: Secrets): CheckResult[] {
  const key = createPrivateKey(secrets.githubAppPrivateKey);
  const bits = key.asymmetricKeyDetails?.modulusLength;
  const out: CheckResult[] = [
    { ok: true, what: "github.privateKeyFile", detail: `${key.asymmetricKeyType?.toUpperCase()} private key${bits ? `, ${bits} bits` : ""}` },
    { ok: true, what: "github.webhookSecretFile", detail: `${secrets.webhookSecret.length} characters` },
    // The token id is no secret (it shows in every task log); the part after '=' is.
    { ok: true, what: "proxmox.tokenFile", detail: `token ${secrets.pveApiToken.split("=")[0]}` },
  ];
  if (config.admin.enabled && secrets.adminToken !== undefined) out.push({ ok: true, what: "admin.tokenFile", detail: `${secrets.adminToken.length} characters` });
  return out;
}

/** `terraform version` through the adapter serve uses: as root, the binary and its CLI config are checked first. */
async function terraformLine(config: Config): Promise<CheckResult> {
  const terraform = new Terraform({
    binary: config.terraform.binary,
    cliConfigFile: config.terraform.cliConfigFile,
    sharedInitDir: join(config.stateDir, "terraform-init"),
    logger: pino({ level: "silent" }),
  });
  try {
    const v = await terraform.version();
    return { ok: true, what: "terraform", detail: `${v.engine === "tofu" ? "OpenTofu" : "Terraform"} v${v.version} (${config.terraform.binary})` };
  } catch (err) {
    const detail = (err as Error).message.split("\n")[0];
    // The adapter's own messages name the fix already (not found: set terraform.binary; as root: who owns what).
    return { ok: false, what: "terraform", detail, fix: /terraform\.binary|root/.test(detail) ? undefined : "install terraform ≥ 1.5 or tofu, or set terraform.binary" };
  }
}

async function proxmoxChecks(config: Config, secrets: Secrets, templates: TemplateCopy[], report: (r: CheckResult) => void): Promise<void> {
  const p = config.proxmox;
  const pve = new ProxmoxApi({ endpoint: p.endpoint, token: secrets.pveApiToken, insecure: p.insecure, logger: pino({ level: "silent" }), requestTimeoutMs: 15_000 });
  try {
    const v = await pve.request<{ version: string; release?: string }>("GET", "/version");
    report({ ok: true, what: "proxmox", detail: `Proxmox VE ${v.version} at ${p.endpoint} accepts the token` });
  } catch (err) {
    const e = err as ProxmoxError;
    report({
      ok: false,
      what: "proxmox",
      detail: e.message,
      fix: e.status === 401 ? "the token was refused: check proxmox.tokenFile and that the token exists (pveum user token list <user>)" : `check proxmox.endpoint (${p.endpoint}) and that this host reaches it`,
    });
    return; // nothing else can be asked
  }

  // Nodes: every one the config names must be a member and online.
  const wanted = [...new Set([p.node, ...templates.map((c) => c.node), ...templates.map((c) => c.sourceNode), ...p.nodes.map((n) => n.name)])];
  try {
    const nodes = await pve.request<Array<{ node: string; status: string }>>("GET", "/nodes");
    for (const name of wanted) {
      const n = nodes.find((x) => x.node === name);
      if (!n) report({ ok: false, what: `node ${name}`, detail: `not in the cluster (nodes: ${nodes.map((x) => x.node).join(", ")})`, fix: "fix the node name in the config" });
      else if (n.status !== "online") report({ ok: false, what: `node ${name}`, detail: n.status, fix: "bring the node online (or take it out of the config)" });
      else report({ ok: true, what: `node ${name}`, detail: "online" });
    }
  } catch (err) {
    report({ ok: false, what: "nodes", detail: (err as Error).message });
  }

  // Templates: each copy a template, unprivileged, that the token may clone.
  for (const c of templates) {
    const what = `template ${c.sourceNode}/${c.vmid}`;
    try {
      const conf = await pve.request<Record<string, string | number>>("GET", `/nodes/${c.sourceNode}/lxc/${c.vmid}/config`);
      if (Number(conf.template ?? 0) !== 1) report({ ok: false, what, detail: `CT ${c.vmid} is not a template`, fix: `build it with pve-runners template deploy (or pct template ${c.vmid})` });
      else if (Number(conf.unprivileged ?? 0) !== 1) report({ ok: false, what, detail: `CT ${c.vmid} is privileged`, fix: "runners run untrusted jobs: build an unprivileged template (pve-runners template deploy)" });
      else report({ ok: true, what, detail: `an unprivileged template${conf.hostname ? ` (${conf.hostname})` : ""}` });
    } catch (err) {
      const e = err as ProxmoxError;
      const fix =
        e.status === 403
          ? // PVE checks the privilege before the CT's existence: either may be the cause.
            `there is no CT ${c.vmid} on ${c.sourceNode}, or it is not in pool ${p.pool ?? "<pool>"}: build it (pve-runners template deploy), or fix its vmid/node, or put it in the pool (pveum-setup --template-vmid ${c.vmid})`
          : /does not exist/.test(e.message)
            ? `no CT ${c.vmid} on ${c.sourceNode}: build it (pve-runners template deploy) or fix the template's vmid/node`
            : undefined;
      report({ ok: false, what, detail: e.message, fix });
    }
  }

  // Privileges, as PVE computes them for this token (GET /access/permissions, path by path).
  const privilegesOn = async (path: string) => {
    const r = await pve.request<Record<string, Record<string, number>>>("GET", "/access/permissions", { path });
    return new Set(Object.keys(r[path] ?? {}));
  };
  const needAt = async (path: string, needed: readonly string[], fix: string) => {
    try {
      const have = await privilegesOn(path);
      const missing = needed.filter((x) => !have.has(x));
      if (missing.length === 0) report({ ok: true, what: `privileges on ${path}`, detail: needed.join(", ") });
      else report({ ok: false, what: `privileges on ${path}`, detail: `the token lacks ${missing.join(", ")}`, fix });
    } catch (err) {
      report({ ok: false, what: `privileges on ${path}`, detail: (err as Error).message });
    }
  };
  const setup = `run pveum-setup (README step 3)${p.pool ? ` for pool ${p.pool}` : ""}`;
  // Without a pool, the grants must reach the runners' vmids some other way: ask for the first one.
  await needAt(p.pool ? `/pool/${p.pool}` : `/vms/${p.vmids.first}`, RUNNER_PRIVILEGES, setup);
  for (const c of templates) await needAt(`/vms/${c.vmid}`, ["VM.Clone", "VM.Audit"], `put template ${c.vmid} in the pool (pveum-setup --template-vmid ${c.vmid})`);
  await needAt(`/sdn/zones/localnetwork/${p.bridge}${p.vlan ? `/${p.vlan}` : ""}`, BRIDGE_PRIVILEGES, `${setup} with --bridge ${p.bridge}`);
  const spread = new Set(templates.map((c) => c.node)).size > 1 || p.nodes.length > 0;
  if (spread) {
    try {
      const have = await privilegesOn("/nodes");
      if (have.has("Sys.Audit")) report({ ok: true, what: "privileges on /nodes", detail: "Sys.Audit: placement sees each node's free memory and CPU" });
      else report({ ok: true, warn: true, what: "privileges on /nodes", detail: "no Sys.Audit: placement uses lanes and caps only", fix: "pveum-setup --placement" });
    } catch (err) {
      report({ ok: false, what: "privileges on /nodes", detail: (err as Error).message });
    }
  }
}

/**
 * The template copies runners clone from now: the config's, followed through the replacements the
 * listener recorded (`template deploy --replace`), read from an in-memory copy of its store.
 */
function activeCopies(config: Config): TemplateCopy[] {
  const configured = templateCopies(config.proxmox);
  const file = join(config.stateDir, "pve-runners.sqlite");
  if (!existsSync(file)) return configured;
  let store: Store | undefined;
  try {
    store = new Store(storeSnapshot(file));
    return followReplacements(configured, store.templateReplacements());
  } catch {
    return configured; // unreadable here (not root, say): the config's copies
  } finally {
    store?.close();
  }
}

/** The web address for an API base: api.github.com → github.com; GHES …/api/v3 → its host. */
export function webBase(apiBase: string): string {
  const u = new URL(apiBase);
  if (u.hostname === "api.github.com") return "https://github.com";
  return `${u.protocol}//${u.host}`;
}

/** The scopes the allow list reaches, as the runner scope registers runners there. */
function scopesToCheck(config: Config): Scope[] {
  const out = new Map<string, Scope>();
  for (const full of config.allow.repos) {
    const [owner, repo] = full.split("/");
    const s: Scope = config.github.runnerScope === "org" ? { kind: "org", org: owner } : { kind: "repo", owner, repo };
    out.set(s.kind === "repo" ? `repo:${full}` : `org:${owner}`, s);
  }
  for (const org of config.allow.orgs) out.set(`org:${org}`, { kind: "org", org });
  return [...out.values()];
}

async function githubChecks(config: Config, secrets: Secrets, report: (r: CheckResult) => void): Promise<void> {
  const gh = new GitHubAdapter({
    appId: config.github.appId,
    privateKey: secrets.githubAppPrivateKey,
    baseUrl: config.github.baseUrl,
    apiVersion: config.github.apiVersion,
    runnerGroupId: config.github.runnerGroupId,
    logger: pino({ level: "silent" }),
    retries: 0,
    throttle: false,
  });
  let slug = "";
  try {
    const app = await gh.appIdentity();
    slug = app.slug;
    report({ ok: true, what: "github app", detail: `${app.name} (id ${app.id}) accepts the private key` });
  } catch (err) {
    const status = (err as { status?: number }).status;
    report({
      ok: false,
      what: "github app",
      detail: `${config.github.baseUrl}/app: ${status ? `${status} ` : ""}${(err as Error).message}`,
      fix: status === 401 ? `github.appId ${config.github.appId} and github.privateKeyFile do not belong together: download a key from the App's settings` : `check github.baseUrl and that this host reaches it`,
    });
    return;
  }
  const need = requiredAppPermissions(config.github.runnerScope);
  const judge = (what: string, g: { id: number; permissions: Record<string, string> }) => {
    const missing = Object.entries(need).filter(([k, lvl]) => !grants(g.permissions[k], lvl));
    if (missing.length === 0) report({ ok: true, what, detail: `installation ${g.id} grants ${Object.entries(need).map(([k, l]) => `${k}: ${l}`).join(", ")}` });
    else
      report({
        ok: false,
        what,
        detail: `installation ${g.id} lacks ${missing.map(([k, l]) => `${k}: ${l}`).join(", ")}`,
        fix: "add the permission in the App's settings (Permissions & events), then accept it in the installation's settings",
      });
  };
  for (const s of scopesToCheck(config)) {
    const what = s.kind === "repo" ? `github ${s.owner}/${s.repo}` : `github org ${s.org}`;
    try {
      judge(what, await gh.installationGrant(s));
    } catch (err) {
      const status = (err as { status?: number }).status;
      const where = s.kind === "repo" ? `${s.owner}/${s.repo}` : s.org;
      report({
        ok: false,
        what,
        detail: status === 404 ? `the App is not installed on ${where}` : (err as Error).message,
        fix: status === 404 ? `install it${slug ? ` (${webBase(config.github.baseUrl)}/apps/${slug}/installations/new)` : ""} on ${where}, or take it off the allow list` : undefined,
      });
    }
  }
  if (config.allow.any) {
    try {
      const all = await gh.installationGrants();
      if (all.length === 0) report({ ok: false, what: "github installations", detail: "allow.any is set but the App is installed nowhere", fix: "install the App on your org or repositories" });
      for (const g of all) judge(`github ${g.account}`, g);
    } catch (err) {
      report({ ok: false, what: "github installations", detail: (err as Error).message });
    }
  }
}
