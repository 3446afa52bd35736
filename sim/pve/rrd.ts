// pvestatd: every sample interval it records each guest's status into the RRD, and
// /cluster/resources reads from there (PVE/API2Tools.pm extract_vm_stats). So resources lag:
// a new guest is "unknown" until the first sample, and a started or stopped one keeps its old
// status until the next.
import type { SimClock } from "../github/clock.js";
import type { PveState } from "./state.js";

export type RrdSample = Record<string, unknown>;

export class StatsDaemon {
  private readonly samples = new Map<number, RrdSample>();
  private timer?: NodeJS.Timeout;
  private intervalMs = 0;

  constructor(
    private readonly state: PveState,
    private readonly clock: SimClock,
    private readonly vmstatus: (vmid: number) => Record<string, unknown> | undefined,
  ) {}

  /** (Re)starts sampling every `intervalMs` simulated ms. */
  start(intervalMs: number): void {
    this.intervalMs = intervalMs;
    if (this.timer) clearInterval(this.timer);
    this.timer = setInterval(() => this.sample(), Math.max(1, this.clock.scaled(intervalMs)));
    this.timer.unref();
  }

  /** After a time-scale change the interval is recomputed. */
  rescale(): void {
    if (this.timer) this.start(this.intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One pvestatd pass. */
  sample(): void {
    for (const vmid of this.state.containers.keys()) {
      const s = this.vmstatus(vmid);
      if (s) this.samples.set(vmid, s);
    }
  }

  /** A destroyed guest's RRD data is no longer reported. */
  forget(vmid: number): void {
    this.samples.delete(vmid);
  }

  get(vmid: number): RrdSample | undefined {
    return this.samples.get(vmid);
  }
}
