// Latency and fault injection, set through POST /_sim/latency and /_sim/faults (or in-process).
// Every duration is simulated milliseconds, multiplied by the time scale when slept.
import { z } from "zod";
import type { Rng } from "../github/rng.js";

export const OPS = ["clone", "start", "stop", "shutdown", "destroy", "config", "api", "guest"] as const;
/** Operations whose failures are simulated (api: any /api2 request; guest: a booting guest). */
export type Op = (typeof OPS)[number];

/** Realistic defaults (docs/sim.md, "latency"); tests scale them down with the time scale. */
export const DEFAULT_LATENCY = {
  /** Any API request (pveproxy → pvedaemon round trip). */
  api: 15,
  /** Linked clone of a template: a thin snapshot plus config work. */
  cloneLinked: 5_000,
  /** Full clone: allocate, format and rsync the root file system. */
  cloneFull: 30_000,
  start: 2_000,
  stop: 1_000,
  shutdown: 3_000,
  destroy: 1_500,
  /** download-url: fetching a CT image to the node's storage. */
  download: 20_000,
  /** POST /lxc with ostemplate: allocate the root volume, unpack the image. */
  createCt: 15_000,
  /** PUT /config (synchronous). */
  config: 200,
  /** pct exec (lxc-attach). */
  exec: 150,
  /** flock timeout on a config or storage lock before "got timeout". */
  lockTimeout: 10_000,
  /** pveproxy delays every failed login by 3 s. */
  authFailure: 3_000,
  /** pvestatd's sample interval: /cluster/resources lags by up to this much. */
  statsInterval: 10_000,
  /** pmxcfs drops RRD data not updated for 5 min: an offline node's guests and stats vanish then. */
  rrdExpire: 300_000,
  /** pveproxy's connect to an offline node: the ARP timeout, then 595 "No route to host". */
  unreachable: 3_000,
  /** ± this fraction of random jitter on the operation latencies above (not on timeouts). */
  jitter: 0.1,
};
export type Latency = typeof DEFAULT_LATENCY;

export const latencySchema = z.object(Object.fromEntries(Object.keys(DEFAULT_LATENCY).map((k) => [k, z.number().min(0)])) as Record<keyof Latency, z.ZodNumber>).partial();

const rate = z.number().min(0).max(1);
export const faultsBodySchema = z.object({
  /** Per operation: the task (or the call, for config) fails with a realistic error. */
  errorRate: z.object({ clone: rate, start: rate, stop: rate, shutdown: rate, destroy: rate, config: rate }).partial().optional(),
  /** Lock contention: storage lock timeouts for clone/destroy, config flock timeouts for config/start/stop/shutdown. */
  lockRate: rate.optional(),
  /**
   * A clone call is refused at once with 500 "CT is locked (disk)", as if another process held the
   * source's lock (AbstractConfig::set_lock → check_lock, pve-guest-common src/PVE/AbstractConfig.pm).
   */
  cloneLockedRate: rate.optional(),
  /** 596 "Connection timed out" from pveproxy, on API requests matching `paths` (a regex, default all). */
  timeoutRate: rate.optional(),
  paths: z.string().optional(),
  /** A booting guest never connects its runner (boot-timeout tests). */
  guestNeverConnectsRate: rate.optional(),
  /**
   * Deterministic: the next `count` `op`s fail. `error`: "lock" (lock contention), "596" (api only),
   * or a message (a clone's gets the "clone failed: " prefix PVE adds). Default: the op's realistic error.
   */
  next: z.object({ op: z.enum(OPS), count: z.number().int().min(1), error: z.string().optional() }).optional(),
});
export type FaultsBody = z.infer<typeof faultsBodySchema>;

export type Fault = { kind: "error"; message?: string } | { kind: "lock" } | { kind: "timeout" } | { kind: "hang" };

export class FaultInjector {
  private errorRate: Partial<Record<Op, number>> = {};
  private lockRate = 0;
  private cloneLockedRate = 0;
  private timeoutRate = 0;
  private guestNeverConnectsRate = 0;
  private pathRe: RegExp | null = null;
  private readonly next = new Map<Op, { remaining: number; error?: string }>();

  /**
   * `cloneRng` draws only the clone-locked answers, so the n-th clone's answer depends on the seed
   * alone, not on how many other random draws (jitter, MACs) happened in between.
   */
  constructor(
    private readonly rng: Rng,
    private readonly cloneRng: Rng = rng,
  ) {}

  apply(body: FaultsBody): void {
    if (body.errorRate) this.errorRate = { ...this.errorRate, ...body.errorRate };
    if (body.lockRate !== undefined) this.lockRate = body.lockRate;
    if (body.cloneLockedRate !== undefined) this.cloneLockedRate = body.cloneLockedRate;
    if (body.timeoutRate !== undefined) this.timeoutRate = body.timeoutRate;
    if (body.guestNeverConnectsRate !== undefined) this.guestNeverConnectsRate = body.guestNeverConnectsRate;
    if (body.paths !== undefined) this.pathRe = body.paths ? new RegExp(body.paths) : null;
    if (body.next) this.next.set(body.next.op, { remaining: body.next.count, error: body.next.error });
  }

  clear(): void {
    this.errorRate = {};
    this.lockRate = this.cloneLockedRate = this.timeoutRate = this.guestNeverConnectsRate = 0;
    this.pathRe = null;
    this.next.clear();
  }

  snapshot(): Record<string, unknown> {
    return {
      errorRate: this.errorRate,
      lockRate: this.lockRate,
      cloneLockedRate: this.cloneLockedRate,
      timeoutRate: this.timeoutRate,
      paths: this.pathRe?.source ?? null,
      guestNeverConnectsRate: this.guestNeverConnectsRate,
      next: Object.fromEntries(this.next),
    };
  }

  /** The fault for one API request, if any (596 from pveproxy). */
  forRequest(path: string): Fault | null {
    const n = this.takeNext("api");
    if (n) return n.kind === "error" && n.message !== "596" && n.message !== undefined ? n : { kind: "timeout" };
    if (this.pathRe && !this.pathRe.test(path)) return null;
    return this.timeoutRate > 0 && this.rng() < this.timeoutRate ? { kind: "timeout" } : null;
  }

  /** The fault for one operation, if any. */
  forOp(op: Exclude<Op, "api">): Fault | null {
    const n = this.takeNext(op);
    if (n) return op === "guest" ? { kind: "hang" } : n;
    if (op === "guest") return this.guestNeverConnectsRate > 0 && this.rng() < this.guestNeverConnectsRate ? { kind: "hang" } : null;
    if (this.lockRate > 0 && this.rng() < this.lockRate) return { kind: "lock" };
    const r = this.errorRate[op] ?? 0;
    return r > 0 && this.rng() < r ? { kind: "error" } : null;
  }

  /** Whether this clone call finds its source locked by someone else (seeded). */
  cloneLocked(): boolean {
    return this.cloneLockedRate > 0 && this.cloneRng() < this.cloneLockedRate;
  }

  private takeNext(op: Op): Fault | null {
    const n = this.next.get(op);
    if (!n || n.remaining <= 0) return null;
    if (--n.remaining === 0) this.next.delete(op);
    if (n.error === "lock") return { kind: "lock" };
    return { kind: "error", message: n.error };
  }
}
