// Everything the API handlers share, wired once by PveSim.
import type { Logger } from "pino";
import type { SimClock } from "../github/clock.js";
import type { Rng } from "../github/rng.js";
import { NodeUnreachable, die, noQuorum } from "./errors.js";
import type { CloneHold } from "./clone-hold.js";
import type { CloneLog } from "./clone-log.js";
import type { FaultInjector, Latency } from "./faults.js";
import type { GuestTimings } from "./guest.js";
import type { Acl } from "./privileges.js";
import type { StatsDaemon } from "./rrd.js";
import type { PveState, SimNode } from "./state.js";
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
  /** Every clone request and its outcome (tests: overlap per template, refusals). */
  clones: CloneLog;
  /** Clone tasks wait here after their latency while a test holds them. */
  cloneHold: CloneHold;
}

/** Sleeps an operation's simulated latency, with the configured jitter. */
export function delay(ctx: PveContext, ms: number): Promise<void> {
  const j = ctx.latency.jitter;
  const jittered = j > 0 ? ms * (1 - j + 2 * j * ctx.rng()) : ms;
  return ctx.clock.sleep(jittered);
}

/** Simulated seconds elapsed since a Date.now() timestamp. */
export const simSecondsSince = (ctx: PveContext, t: number): number => (Date.now() - t) / Math.max(ctx.clock.scale, 1e-9) / 1000;

/**
 * proxyto => 'node' (pve-manager PVE/HTTPServer.pm rest_handler, after the permission check): an
 * unknown node fails its hostname lookup (PVE::Cluster::remote_node_ip); an offline one cannot be
 * reached (595, see NodeUnreachable). Returns the node that handles the call.
 */
export function checkNode(ctx: PveContext, name: string): SimNode {
  const node = ctx.state.node(name);
  if (!node) throw die(`hostname lookup '${name}' failed - failed to get address info for: ${name}: Name or service not known`);
  if (!node.online) throw new NodeUnreachable(name);
  return node;
}

/** check_cfs_quorum. */
export function checkQuorum(ctx: PveContext): void {
  if (!ctx.state.quorate()) throw noQuorum();
}

/**
 * A node's own simulated time: sleeps `ms` simulated ms, counting only time while the node is
 * online (a task on an offline node stands still), and returns only while it is online.
 */
export async function nodeSleep(ctx: PveContext, node: SimNode, ms: number): Promise<void> {
  let remaining = ms;
  for (;;) {
    await node.untilOnline();
    if (remaining <= 0) return;
    const started = Date.now();
    let cancel = () => {};
    const offline = new Promise<false>((resolve) => {
      cancel = node.onOffline(() => resolve(false));
    });
    const done = await Promise.race([ctx.clock.sleep(remaining).then(() => true as const), offline]);
    cancel();
    if (done) {
      if (node.online) return;
      remaining = 0;
    } else remaining -= (Date.now() - started) / Math.max(ctx.clock.scale, 1e-9);
  }
}

/** `delay` on a node's time: the operation's latency with jitter, paused while the node is offline. */
export function nodeDelay(ctx: PveContext, node: SimNode, ms: number): Promise<void> {
  const j = ctx.latency.jitter;
  return nodeSleep(ctx, node, j > 0 ? ms * (1 - j + 2 * j * ctx.rng()) : ms);
}
