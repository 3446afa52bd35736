// The whole stand-in world in one process: Proxmox VE simulator, fake GitHub, the provider
// stand-in in a terraform filesystem mirror, a `pct` stand-in for the JIT delivery helper, and a
// config file that points the real listener at all of it. Used by `pve-runners demo` and the e2e tests.
import { randomBytes } from "node:crypto";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { PveSim, SIM_BRIDGE, SIM_NODE, SIM_POOL, SIM_TEMPLATE_VMID, SIM_TOKENS, SIM_VLAN, type SimNodeSpec, type SimTemplateSpec, type TokenDef, type PveSimOptions } from "./pve/index.js";
import { GitHubSim } from "./github/index.js";
import type { WorldInstallationSpec } from "./github/world.js";
import { installProviderMirror } from "./provider/install.js";
import { installPctShim } from "./pct/install.js";
import { parseConfig, SIMULATOR_PVE_ENV, type Config, type Secrets } from "../listener/app/config.js";

export type { WorldInstallationSpec } from "./github/world.js";
export { SIM_NODE, SIM_TEMPLATE_VMID, SIM_TOKENS, type SimNodeSpec, type SimTemplateSpec, type SimNodeInfo, type SimContainer } from "./pve/index.js";

/** The shortest unused-JIT expiry observed at GitHub, in real time (docs/sim.md). */
const MIN_JIT_EXPIRY_MS = 120_000;

export const DEMO_LABEL_SETS = [
  { name: "linux-small", labels: ["self-hosted", "linux", "x64"], cores: 2, memoryMb: 2048, swapMb: 512, maxRunners: 6 },
  { name: "linux-large", labels: ["self-hosted", "linux", "x64", "large"], cores: 8, memoryMb: 16384, swapMb: 0, maxRunners: 4 },
  { name: "linux-docker", labels: ["self-hosted", "linux", "x64", "docker"], cores: 4, memoryMb: 4096, swapMb: 1024, maxRunners: 4 },
];

export interface WorldOptions {
  /** Scales every simulated latency and duration (PVE tasks, guest boot, job run time). */
  timeScale?: number;
  logger: Logger;
  /** Extra YAML merged over the generated config (as text appended under the given top-level keys). */
  configPatch?: (cfg: Record<string, unknown>) => void;
  /** Keep the temp dir (debugging). */
  keep?: boolean;
  /** The listener's PVE token (default: SIM_TOKENS.runners, the documented least privilege); added to the simulator if new. */
  listenerToken?: TokenDef;
  /** The PVE cluster's nodes (default: one, SIM_NODE). The `pct` stand-in acts on the first: the listener's host. */
  nodes?: SimNodeSpec[];
  /** Runner templates (default: SIM_TEMPLATE_VMID on SIM_NODE); the generated config names only SIM_TEMPLATE_VMID. */
  templates?: SimTemplateSpec[];
  /** The fake GitHub's App installations (account, type, repos, ids); default DEFAULT_INSTALLATIONS (acme, solo). The generated config's allow list stays acme + solo/dotfiles: patch it for others. */
  installations?: WorldInstallationSpec[];
  /** Simulated latencies and guest timings (benchmarks set realistic ones). */
  latencyMs?: PveSimOptions["latencyMs"];
  guest?: PveSimOptions["guest"];
}

export interface World {
  readonly dir: string;
  readonly pve: PveSim;
  readonly github: GitHubSim;
  readonly config: Config;
  readonly secrets: Secrets;
  readonly configFile: string;
  /** Environment for the JIT delivery helper: the `pct` stand-in first on PATH. */
  readonly helperEnv: NodeJS.ProcessEnv;
  /** Extra environment for terraform: the provider stand-in polls the simulator quickly. */
  readonly terraformEnv: Record<string, string>;
  /**
   * Environment for the listener as its own process (`pve-runners serve --config configFile`):
   * helperEnv, the credentials directory and the provider's knobs (terraformEnv), which serve
   * passes on to terraform (PVE_SIM_PROVIDER_* only, see listener/adapters/terraform/terraform.ts).
   */
  readonly serveEnv: NodeJS.ProcessEnv;
  /** Stops the stand-ins and removes the temp dir, unless asked to keep it (debugging a failure). */
  stop(opts?: { keep?: boolean }): Promise<void>;
}

const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), import.meta.url.endsWith(".ts") ? ".." : "../..");

