// The simulated cluster's state: its nodes (online or not, each with its local storages and their
// volumes), the containers (config + runtime, each owned by one node; VMIDs unique cluster-wide),
// pools, and the config flocks. Shapes follow pve-container's vmstatus and the storage layer.
import { createHash } from "node:crypto";
import type { Rng } from "../github/rng.js";
import { configFlockTimeout, configMissing, die } from "./errors.js";
import { FirewallFiles } from "./firewall.js";
import { GuestFs } from "./guest-fs.js";
import { diskSizeBytes, normalizeTags, parseMountpoint } from "./lxc-config.js";
import { runnerVersionTag } from "../../listener/templates/runner-release.js";
import { pinnedRunnerVersion } from "../../stacks/runner-pin.js";
import type { PoolMembers } from "./privileges.js";

export const SIM_NODE = "pve";
export const SIM_TEMPLATE_VMID = 9000;
export const SIM_POOL = "ci";
export const SIM_BRIDGE = "vmbr1";
export const SIM_VLAN = 30;
/** Proxmox's own OUI, used for generated MACs since PVE 8.1. */
const MAC_PREFIX = "BC:24:11";
export const NODE_CPUS = 16;
export const NODE_MEMORY = 128 * 1024 ** 3;
const NODE_NAME = /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/;

/** One cluster node: its name and size (defaults NODE_CPUS, NODE_MEMORY). */
export interface SimNodeSpec {
  name: string;
  cpus?: number;
  memoryBytes?: number;
}

/** A runner template (a copy of the default one) on a node, with that node's local storage. */
export interface SimTemplateSpec {
  node: string;
  vmid: number;
  /**
   * The GitHub Actions runner it was built with, as the template stack tags it (`runner-<version>`):
   * default the version template/provision.sh pins; null for a template without the tag (built
   * before templates were tagged, or by hand).
   */
  runnerVersion?: string | null;
}

export interface Volume {
  /** The volume name inside its storage, e.g. base-9000-disk-0/vm-105-disk-0. */
  volname: string;
  owner: number;
  /** Linked clones: the base volume they depend on. */
  base?: string;
  size: number;
  /** Creation time (epoch seconds), for content listings. */
  ctime?: number;
}

export interface Storage {
  id: string;
  type: "dir" | "lvmthin";
  content: string[];
  shared: boolean;
  total: number;
  volumes: Map<string, Volume>;
}

export interface Pool {
  id: string;
  comment?: string;
  vms: Set<number>;
  storage: Set<string>;
}

/** Something running inside a container that a stop must end. */
export interface GuestHandle {
  abort(reason: string): void;
  describe(): Record<string, unknown>;
}

export interface Container {
  vmid: number;
  /** The node that owns it (its config is nodes/<node>/lxc/<vmid>.conf). */
  node: string;
  /** The config file's keys, as text. */
  conf: Record<string, string>;
  running: boolean;
  startedAt: number | null;
  pid: number | null;
  fs: GuestFs;
  guest: GuestHandle | null;
  /**
   * Created from a CT image (POST /lxc with ostemplate) rather than cloned from a runner template:
   * a plain OS with no runner unit until provision.sh has run in it (sim/pve/provision.ts).
   */
  plainOs?: boolean;
}

/**
 * A cluster node. Storages with the same ids exist on every node (storage.cfg is cluster-wide)
 * but hold node-local volumes. Online or not: an offline node is cut off from the cluster — its
 * API is unreachable, its pvestatd reports nothing, its tasks stand still until it is back.
 */
export class SimNode {
  online = true;
  readonly storages = new Map<string, Storage>();
  private readonly onlineWaiters = new Set<() => void>();
  private readonly offlineListeners = new Set<() => void>();
  private released = false;

  constructor(
    readonly name: string,
    readonly cpus: number,
    readonly memory: number,
    /** Position in the cluster's node list (daemon pids, fingerprints). */
    readonly index: number,
  ) {
    this.storages.set("local", { id: "local", type: "dir", content: ["vztmpl", "snippets", "rootdir", "iso", "backup"], shared: false, total: 100 * 1024 ** 3, volumes: new Map() });
    this.storages.set("local-lvm", { id: "local-lvm", type: "lvmthin", content: ["rootdir", "images"], shared: false, total: 400 * 1024 ** 3, volumes: new Map() });
  }

  /** Returns whether anything changed. */
  setOnline(online: boolean): boolean {
    if (this.online === online) return false;
    this.online = online;
    const fire = online ? this.onlineWaiters : this.offlineListeners;
    const fns = [...fire];
    fire.clear();
    for (const fn of fns) fn();
    return true;
  }

