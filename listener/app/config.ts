// The one config file (YAML), validated with a schema at start. Every problem is listed at once,
// with its path, so an operator fixes the file in one go. Secrets never live in the file: it names
// files (systemd credentials, `${CREDENTIALS_DIRECTORY}/…`) and they are read here, once.
import { readFileSync } from "node:fs";
import { createPrivateKey } from "node:crypto";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import cron from "node-cron";
import { z } from "zod";
import { trustProxyProblem, type TrustProxy } from "../http/trust-proxy.js";
import { DEFAULT_NAME_PREFIX, NAME_PREFIX_PATTERN } from "../lifecycle/ownership.js";

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

const seconds = (dflt: number) => z.number().positive().max(86_400 * 7).default(dflt);
const filePath = z.string().min(1, "must name a file");
const labelName = z.string().min(1).max(256).regex(/^[^,\s]+$/, "a label has no spaces or commas");

const LabelSet = z
  .object({
    /** Names the set in logs, metrics and the runner record. */
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,30}$/, "lower-case letters, digits and '-', at most 31"),
    /** What the runner registers with; a job is served when its labels are a subset of these. */
    /** At most 99: the registration adds the controller label, and GitHub takes 100. */
    labels: z.array(labelName).min(1).max(99),
    cores: z.number().int().min(1).max(512).default(2),
    memoryMb: z.number().int().min(256).max(4_194_304).default(2048),
    swapMb: z.number().int().min(0).max(4_194_304).default(512),
    maxRunners: z.number().int().min(1).max(1000).default(4),
    /** Warm pool: stopped, pre-cloned containers kept ready for this set (0 = scale to zero). */
    warm: z.number().int().min(0).max(100).default(0),
  })
  .strict();

/** Runner vmids by default: clear of the low ids PVE suggests first and of templates at 9000 and so on. */
export const DEFAULT_VMIDS = { first: 100_000, last: 199_999 } as const;

/** Where the admin token is by default: the `admin-token` credential of the unit (install.sh makes it). */
export const DEFAULT_ADMIN_TOKEN_FILE = "${CREDENTIALS_DIRECTORY}/admin-token";

const nodeName = z.string().regex(/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,61}[a-zA-Z0-9])?$/, "a PVE node name");

