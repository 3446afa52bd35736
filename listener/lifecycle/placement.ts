// Placement: which template copy a runner is cloned from, and so which node it runs on. Each copy
// is its own clone lane (only the clone of one template is exclusive on PVE), so spreading runners
// over copies and nodes is what lets a burst go faster than one clone after another.
//
// A copy is eligible when its node is online, under its runner cap, and has the memory for the
// runner beyond the headroom kept for the host; among those, the copy with the fewest clones ahead
// wins, then the node with the most free memory, then the least busy CPU.
import type { Logger } from "pino";
import type { RunnerRow } from "../store/store.js";

export interface TemplateCopy {
  /** Where the runner lands (clones stay on the template's node unless its storage is shared). */
  node: string;
  vmid: number;
  /** The node holding the template. */
  sourceNode: string;
  /** The clone lane: "sourceNode/vmid". */
  key: string;
}

export interface NodeLimit {
  maxRunners?: number;
  /** Memory left free for the host and everything else on it. */
  minFreeMemoryMb: number;
}

/** One node as /cluster/resources?type=node shows it; stats are absent without Sys.Audit or when offline. */
export interface NodeLoad {
  node: string;
  online: boolean;
  maxmem?: number;
  mem?: number;
  maxcpu?: number;
  cpu?: number;
}

export interface PlacementOptions {
  templates: TemplateCopy[];
  limits: Record<string, NodeLimit>;
  /** Reads the nodes' load (GET /cluster/resources?type=node). */
  readNodes: () => Promise<NodeLoad[]>;
  /** How long a reading is reused. PVE's own samples are ~10 s old anyway. */
  maxAgeMs?: number;
  /** Memory of a runner of this label set, in MiB. */
  memoryOf: (labelSet: string) => number;
  logger: Logger;
}

export type PlacementResult = { copy: TemplateCopy } | { wait: string };

const MiB = 1024 * 1024;
/** PVE's samples lag (pvestatd, ~10 s): a runner started this recently may not be in them yet. */
const SAMPLE_LAG_MS = 20_000;

export class Placement {
  private reading: { at: number; loads: Map<string, NodeLoad> | null } | null = null;
  private refreshing: Promise<void> | null = null;
  private warnedNoStats = false;

  constructor(private readonly o: PlacementOptions) {
    if (o.templates.length === 0) throw new Error("placement needs at least one template copy");
  }

  /** Forget the last reading (an apply just failed: a node may have gone down). */
  invalidate(): void {
    this.reading = null;
  }

  /** The node loads, at most maxAgeMs old; null when they cannot be read (placement then uses caps and lanes only). */
  async loads(): Promise<Map<string, NodeLoad> | null> {
    const maxAge = this.o.maxAgeMs ?? 5_000;
    if (this.reading && Date.now() - this.reading.at < maxAge) return this.reading.loads;
    this.refreshing ??= (async () => {
      try {
        const nodes = await this.o.readNodes();
        this.reading = { at: Date.now(), loads: new Map(nodes.map((n) => [n.node, n])) };
        const blind = nodes.filter((n) => n.online && n.maxmem === undefined);
        if (blind.length > 0 && !this.warnedNoStats) {
          this.warnedNoStats = true;
          this.o.logger.warn({ nodes: blind.map((n) => n.node) }, "node memory/CPU not visible (the token lacks Sys.Audit on /nodes): placing by lanes and caps only");
        }
      } catch (err) {
        this.o.logger.warn({ err: err instanceof Error ? err.message : String(err) }, "could not read node loads: placing by lanes and caps only");
        this.reading = { at: Date.now(), loads: null };
      }
    })().finally(() => (this.refreshing = null));
    await this.refreshing;
    return this.reading?.loads ?? null;
  }

  /**
   * Chooses a copy for `runner` given every live runner (with their placements). Synchronous on
   * purpose: the caller records the choice before anything else is placed, so a burst spreads.
   */
  choose(runner: Pick<RunnerRow, "name" | "labelSet">, live: RunnerRow[], loads: Map<string, NodeLoad> | null): PlacementResult {
    const now = Date.now();
    const others = live.filter((r) => r.name !== runner.name);
    const need = this.o.memoryOf(runner.labelSet);
    const reasons: string[] = [];
    let best: { copy: TemplateCopy; ahead: number; free: number; cpu: number } | null = null;
    for (const copy of this.o.templates) {
      const load = loads?.get(copy.node);
      if (loads && !load) {
        reasons.push(`${copy.node}: not in the cluster`);
        continue;
      }
      if (load && !load.online) {
        reasons.push(`${copy.node}: offline`);
        continue;
      }
      const onNode = others.filter((r) => r.node === copy.node);
      const limit = this.o.limits[copy.node];
      if (limit?.maxRunners !== undefined && onNode.length >= limit.maxRunners) {
        reasons.push(`${copy.node}: at its cap of ${limit.maxRunners} runners`);
        continue;
      }
      let free = Number.POSITIVE_INFINITY;
      if (load?.maxmem !== undefined && load.mem !== undefined) {
        // Ours that will soon use memory the sample does not show yet.
        const pending = onNode.filter((r) => r.state === "requested" || r.state === "provisioning" || r.state === "warm" || (r.state === "booting" && now - r.stateSince < SAMPLE_LAG_MS));
        const reserved = pending.reduce((sum, r) => sum + this.o.memoryOf(r.labelSet), 0);
        free = (load.maxmem - load.mem) / MiB - reserved;
        const headroom = limit?.minFreeMemoryMb ?? 1024;
        if (free - headroom < need) {
          reasons.push(`${copy.node}: ${Math.max(0, Math.floor(free))} MiB free, needs ${need} + ${headroom} headroom`);
          continue;
        }
      }
      const ahead = others.filter((r) => r.template === copy.key && r.state === "provisioning").length;
      const cpu = load?.cpu ?? 0;
      if (!best || ahead < best.ahead || (ahead === best.ahead && (free > best.free || (free === best.free && cpu < best.cpu)))) best = { copy, ahead, free, cpu };
    }
    return best ? { copy: best.copy } : { wait: reasons.join("; ") || "no template copy configured" };
  }
}

/** Parses /cluster/resources?type=node rows. */
export function nodeLoads(rows: Array<Record<string, unknown>>): NodeLoad[] {
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
  return rows
    .filter((r) => r.type === "node" && typeof r.node === "string")
    .map((r) => ({ node: r.node as string, online: r.status === "online", maxmem: num(r.maxmem), mem: num(r.mem), maxcpu: num(r.maxcpu), cpu: num(r.cpu) }));
}

/** The template copies a config names: `templates`, or the single `templateVmid` (on `templateNode`, cloned to `node`). */
export function templateCopies(p: { node: string; templateVmid?: number; templateNode?: string; templates?: Array<{ node: string; vmid: number }> }): TemplateCopy[] {
  if (p.templates && p.templates.length > 0) return p.templates.map((t) => ({ node: t.node, vmid: t.vmid, sourceNode: t.node, key: `${t.node}/${t.vmid}` }));
  if (p.templateVmid === undefined) return [];
  const sourceNode = p.templateNode ?? p.node;
  return [{ node: p.node, vmid: p.templateVmid, sourceNode, key: `${sourceNode}/${p.templateVmid}` }];
}