  /** Resolves at once while online (or once the simulator stops), else when the node is back. */
  untilOnline(): Promise<void> {
    if (this.online || this.released) return Promise.resolve();
    return new Promise((resolve) => this.onlineWaiters.add(resolve));
  }

  /** Calls `fn` once when the node next goes offline; returns a cancel function. */
  onOffline(fn: () => void): () => void {
    this.offlineListeners.add(fn);
    return () => this.offlineListeners.delete(fn);
  }

  /** The simulator stops: nothing waits for this node any more. */
  release(): void {
    this.released = true;
    const fns = [...this.onlineWaiters];
    this.onlineWaiters.clear();
    for (const fn of fns) fn();
  }
}

/** A FIFO mutex with a timeout: PVE's flock on /run/lock/lxc/pve-config-<vmid>.lock. */
class Flock {
  private held = false;
  private readonly waiters: Array<() => void> = [];

  acquire(timeoutMs: number, onTimeout: () => Error): Promise<() => void> {
    const release = () => {
      const next = this.waiters.shift();
      if (next) next();
      else this.held = false;
    };
    if (!this.held) {
      this.held = true;
      return Promise.resolve(release);
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        clearTimeout(timer);
        resolve(release);
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(onTimeout());
      }, timeoutMs);
      timer.unref();
      this.waiters.push(grant);
    });
  }
}

export class PveState {
  /** The cluster's nodes, in configuration order. */
  readonly nodes = new Map<string, SimNode>();
  /** Every guest of the cluster (VMIDs are unique cluster-wide, like the vmlist in pmxcfs). */
  readonly containers = new Map<number, Container>();
  readonly pools = new Map<string, Pool>();
  /** /etc/pve/firewall: the guests' <vmid>.fw and cluster.fw. */
  readonly firewall = new FirewallFiles();
  private readonly flocks = new Map<number, Flock>();
  private nextPid = 41000;

  constructor(
    private readonly rng: Rng,
    nodes: readonly SimNodeSpec[] = [{ name: SIM_NODE }],
    templates: readonly SimTemplateSpec[] = [{ node: SIM_NODE, vmid: SIM_TEMPLATE_VMID }],
  ) {
    if (nodes.length === 0) throw new Error("PveSim: at least one node");
    for (const spec of nodes) {
      if (!NODE_NAME.test(spec.name)) throw new Error(`PveSim: bad node name '${spec.name}'`);
      if (this.nodes.has(spec.name)) throw new Error(`PveSim: node '${spec.name}' configured twice`);
      const cpus = spec.cpus ?? NODE_CPUS;
      const memory = spec.memoryBytes ?? NODE_MEMORY;
      if (!Number.isInteger(cpus) || cpus < 1) throw new Error(`PveSim: node '${spec.name}': cpus must be a positive integer`);
      if (!(memory > 0)) throw new Error(`PveSim: node '${spec.name}': memoryBytes must be positive`);
      this.nodes.set(spec.name, new SimNode(spec.name, cpus, memory, this.nodes.size));
    }
    this.pools.set(SIM_POOL, { id: SIM_POOL, comment: "pve-runners", vms: new Set(), storage: new Set(["local-lvm"]) });
    for (const t of templates) {
      if (!this.nodes.has(t.node)) throw new Error(`PveSim: template ${t.vmid} on unknown node '${t.node}'`);
      if (!Number.isInteger(t.vmid) || t.vmid < 100 || t.vmid > 999_999_999) throw new Error(`PveSim: bad template vmid ${t.vmid}`);
      if (this.containers.has(t.vmid)) throw new Error(`PveSim: template vmid ${t.vmid} configured twice`);
      this.createTemplate(t.node, t.vmid, { runnerVersion: t.runnerVersion });
    }
  }

  /**
   * The runner template as the docs set it up: pool member, base volume on the node's local-lvm,
   * tagged with the runner version it carries (null: no version tag). `pool: null` or other `tags`
   * make one that is not ours (tests of what the listener refuses).
   */
  createTemplate(node: string, vmid: number, o: { pool?: string | null; tags?: string; runnerVersion?: string | null } = {}): void {
    if (!this.nodes.has(node)) throw new Error(`PveSim: no node '${node}'`);
    if (this.containers.has(vmid)) throw new Error(`PveSim: CT ${vmid} already exists`);
    const runnerVersion = o.runnerVersion === undefined ? pinnedRunnerVersion() : o.runnerVersion;
    const base = `base-${vmid}-disk-0`;
    const pool = o.pool === undefined ? SIM_POOL : o.pool;
    if (pool !== null) this.pools.get(pool)?.vms.add(vmid);
    this.storage(node, "local-lvm").volumes.set(base, { volname: base, owner: vmid, size: 8 * 1024 ** 3 });
    this.create(node, vmid, {
      arch: "amd64",
      cores: "2",
      description: "pve-runners template: Ubuntu 24.04, docker, actions runner; a unit waits for the JIT config, runs one job, powers off.",
      features: "keyctl=1,nesting=1",
      hostname: "ubuntu-runner-template",
      memory: "2048",
      net0: `name=eth0,bridge=${SIM_BRIDGE},firewall=0,hwaddr=${this.randomMac()},ip=dhcp,tag=${SIM_VLAN},type=veth`,
      ostype: "ubuntu",
      rootfs: `local-lvm:${base},size=8G`,
      swap: "512",
      tags: o.tags ?? normalizeTags(["pve-runners-template", ...(runnerVersion ? [runnerVersionTag(runnerVersion)] : [])].join(";")),
      template: "1",
      unprivileged: "1",
    });
  }