const Schema = z
  .object({
    github: z
      .object({
        appId: z.number().int().positive(),
        privateKeyFile: filePath,
        webhookSecretFile: filePath,
        /** GitHub Enterprise Server: https://ghe.example.com/api/v3 */
        baseUrl: z.url({ protocol: /^https?$/ }).default("https://api.github.com"),
        apiVersion: z.string().regex(/^\d{4}-\d{2}-\d{2}$/).default("2022-11-28"),
        runnerScope: z.enum(["repo", "org"]).default("repo"),
        /** Org runners only: the runner group they join (1 = Default). */
        runnerGroupId: z.number().int().positive().default(1),
        webhookPath: z.string().regex(/^\/[A-Za-z0-9/_-]*$/).default("/webhooks/github"),
      })
      .strict(),
    proxmox: z
      .object({
        endpoint: z.url({ protocol: /^https?$/ }),
        tokenFile: filePath,
        insecure: z.boolean().default(false),
        /** The node this listener runs on: `pct` delivery reaches containers on it only. */
        node: nodeName,
        /** The one template (shorthand for a single copy); or list several under `templates`. */
        templateVmid: z.number().int().min(100).max(999_999_999).optional(),
        /** Where that template lives when it is not on `node` (shared storage). */
        templateNode: nodeName.optional(),
        /** Template copies: each is a clone lane of its own, and runners land on its node. */
        templates: z
          .array(z.object({ node: nodeName, vmid: z.number().int().min(100).max(999_999_999) }).strict())
          .min(1)
          .optional(),
        /** Per-node limits for placement. */
        nodes: z
          .array(
            z
              .object({
                name: nodeName,
                maxRunners: z.number().int().min(0).max(1000).optional(),
                minFreeMemoryMb: z.number().int().min(0).max(4_194_304).default(1024),
              })
              .strict(),
          )
          .default([]),
        bridge: z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, "a Linux bridge name"),
        vlan: z.number().int().min(1).max(4094).optional(),
        pool: z.string().min(1).optional(),
        /** Full clones only (PVE refuses a storage for linked clones). */
        storage: z.string().min(1).optional(),
        linkedClone: z.boolean().default(true),
        /** The vmids runners are cloned to: the listener picks each one here (bpg never does). */
        vmids: z
          .object({ first: z.number().int().min(100).max(999_999_999), last: z.number().int().min(100).max(999_999_999) })
          .strict()
          .default({ first: DEFAULT_VMIDS.first, last: DEFAULT_VMIDS.last }),
      })
      .strict(),
    labelSets: z.array(LabelSet).min(1),
    runners: z
      .object({
        /** Runner names (container hostnames, GitHub runner names) are this plus 8 random hex digits. */
        namePrefix: z
          .string()
          .regex(NAME_PREFIX_PATTERN, "lower-case letters, digits and '-', starting with a letter, at most 32 (a runner name is also a hostname)")
          .default(DEFAULT_NAME_PREFIX),
      })
      .strict()
      .default({ namePrefix: DEFAULT_NAME_PREFIX }),
    allow: z
      .object({
        repos: z.array(z.string().regex(/^[\w.-]+\/[\w.-]+$/, "owner/name")).default([]),
        orgs: z.array(z.string().regex(/^[\w.-]+$/)).default([]),
        /** Serve every repository the App is installed on. Never implied. */
        any: z.boolean().default(false),
      })
      .strict(),
    limits: z
      .object({
        maxRunners: z.number().int().min(1).max(1000).default(4),
        maxRunnersPerRepo: z.number().int().min(1).max(1000).default(4),
      })
      .strict()
      .default({ maxRunners: 4, maxRunnersPerRepo: 4 }),
    timeouts: z
      .object({
        apply: seconds(600),
        destroy: seconds(300),
        /** From the JIT config delivered to online at GitHub. */
        boot: seconds(300),
        /** Online but never given a job: longer than the JIT window GitHub keeps a config valid. */
        idle: seconds(900),
      })
      .strict()
      .default({ apply: 600, destroy: 300, boot: 300, idle: 900 }),
    delivery: z
      .object({
        mode: z.enum(["pct", "env"]).default("pct"),
        /**
         * argv prefix of the JIT delivery helper; vmid and runner name are appended, the config goes
         * on stdin. The default client talks to the socket-activated root unit: sudo cannot work
         * under the listener unit's NoNewPrivileges=yes.
         */
        helper: z.array(z.string().min(1)).min(1).default(["/usr/libexec/pve-runners/deliver-jit-client"]),
      })
      .strict()
      .default({ mode: "pct", helper: ["/usr/libexec/pve-runners/deliver-jit-client"] }),
    listener: z
      .object({
        host: z.string().min(1).default("127.0.0.1"),
        port: z.number().int().min(0).max(65535).default(8790),
        /** The reverse proxy hops whose X-Forwarded-For is believed (listener/http/trust-proxy.ts); never `true`. */
        trustProxy: z
          .union([z.boolean(), z.number(), z.string(), z.array(z.string())])
          .superRefine((v, ctx) => {
            const problem = trustProxyProblem(v);
            if (problem) ctx.addIssue({ code: "custom", message: problem });
          })
          .transform((v) => v as TrustProxy)
          .default(false),
        /** workflow_job payloads are a few KiB; anything far larger is not GitHub. */
        bodyLimitBytes: z.number().int().min(1024).max(26_214_400).default(1_048_576),
        /** Failed webhook requests per address per minute before 429 (GitHub's deliveries never fail). */
        failuresPerMinute: z.number().int().min(1).max(100_000).default(30),
      })
      .strict()
      .default({ host: "127.0.0.1", port: 8790, trustProxy: false, bodyLimitBytes: 1_048_576, failuresPerMinute: 30 }),
    /** The admin listener: status page, /metrics, the API the CLI uses. Never on the webhook port. */
    admin: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().min(1).default("127.0.0.1"),
        port: z.number().int().min(0).max(65535).default(8791),
        /** The admin token, required on every request (loopback too): install.sh writes it, the unit loads it. */
        tokenFile: filePath.default(DEFAULT_ADMIN_TOKEN_FILE),
        /** Host names (besides the bind address and loopback) the admin is reached by, e.g. through a proxy. */
        allowedHosts: z.array(z.string().regex(/^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$|^\[?[0-9A-Fa-f]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*\]?$/, "a host name or address, without port")).default([]),
      })
      .strict()
      .default({ enabled: true, host: "127.0.0.1", port: 8791, tokenFile: DEFAULT_ADMIN_TOKEN_FILE, allowedHosts: [] }),
    stateDir: z.string().min(1).default("/var/lib/pve-runners"),
    terraform: z
      .object({
        binary: z.string().min(1).default("terraform"),
        /** TF_CLI_CONFIG_FILE for terraform, e.g. a filesystem mirror for air-gapped hosts. */
        cliConfigFile: z.string().min(1).optional(),
        /** Applies and destroys at once: each is a terraform and a provider process. */
        maxConcurrent: z.number().int().min(1).max(256).default(8),
        /** terraform and its providers under SCHED_IDLE: throughput work, behind the listener's latency work. */
        schedIdle: z.boolean().default(true),
        /** Niceness of the same processes (what is left to lower them when schedIdle is off). */
        nice: z.number().int().min(0).max(19).default(10),
        /** One long-lived provider process every run attaches to (TF_REATTACH_PROVIDERS), instead of 4-5 starts per run. */
        sharedProvider: z.boolean().default(false),
      })
      .strict()
      .default({ binary: "terraform", maxConcurrent: 8, schedIdle: true, nice: 10, sharedProvider: false }),
    sweeper: z
      .object({
        enabled: z.boolean().default(true),
        schedule: z.string().min(1).default("*/2 * * * *"),
        /** No container lives longer than this, busy or not. */
        hardTtl: seconds(6 * 3600),
        /** A lock held longer than this is reported to the operator, never forced. */
        lockLimit: seconds(1800),
        /** Records and registrations younger than this may be mid-creation: left alone. */
        grace: seconds(120),
        /** On start, failed webhook deliveries this far back are redelivered (GitHub keeps 3 days). */
        lookback: seconds(86_400),
        /** Repositories with a job seen this recently are asked for queued jobs we never heard of. */
        repoWindow: seconds(86_400),
      })
      .strict()
      .default({ enabled: true, schedule: "*/2 * * * *", hardTtl: 6 * 3600, lockLimit: 1800, grace: 120, lookback: 86_400, repoWindow: 86_400 }),
    retention: z
      .object({
        /**
         * Processed deliveries (full payloads), finished jobs and gone/failed runners older than this
         * are deleted (hourly); a replayed webhook body is recognised for as long as it is kept. At
         * least 3: GitHub keeps deliveries (and so can redeliver one, same GUID) for 3 days.
         */
        days: z.number().min(3).max(3650).default(14),
      })
      .strict()
      .default({ days: 14 }),
    /** The templates' runner against actions/runner's releases (listener/templates/runner-freshness.ts). */
    runnerFreshness: z
      .object({
        /** Ask GitHub (github.baseUrl, without credentials) for actions/runner's releases; turn off on GHES, which does not host that repo. */
        enabled: z.boolean().default(true),
        /** Seconds between release checks (default a day; a failed check is retried after at most an hour). */
        checkInterval: z.number().min(60).max(86_400 * 7).default(86_400),
      })
      .strict()
      .default({ enabled: true, checkInterval: 86_400 }),
    log: z
      .object({ level: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).default("info") })
      .strict()
      .default({ level: "info" }),
  })
  .strict()
  .superRefine((c, ctx) => {
    const names = new Set<string>();
    for (const [i, s] of c.labelSets.entries()) {
      if (names.has(s.name)) ctx.addIssue({ code: "custom", path: ["labelSets", i, "name"], message: `duplicate label set name "${s.name}"` });
      names.add(s.name);
    }
    if (!c.allow.any && c.allow.repos.length === 0 && c.allow.orgs.length === 0)
      ctx.addIssue({ code: "custom", path: ["allow"], message: "allows nothing: list repos or orgs (or set any: true)" });
    const p = c.proxmox;
    if (p.templateVmid === undefined && !p.templates) ctx.addIssue({ code: "custom", path: ["proxmox", "templateVmid"], message: "is required (or list template copies under proxmox.templates)" });
    if (p.templateVmid !== undefined && p.templates) ctx.addIssue({ code: "custom", path: ["proxmox", "templates"], message: "replaces templateVmid: give one or the other" });
    if (p.templateNode && p.templates) ctx.addIssue({ code: "custom", path: ["proxmox", "templateNode"], message: "only with templateVmid: a listed template copy names its own node" });
    const vmids = new Set<number>();
    for (const [i, t] of (p.templates ?? []).entries()) {
      // VMIDs are unique in a PVE cluster: the same vmid twice is a typo.
      if (vmids.has(t.vmid)) ctx.addIssue({ code: "custom", path: ["proxmox", "templates", i, "vmid"], message: `template ${t.vmid} is listed twice` });
      vmids.add(t.vmid);
      if (c.delivery.mode === "pct" && t.node !== p.node)
        ctx.addIssue({ code: "custom", path: ["proxmox", "templates", i, "node"], message: `is not ${p.node} (proxmox.node): pct delivery reaches containers on this node only; use delivery.mode: env for other nodes` });
    }
    const limited = new Set<string>();
    for (const [i, n] of p.nodes.entries()) {
      if (limited.has(n.name)) ctx.addIssue({ code: "custom", path: ["proxmox", "nodes", i, "name"], message: `node ${n.name} is listed twice` });
      limited.add(n.name);
    }
    if (c.proxmox.linkedClone && c.proxmox.storage)
      ctx.addIssue({ code: "custom", path: ["proxmox", "storage"], message: "only for full clones (linkedClone: false): PVE refuses a storage for linked clones" });
    if (c.admin.enabled && c.listener.port !== 0 && c.admin.host === c.listener.host && c.admin.port === c.listener.port)
      ctx.addIssue({ code: "custom", path: ["admin", "port"], message: "must differ from listener.port: the webhook port never serves the admin API" });
    if (!cron.validate(c.sweeper.schedule))
      ctx.addIssue({ code: "custom", path: ["sweeper", "schedule"], message: `"${c.sweeper.schedule}" is not a cron expression` });
    const r = p.vmids;
    if (r.first > r.last) ctx.addIssue({ code: "custom", path: ["proxmox", "vmids", "last"], message: `is below first (${r.first})` });
    else if (r.last - r.first + 1 < c.limits.maxRunners)
      ctx.addIssue({ code: "custom", path: ["proxmox", "vmids"], message: `holds ${r.last - r.first + 1} vmids, fewer than limits.maxRunners (${c.limits.maxRunners})` });
    for (const t of [...(p.templateVmid !== undefined ? [p.templateVmid] : []), ...(p.templates ?? []).map((x) => x.vmid)])
      if (t >= r.first && t <= r.last) ctx.addIssue({ code: "custom", path: ["proxmox", "vmids"], message: `${r.first}-${r.last} contains template ${t}: runner vmids must not include a template` });
    if (c.limits.maxRunnersPerRepo > c.limits.maxRunners)
      ctx.addIssue({ code: "custom", path: ["limits", "maxRunnersPerRepo"], message: "is larger than limits.maxRunners" });
  });

