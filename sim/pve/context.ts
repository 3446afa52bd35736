// Everything the API handlers share, wired once by PveSim.
import type { Logger } from "pino";
import type { SimClock } from "../github/clock.js";
import type { Rng } from "../github/rng.js";
import { die } from "./errors.js";
import type { FaultInjector, Latency } from "./faults.js";
import type { GuestTimings } from "./guest.js";
import type { Acl } from "./privileges.js";
import type { StatsDaemon } from "./rrd.js";
import type { PveState } from "./state.js";
import type { TaskRegistry } from "./tasks.js";

export interface PveContext {
  state: PveState;
  acl: Acl;
  tasks: TaskRegistry;
  faults: FaultInjector;
  clock: SimClock;
  log: Logger;
  rng: Rng;
  /** Mutable: POST /_sim/latency merges into it. */
  latency: Latency;
  guestTimings: GuestTimings;
  stats: StatsDaemon;
}

/** Sleeps an operation's simulated latency, with the configured jitter. */
export function delay(ctx: PveContext, ms: number): Promise<void> {
  const j = ctx.latency.jitter;
  const jittered = j > 0 ? ms * (1 - j + 2 * j * ctx.rng()) : ms;
  return ctx.clock.sleep(jittered);
}

/** A lock wait that runs into its timeout: the full (scaled) timeout, then the error. */
export async function lockTimeout(ctx: PveContext, err: Error): Promise<never> {
  await ctx.clock.sleep(ctx.latency.lockTimeout);
  throw err;
}

/** Simulated seconds elapsed since a Date.now() timestamp. */
export const simSecondsSince = (ctx: PveContext, t: number): number => (Date.now() - t) / Math.max(ctx.clock.scale, 1e-9) / 1000;

/** proxyto => 'node': any node but ours is unknown in this one-node cluster. */
export function checkNode(ctx: PveContext, node: string): void {
  if (node !== ctx.state.node) throw die(`hostname lookup '${node}' failed - failed to get address info for: ${node}: Name or service not known`);
}