  /** The node whose pveproxy answers the API: the first one online (as behind a load balancer). */
  get entryNode(): SimNode {
    for (const n of this.nodes.values()) if (n.online) return n;
    return this.nodes.values().next().value!;
  }

  node(name: string): SimNode | undefined {
    return this.nodes.get(name);
  }

  /** corosync votes: one per node; quorate with more than half of them online. */
  quorate(): boolean {
    const online = [...this.nodes.values()].filter((n) => n.online).length;
    return online * 2 > this.nodes.size;
  }

  poolMembers(): Iterable<PoolMembers> {
    return this.pools.values();
  }

  /** A guest anywhere in the cluster. */
  get(vmid: number): Container | undefined {
    return this.containers.get(vmid);
  }

  /** A guest of `node` (what a node-local lookup finds). */
  on(node: string, vmid: number): Container | undefined {
    const ct = this.containers.get(vmid);
    return ct?.node === node ? ct : undefined;
  }

  /** The guests of one node. */
  containersOn(node: string): Container[] {
    return [...this.containers.values()].filter((c) => c.node === node);
  }

  /** load_config on `node`: 500 "Configuration file … does not exist" for a vmid it does not own. */
  load(node: string, vmid: number): Container {
    const ct = this.on(node, vmid);
    if (!ct) throw configMissing(node, vmid);
    return ct;
  }

  create(node: string, vmid: number, conf: Record<string, string>): Container {
    const ct: Container = { vmid, node, conf, running: false, startedAt: null, pid: null, fs: new GuestFs(), guest: null };
    this.containers.set(vmid, ct);
    return ct;
  }

  remove(vmid: number): void {
    this.containers.delete(vmid);
    this.flocks.delete(vmid);
    for (const pool of this.pools.values()) pool.vms.delete(vmid);
  }

  poolOf(vmid: number): string | undefined {
    for (const p of this.pools.values()) if (p.vms.has(vmid)) return p.id;
    return undefined;
  }

  /** check_vmid_unused (pve-cluster): the vmlist is cluster-wide. */
  assertUnused(vmid: number): void {
    const ct = this.containers.get(vmid);
    if (ct) throw die(`CT ${vmid} already exists on node '${ct.node}'`);
  }

  nextFreeVmid(): number {
    for (let i = 100; i < 1_000_000; i++) if (!this.containers.has(i)) return i;
    throw die("unable to get any free VMID in range [100, 1000000]");
  }

  randomMac(): string {
    const b = () => Math.floor(this.rng() * 256).toString(16).toUpperCase().padStart(2, "0");
    return `${MAC_PREFIX}:${b()}:${b()}:${b()}`;
  }

  newPid(): number {
    return this.nextPid++;
  }

  /** lock_config: waits for the CT's flock up to `timeoutMs` (real ms, already scaled). */
  flock(vmid: number, timeoutMs: number): Promise<() => void> {
    let f = this.flocks.get(vmid);
    if (!f) this.flocks.set(vmid, (f = new Flock()));
    return f.acquire(timeoutMs, () => configFlockTimeout(vmid));
  }

  /** A storage as `node` sees it (same ids everywhere, node-local volumes). */
  storage(node: string, sid: string): Storage {
    const s = this.nodes.get(node)?.storages.get(sid);
    if (!s) throw die(`storage '${sid}' does not exist`);
    return s;
  }

  /** A new volume for `vmid`: a thin snapshot of `base` (linked clone) or a fresh one (full clone). */
  allocVolume(node: string, sid: string, vmid: number, size: number, base?: { volname: string }): string {
    const s = this.storage(node, sid);
    if (!s.content.includes("rootdir")) throw die(`storage '${sid}' does not support container directories`);
    let n = 0;
    const name = (i: number) => (s.type === "dir" ? `${vmid}/vm-${vmid}-disk-${i}.raw` : `vm-${vmid}-disk-${i}`);
    const taken = (i: number) => [...s.volumes.values()].some((v) => v.volname.endsWith(name(i)));
    while (taken(n)) n++;
    const volname = base ? `${base.volname}/${name(n)}` : name(n);
    s.volumes.set(volname, { volname, owner: vmid, base: base?.volname, size });
    return `${sid}:${volname}`;
  }