export type Config = z.infer<typeof Schema>;
export type LabelSetConfig = Config["labelSets"][number];

/** Read from the files the config names; never logged, never written anywhere by us. */
export interface Secrets {
  readonly githubAppPrivateKey: string;
  readonly webhookSecret: string;
  /** USER@REALM!TOKENID=SECRET */
  readonly pveApiToken: string;
  /** The admin API's token (admin.tokenFile), when the admin listener is enabled. */
  readonly adminToken?: string;
}

export interface ParseOptions {
  /** Relative paths in the file are relative to this (the config file's directory). */
  baseDir: string;
  /** For `${VAR}` in paths, e.g. CREDENTIALS_DIRECTORY from systemd's LoadCredential=. */
  env?: NodeJS.ProcessEnv;
  /** Tests and `stack synth` read no secrets. */
  readSecrets?: boolean;
  /**
   * The simulator's plain-http PVE (sim/pve serves http): the one endpoint exempt from the https
   * rule. Set by the simulator world (sim/world.ts), never by an operator's config.
   */
  simulatorPveEndpoint?: string;
}

/**
 * Environment variable through which the simulator world hands `simulatorPveEndpoint` to a listener
 * it runs as its own process (sim/fault-run.ts). Exempts only that exact URL.
 */
export const SIMULATOR_PVE_ENV = "PVE_RUNNERS_SIMULATOR_PVE_URL";

