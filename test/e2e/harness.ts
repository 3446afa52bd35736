// Starts the stand-in world and the real listener wired to it, for end-to-end tests.
import { pino, type Logger } from "pino";
import { startWorld, type World, type WorldInstallationSpec, type WorldOptions } from "../../sim/world.js";
import { startService, type Service, type ServiceOverrides } from "../../listener/app/service.js";
import type { Config } from "../../listener/app/config.js";
import type { TokenDef } from "../../sim/pve/index.js";

export const quietLogger = () => pino({ level: process.env.LOG_LEVEL ?? "silent" });

export interface E2E {
  world: World;
  service: Service;
  /** Restarts the listener on the same port and state dir (a crash or an upgrade). */
  restart(opts?: { beforeStart?: () => Promise<void> }): Promise<void>;
  stop(): Promise<void>;
}

export interface E2EOptions {
  timeScale?: number;
  configPatch?: (c: Record<string, any>) => void;
  overrides?: ServiceOverrides;
  listenerToken?: TokenDef;
  logger?: Logger;
  /** The simulated cluster: nodes, templates, latencies, guest timings. */
  pve?: Pick<WorldOptions, "nodes" | "templates" | "latencyMs" | "guest">;
  /** The fake GitHub's App installations (default: acme and solo; the allowlist stays acme + solo/dotfiles). */
  installations?: WorldInstallationSpec[];
}

export async function startE2E(o: E2EOptions = {}): Promise<E2E> {
  const logger = o.logger ?? quietLogger();
  const world = await startWorld({ timeScale: o.timeScale ?? 0.02, logger, configPatch: o.configPatch, listenerToken: o.listenerToken, installations: o.installations, ...o.pve });
  const start = (config: Config) =>
    startService(config, world.secrets, logger.child({ part: "listener" }), { helperEnv: world.helperEnv, terraformEnv: world.terraformEnv, onlinePollMs: 100, retryBackoffMs: 100, githubThrottle: false, ...o.overrides });
  const e: E2E = {
    world,
    service: await start(world.config),
    async restart(r = {}) {
      const port = Number(new URL(e.service.url).port);
      await e.service.stop();
      await r.beforeStart?.();
      e.service = await start({ ...world.config, listener: { ...world.config.listener, port } });
    },
    async stop() {
      await e.service.stop();
      await world.stop();
    },
  };
  world.github.setWebhook(e.service.url + world.config.github.webhookPath, world.secrets.webhookSecret);
  return e;
}

export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 60_000, everyMs = 100): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const LIVE = ["requested", "provisioning", "booting", "idle", "busy", "done", "destroying"] as const;

/** Everything settled: jobs completed, no live runner, no container, no registration. */
export async function settled(e: E2E, jobIds: number[], timeoutMs = 90_000): Promise<void> {
  await waitFor(
    "jobs completed and runners gone",
    () => {
      const jobs = e.world.github.jobs().filter((j) => jobIds.includes(j.id));
      return jobs.length === jobIds.length && jobs.every((j) => j.status === "completed") && e.service.store.runners([...LIVE]).length === 0;
    },
    timeoutMs,
  );
}

export async function containersLeft(e: E2E): Promise<number[]> {
  const { SIM_TOKENS, SIM_NODE } = await import("../../sim/pve/index.js");
  const res = await fetch(`${e.world.pve.url}/api2/json/nodes/${SIM_NODE}/lxc`, { headers: { authorization: `PVEAPIToken=${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}` } });
  const body = (await res.json()) as { data: Array<{ vmid: number; template?: number }> };
  return body.data.filter((c) => !c.template).map((c) => c.vmid);
}

export function registrationsLeft(e: E2E): string[] {
  return e.world.github.runners().filter((r) => !r.removedAt).map((r) => r.name);
}
