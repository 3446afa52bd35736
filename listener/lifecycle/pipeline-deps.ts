// What the runner lifecycle is configured with (settings) and what it is given to act through
// (deps): the store, the adapters to GitHub, Proxmox and terraform, the JIT delivery, metrics.
// The interfaces name only what the lifecycle uses, so tests can hand it small fakes.
import type { Logger } from "pino";
import type { GitHubAdapter } from "../adapters/github/github.js";
import type { JitDelivery } from "../adapters/jit/jit-delivery.js";
import type { ContainerPresence, RecordedContainer } from "../adapters/proxmox/container-check.js";
import type { Allowlist } from "./allowlist.js";
import type { NodeLimit, NodeLoad, TemplateCopy } from "./placement.js";
import type { Store } from "../store/store.js";
import type { Metrics } from "../metrics/metrics.js";
import type { VmidProbe, VmidRange } from "./vmids.js";

export interface LabelSetSpec {
  name: string;
  labels: string[];
  cores: number;
  memoryMb: number;
  swapMb: number;
  maxRunners: number;
  /** Warm-pool size: stopped, pre-cloned containers kept for this set (0: scale to zero). */
  warm: number;
}

export interface PipelineSettings {
  stateDir: string;
  labelSets: LabelSetSpec[];
  allow: Allowlist;
  runnerScope: "repo" | "org";
  maxRunners: number;
  maxRunnersPerRepo: number;
  proxmox: {
    endpoint: string;
    insecure?: boolean;
    /** The node the listener runs on (pct delivery reaches only its containers). */
    node: string;
    /** Template copies: one clone lane each; placement picks one per runner. */
    templates: TemplateCopy[];
    nodeLimits: Record<string, NodeLimit>;
    bridge: string;
    vlan?: number;
    pool?: string;
    storage?: string;
    linkedClone: boolean;
    /** Where runners' vmids are chosen (proxmox.vmids). */
    vmids: VmidRange;
  };
  timeouts: { applyMs: number; destroyMs: number; bootMs: number; idleMs: number };
  /** Apply attempts per runner before it is given up (each failure is cleaned up by destroy first). */
  applyAttempts: number;
  retryBackoffMs: number;
  /** How often a booting runner is checked for being online at GitHub. */
  onlinePollMs: number;
  /** Runner names are this plus 8 random hex digits (runners.namePrefix; default "runner-"). */
  namePrefix?: string;
}

/** What the pipeline needs from the terraform adapter (listener/adapters/terraform/terraform.ts). */
export interface TerraformLike {
  prepare(stackFile: string): Promise<void>;
  apply(workingDir: string, ctx: { runner: string; lane?: string; slot?: { release(): void }; signal?: AbortSignal; timeoutMs?: number }): Promise<unknown>;
  /** Holds a run slot ahead of apply (optional: fakes run without). */
  reserveSlot?(lane: string | undefined, signal?: AbortSignal, runner?: string): Promise<{ release(): void }>;
  /** Starts the shared provider now, when terraform.sharedProvider is on, instead of at the first apply. */
  startSharedProvider?(): Promise<void>;
  /** `refresh: false`: -refresh=false (the caller has seen the container through the API). */
  destroy(workingDir: string, ctx: { runner: string; signal?: AbortSignal; timeoutMs?: number; refresh?: boolean }): Promise<void>;
  output(workingDir: string): Promise<Record<string, unknown>>;
}

export interface LaneLike {
  run<T>(templateKey: string, runner: string, fn: () => Promise<T>): Promise<T>;
}

export interface PipelineDeps {
  metrics?: Metrics;
  /** Node loads for placement (GET /cluster/resources?type=node); without it placement uses lanes and caps. */
  readNodes?: () => Promise<NodeLoad[]>;
  /**
   * Starts a container (idempotent) through the Proxmox API. When given, the stack only clones and
   * configures, so the clone lane is held for the clone alone; starting runs outside it, in parallel.
   */
  startContainer?: (node: string, vmid: number) => Promise<void>;
  /** What PVE says about vmids in use, for allocation (without it only the store's records count). */
  vmidProbe?: VmidProbe;
  /** Whether a container named like this runner exists on Proxmox (when terraform cannot tell). */
  containerExists?: (runnerName: string) => Promise<boolean>;
  /**
   * Whether the runner's container is at its recorded node and vmid (listener/adapters/proxmox/container-check.ts):
   * before a destroy, to run it without a refresh, or not at all when the container is gone.
   * Without it every destroy refreshes.
   */
  containerPresence?: (r: RecordedContainer) => Promise<ContainerPresence>;
  store: Store;
  github: GitHubAdapter;
  terraform: TerraformLike;
  /**
   * Held around each whole apply. Absent when the clone gate (listener/lifecycle/clone-gate.ts) holds the
   * lane around the clone task alone: the stack then names no endpoint, terraform's environment
   * points at the gate.
   */
  lane?: LaneLike;
  delivery: JitDelivery;
  settings: PipelineSettings;
  logger: Logger;
}