/**
 * bpg refuses anything but https ("you must specify a secure endpoint…", NewConnection in
 * proxmox/api/client.go) and pveproxy serves nothing else: one clear error, at load, for the
 * listener's own calls and the clone gate's upstream as much as for terraform.
 */
function checkPveEndpoint(endpoint: string, o: ParseOptions, problems: string[]): void {
  if (new URL(endpoint).protocol === "https:") return;
  if (o.simulatorPveEndpoint !== undefined && o.simulatorPveEndpoint === endpoint) return;
  problems.push(`proxmox.endpoint: must be https:// (${endpoint}): PVE serves its API on https://HOST:8006/ only, and bpg refuses anything else`);
}

function issuePath(path: ReadonlyArray<PropertyKey>): string {
  return path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("").replace(/^\./, "") || "(top level)";
}

/** Expands `${VAR}` from env and resolves against baseDir; an unset variable is a problem, not "". */
function expandPath(p: string, o: ParseOptions, problems: string[], where: string): string {
  const expanded = p.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (m, name: string) => {
    const v = (o.env ?? process.env)[name];
    // Without secrets to read (stack synth, template synth) an unset variable is left as written.
    if (v === undefined && o.readSecrets === false) return m;
    if (v === undefined) problems.push(`${where}: \${${name}} is not set (run under systemd with LoadCredential=, or set it)`);
    return v ?? "";
  });
  return isAbsolute(expanded) ? expanded : resolve(o.baseDir, expanded);
}

