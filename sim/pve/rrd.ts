// pvestatd: every sample interval each node records its own status, its storages' and its guests'
// into the RRD (pmxcfs status.c), and /nodes, /cluster/resources and /pools read from there
// (PVE/API2Tools.pm extract_node_stats / extract_vm_stats / extract_storage_stats). So they lag:
// a new guest is "unknown" until the first sample, a started or stopped one keeps its old status
// until the next. An offline node sends nothing; pmxcfs drops RRD entries not updated for 5 minutes
// (rrd_entry_is_old), after which its guests are "unknown" and its stats gone.
import type { SimClock } from "../github/clock.js";
import { nodeUsage, type Container, type PveState, type SimNode, type Storage } from "./state.js";

export type RrdSample = Record<string, unknown>;

export interface NodeSample {
  uptime: number;
  level: string;
  maxcpu: number;
  cpu: number;
  maxmem: number;
  mem: number;
  maxdisk: number;
  disk: number;
}

export interface StorageSample {
  maxdisk: number;
  disk: number;
}

interface Entry<T> {
  /** Date.now() of the sample. */
  at: number;
  data: T;
}

export interface StatsSources {
  vmstatus(ct: Container): Record<string, unknown>;
  /** Storage use in bytes. */
  used(s: Storage): number;
  /** The node's uptime in seconds now. */
  uptime(node: SimNode): number;
  /** Simulated ms after which an entry is dropped (pmxcfs: 5 min). */
  expireMs(): number;
}

export class StatsDaemon {
  private readonly vms = new Map<number, Entry<RrdSample>>();
  private readonly nodes = new Map<string, Entry<NodeSample>>();
  private readonly storages = new Map<string, Entry<StorageSample>>();
  private timer?: NodeJS.Timeout;
  private intervalMs = 0;

  constructor(
    private readonly state: PveState,
    private readonly clock: SimClock,
    private readonly src: StatsSources,
  ) {}

  /** (Re)starts sampling every `intervalMs` simulated ms. */
  start(intervalMs: number): void {
    this.intervalMs = intervalMs;
    if (this.timer) clearInterval(this.timer);
    this.timer = setInterval(() => this.sample(), Math.max(1, this.clock.scaled(intervalMs)));
    this.timer.unref();
  }

  /** pvestatd has been running on every online node since boot: their own and storage data exist. */
  seedNodes(): void {
    for (const node of this.state.nodes.values()) if (node.online) this.sampleHost(node, Date.now());
  }

  /** After a time-scale change the interval is recomputed. */
  rescale(): void {
    if (this.timer) this.start(this.intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One pvestatd pass on every online node. */
  sample(): void {
    const at = Date.now();
    for (const node of this.state.nodes.values()) {
      if (!node.online) continue;
      for (const ct of this.state.containersOn(node.name)) this.vms.set(ct.vmid, { at, data: this.src.vmstatus(ct) });
      this.sampleHost(node, at);
    }
  }

  private sampleHost(node: SimNode, at: number): void {
    const running = this.state.containersOn(node.name).filter((c) => c.running);
    const { cpu, mem } = nodeUsage(node, running);
    this.nodes.set(node.name, {
      at,
      data: { uptime: this.src.uptime(node), level: "", maxcpu: node.cpus, cpu, maxmem: node.memory, mem, maxdisk: 100 * 1024 ** 3, disk: 12 * 1024 ** 3 },
    });
    for (const s of node.storages.values()) this.storages.set(`${node.name}/${s.id}`, { at, data: { maxdisk: s.total, disk: this.src.used(s) } });
  }

  /** A destroyed guest's RRD data is no longer reported. */
  forget(vmid: number): void {
    this.vms.delete(vmid);
  }

  /** The guest's last sample, unless pmxcfs has dropped it. */
  get(vmid: number): RrdSample | undefined {
    return this.fresh(this.vms.get(vmid));
  }

  node(name: string): NodeSample | undefined {
    return this.fresh(this.nodes.get(name));
  }

  storage(node: string, sid: string): StorageSample | undefined {
    return this.fresh(this.storages.get(`${node}/${sid}`));
  }

  private fresh<T>(e: Entry<T> | undefined): T | undefined {
    if (!e) return undefined;
    const ageMs = (Date.now() - e.at) / Math.max(this.clock.scale, 1e-9);
    return ageMs > this.src.expireMs() ? undefined : e.data;
  }
}