export async function startWorld(o: WorldOptions): Promise<World> {
  const dir = await mkdtemp(join(tmpdir(), "pve-runners-world-"));
  const timeScale = o.timeScale ?? 0.05;
  const listenerToken = o.listenerToken ?? SIM_TOKENS.runners;
  const extraTokens = Object.values(SIM_TOKENS).some((t) => t.id === listenerToken.id) ? [] : [listenerToken];
  const pve = new PveSim({ timeScale, logger: o.logger.child({ sim: "pve" }), tokens: extraTokens, nodes: o.nodes, templates: o.templates, latencyMs: o.latencyMs, guest: o.guest });
  // GitHub's unused-JIT expiry is a wall-clock fact (observed 2 min to an hour), not a simulated
  // duration: scaled down to 6 s it expired registrations whose delivery (the pct stand-in, a Node
  // process, on a busy 2-core machine) took real seconds. Scaled, but never below 2 minutes.
  const jitExpiryMs = Math.max(5 * 60_000, MIN_JIT_EXPIRY_MS / timeScale);
  const github = new GitHubSim({ timeScale, jitExpiryMs, logger: o.logger.child({ sim: "github" }), world: { installations: o.installations } });
  const pveUrl = await pve.start(0, "127.0.0.1");
  const ghUrl = await github.start(0, "127.0.0.1");

  const { cliConfigFile } = await installProviderMirror(join(dir, "terraform"));
  const binDir = join(dir, "bin");
  // Real `pct` only sees the containers of the node it runs on: the listener's (the first) node.
  await installPctShim(binDir, { url: pveUrl, token: `${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}`, node: o.nodes?.[0]?.name ?? SIM_NODE });

  const secretsDir = join(dir, "credentials");
  await mkdir(secretsDir, { mode: 0o700 });
  const webhookSecret = `whsec-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
  await writeFile(join(secretsDir, "github-app.pem"), github.appPrivateKeyPem, { mode: 0o600 });
  await writeFile(join(secretsDir, "webhook-secret"), webhookSecret + "\n", { mode: 0o600 });
  await writeFile(join(secretsDir, "pve-token"), `${listenerToken.id}=${listenerToken.secret}\n`, { mode: 0o600 });
  // The admin API's token (admin.tokenFile defaults to ${CREDENTIALS_DIRECTORY}/admin-token).
  await writeFile(join(secretsDir, "admin-token"), `admin-${randomBytes(24).toString("base64url")}\n`, { mode: 0o600 });

  const cfg: Record<string, any> = {
    github: {
      appId: github.appId,
      privateKeyFile: "${CREDENTIALS_DIRECTORY}/github-app.pem",
      webhookSecretFile: "${CREDENTIALS_DIRECTORY}/webhook-secret",
      baseUrl: ghUrl,
      runnerScope: "repo",
    },
    proxmox: {
      endpoint: pveUrl + "/",
      tokenFile: "${CREDENTIALS_DIRECTORY}/pve-token",
      node: SIM_NODE,
      templateVmid: SIM_TEMPLATE_VMID,
      bridge: SIM_BRIDGE,
      vlan: SIM_VLAN,
      pool: SIM_POOL,
      linkedClone: true,
    },
    labelSets: DEMO_LABEL_SETS,
    allow: { orgs: ["acme"], repos: ["solo/dotfiles"] },
    limits: { maxRunners: 10, maxRunnersPerRepo: 8 },
    timeouts: { apply: 120, destroy: 120, boot: 60, idle: 400 },
    delivery: { mode: "pct", helper: [join(repoRoot, "systemd", "deliver-jit")] },
    listener: { host: "127.0.0.1", port: 0 },
    admin: { host: "127.0.0.1", port: 0 },
    stateDir: join(dir, "state"),
    terraform: { binary: "terraform", cliConfigFile },
    sweeper: { enabled: false },
  };
  o.configPatch?.(cfg);
  const { stringify } = await import("yaml");
  const configFile = join(dir, "config.yaml");
  const text = stringify(cfg);
  await writeFile(configFile, text, { mode: 0o600 });
  // The simulator serves plain http: exempt from the https rule, for this world only.
  const { config, secrets } = parseConfig(text, { baseDir: dir, env: { ...process.env, CREDENTIALS_DIRECTORY: secretsDir }, simulatorPveEndpoint: pveUrl + "/" });

  const helperEnv: NodeJS.ProcessEnv = { ...process.env, PATH: `${binDir}:${process.env.PATH ?? "/usr/bin:/bin"}` };
  // bpg polls tasks and statuses every second (proxmox/nodes/tasks/tasks.go WaitForTask:
  // retrylib.Delay(time.Second); proxmox/retry/retry.go NewPollOperation: baseDelay 1 s), scaled
  // like every other duration; never below 50 ms, so small time scales do not spin the provider.
  const terraformEnv = { PVE_SIM_PROVIDER_POLL_MS: String(Math.max(50, Math.round(1000 * timeScale))) };
  // The simulator's plain-http PVE is exempt from the https rule for this listener only.
  const serveEnv: NodeJS.ProcessEnv = { ...helperEnv, ...terraformEnv, CREDENTIALS_DIRECTORY: secretsDir, [SIMULATOR_PVE_ENV]: config.proxmox.endpoint };
  return {
    dir,
    pve,
    github,
    config,
    secrets,
    configFile,
    helperEnv,
    terraformEnv,
    serveEnv,
    async stop(s = {}) {
      await Promise.allSettled([pve.stop(), github.stop()]);
      if (!(s.keep ?? o.keep)) await rm(dir, { recursive: true, force: true });
    },
  };
}