/** A PEM that looks right but does not parse (truncated, edited): named here, not at the first JWT. */
function pemProblem(pem: string): string | null {
  try {
    const key = createPrivateKey(pem);
    return key.asymmetricKeyType === "rsa" ? null : `holds an ${key.asymmetricKeyType?.toUpperCase()} key, not RSA: GitHub Apps sign with RSA (download the key from the App's settings)`;
  } catch {
    return "is not a readable PEM private key (truncated or edited?): download a new one from the App's settings";
  }
}

function readSecret(path: string, where: string, problems: string[], check: (v: string) => string | null): string {
  let v = "";
  try {
    v = readFileSync(path, "utf8").trim();
  } catch (err) {
    problems.push(`${where}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    return "";
  }
  // The message names the file, never the content.
  const bad = v ? check(v) : "is empty";
  if (bad) problems.push(`${where}: ${path} ${bad}`);
  return v;
}

export function parseConfig(text: string, o: ParseOptions): { config: Config; secrets: Secrets } {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError([`not valid YAML: ${(err as Error).message.split("\n")[0]}`]);
  }
  const parsed = Schema.safeParse(raw ?? {});
  if (!parsed.success) throw new ConfigError(parsed.error.issues.map((i) => `${issuePath(i.path)}: ${i.message}`));
  const c = parsed.data;
  const problems: string[] = [];
  // Commands that read no secrets (stack synth, admin) connect to no PVE.
  if (o.readSecrets !== false) checkPveEndpoint(c.proxmox.endpoint, o, problems);
  c.github.privateKeyFile = expandPath(c.github.privateKeyFile, o, problems, "github.privateKeyFile");
  c.github.webhookSecretFile = expandPath(c.github.webhookSecretFile, o, problems, "github.webhookSecretFile");
  c.proxmox.tokenFile = expandPath(c.proxmox.tokenFile, o, problems, "proxmox.tokenFile");
  c.stateDir = expandPath(c.stateDir, o, problems, "stateDir");
  if (c.admin.enabled) c.admin.tokenFile = expandPath(c.admin.tokenFile, o, problems, "admin.tokenFile");
  if (c.terraform.cliConfigFile) c.terraform.cliConfigFile = expandPath(c.terraform.cliConfigFile, o, problems, "terraform.cliConfigFile");
  c.github.baseUrl = c.github.baseUrl.replace(/\/+$/, "");

  let secrets: Secrets = { githubAppPrivateKey: "", webhookSecret: "", pveApiToken: "" };
  if (o.readSecrets !== false && problems.length === 0) {
    secrets = {
      githubAppPrivateKey: readSecret(c.github.privateKeyFile, "github.privateKeyFile", problems, (v) =>
        /^-----BEGIN (RSA )?PRIVATE KEY-----/.test(v) ? pemProblem(v) : "is not a PEM private key (download it from the App's settings)",
      ),
      webhookSecret: readSecret(c.github.webhookSecretFile, "github.webhookSecretFile", problems, (v) =>
        v.length >= 16 ? null : "holds a secret shorter than 16 characters: use a random one",
      ),
      pveApiToken: readSecret(c.proxmox.tokenFile, "proxmox.tokenFile", problems, (v) =>
        /^[^@\s]+@[^!\s]+![^=\s]+=\S+$/.test(v) ? null : "is not USER@REALM!TOKENID=SECRET",
      ),
      ...(c.admin.enabled
        ? { adminToken: readSecret(c.admin.tokenFile, "admin.tokenFile", problems, (v) => (v.length >= 24 ? null : "holds a token shorter than 24 characters: use a random one")) }
        : {}),
    };
  }
  if (problems.length) throw new ConfigError(problems);
  return { config: c, secrets };
}

/** For commands: a config problem ends the process with every problem listed and exit status 2. */
export function orExit<T>(path: string, load: () => T): T {
  try {
    return load();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`pve-runners: ${path} is not valid:\n${err.problems.map((p) => `  - ${p}`).join("\n")}\n`);
      process.exit(2);
    }
    throw err;
  }
}

export function loadConfig(path: string, o: Omit<ParseOptions, "baseDir"> = {}): { config: Config; secrets: Secrets } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError([`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`]);
  }
  return parseConfig(text, { ...o, baseDir: dirname(resolve(path)) });
}
