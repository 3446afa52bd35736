// Everything a route handler needs, wired once by GitHubSim.
import type { Logger } from "pino";
import type { Authenticator, Caller } from "./auth.js";
import type { SimClock } from "./clock.js";
import type { FaultInjector } from "./faults.js";
import type { Shapes } from "./payloads.js";
import type { RateLimiter } from "./ratelimit.js";
import type { RunnerReleases } from "./releases.js";
import type { RunnerRegistry } from "./runners.js";
import type { Scheduler } from "./scheduler.js";
import type { WebhookDispatcher } from "./webhooks.js";
import type { SimWorld } from "./world.js";

export interface SimContext {
  appId: number;
  world: SimWorld;
  auth: Authenticator;
  limiter: RateLimiter;
  faults: FaultInjector;
  runners: RunnerRegistry;
  scheduler: Scheduler;
  webhooks: WebhookDispatcher;
  shapes: Shapes;
  /** actions/runner's public releases. */
  releases: RunnerReleases;
  clock: SimClock;
  log: Logger;
  /** The sim's base URL (known once listening). */
  url(): string;
  /** True once stop() began: long-polls answer at once. */
  stopped(): boolean;
}

/** Set on res.locals by the auth middleware. */
export type MaybeCaller = Caller | { kind: "anonymous"; rateKey: string };