  /** vdisk_free: a base volume with linked clones cannot go. Foreign volumes are left alone. */
  freeVolume(node: string, volid: string, vmid: number, warn: (l: string) => void): void {
    const [sid, volname] = splitVolid(volid);
    const s = this.storage(node, sid);
    const v = s.volumes.get(volname);
    if (!v) return;
    if (v.owner !== vmid) {
      warn(`ignore deletion of '${volid}', CT ${vmid} isn't the owner!`);
      return;
    }
    if ([...s.volumes.values()].some((o) => o.base === volname)) throw die(`base volume '${volname}' is still in use by linked clones`);
    s.volumes.delete(volname);
  }

  /** The config digest (SHA1 of the config file), as GET /config returns it. */
  digest(ct: Container): string {
    return createHash("sha1").update(renderConfig(ct.conf)).digest("hex");
  }

  /** vmstatus() for one container: the objects of GET …/lxc and …/status/current. */
  vmstatus(ct: Container, simSecondsSince: (t: number) => number): Record<string, unknown> {
    const c = ct.conf;
    const maxmem = Number(c.memory ?? 512) * 1024 * 1024;
    const rootfs = c.rootfs ? parseMountpoint(c.rootfs) : {};
    const d: Record<string, unknown> = {
      vmid: ct.vmid,
      type: "lxc",
      status: ct.running ? "running" : "stopped",
      name: (c.hostname || `CT${ct.vmid}`).replace(/\s/g, ""),
      cpus: Number(c.cores ?? c.cpulimit ?? 0) || (this.nodes.get(ct.node)?.cpus ?? NODE_CPUS),
      maxmem,
      maxswap: Number(c.swap ?? 0) * 1024 * 1024,
      maxdisk: diskSizeBytes(rootfs.size),
      disk: 0,
      mem: 0,
      swap: 0,
      uptime: 0,
      cpu: 0,
      netin: 0,
      netout: 0,
      diskread: 0,
      diskwrite: 0,
    };
    if (ct.running && ct.startedAt !== null) {
      const up = Math.floor(simSecondsSince(ct.startedAt));
      Object.assign(d, {
        pid: ct.pid,
        uptime: up,
        mem: Math.round(maxmem * 0.18),
        disk: Math.round((d.maxdisk as number) * 0.31),
        cpu: guestCpu(ct),
        netin: 1200 * up,
        netout: 800 * up,
        diskread: 52_000_000,
        diskwrite: 4096 * up,
      });
    }
    if (c.tags !== undefined) d.tags = c.tags;
    if (c.template === "1") d.template = 1;
    if (c.lock) d.lock = c.lock;
    return d;
  }
}

/** A running runner works (a connected runner: its job) or idles; as a fraction of its own cpus. */
const guestCpu = (ct: Container): number => (ct.guest?.describe().phase === "online" ? 0.6 : 0.02);

/**
 * One node's load as pvestatd would record it: host overhead plus its running containers — each
 * counted at its configured `memory` (a CI job fills its cgroup's limit with page cache), and at
 * its cores times its cpu use.
 */
export function nodeUsage(node: SimNode, running: readonly Container[]): { cpu: number; mem: number } {
  let cpu = 0.01;
  let mem = Math.min(6 * 1024 ** 3, node.memory * 0.1);
  for (const ct of running) {
    const cores = Number(ct.conf.cores ?? 0) || node.cpus;
    cpu += (guestCpu(ct) * Math.min(cores, node.cpus)) / node.cpus;
    mem += Number(ct.conf.memory ?? 512) * 1024 * 1024;
  }
  return { cpu: Math.min(1, Math.round(cpu * 10_000) / 10_000), mem: Math.min(node.memory, Math.round(mem)) };
}

export function splitVolid(volid: string): [string, string] {
  const i = volid.indexOf(":");
  return [volid.slice(0, i), volid.slice(i + 1)];
}

/** The config file text: description as comments, then sorted keys; env as lxc.environment.runtime lines. */
export function renderConfig(conf: Record<string, string>): string {
  let raw = (conf.description ?? "")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => `#${encodeURIComponent(l).replace(/%20/g, " ")}\n`)
    .join("");
  for (const k of Object.keys(conf).sort()) {
    if (k === "description" || k === "env") continue;
    raw += `${k}: ${conf[k]}\n`;
  }
  for (const v of (conf.env ?? "").split("\0").filter(Boolean)) raw += `lxc.environment.runtime: ${v}\n`;
  return raw;
}
