// The simulated node's state: containers (config + runtime), pools, storages and their volumes,
// and the node-local config flocks. Shapes follow pve-container's vmstatus and the storage layer.
import { createHash } from "node:crypto";
import type { Rng } from "../github/rng.js";
import { configFlockTimeout, configMissing, die } from "./errors.js";
import { GuestFs } from "./guest-fs.js";
import { diskSizeBytes, parseMountpoint } from "./lxc-config.js";
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

export interface Volume {
  /** The volume name inside its storage, e.g. base-9000-disk-0/vm-105-disk-0. */
  volname: string;
  owner: number;
  /** Linked clones: the base volume they depend on. */
  base?: string;
  size: number;
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
  /** The config file's keys, as text. */
  conf: Record<string, string>;
  running: boolean;
  startedAt: number | null;
  pid: number | null;
  fs: GuestFs;
  guest: GuestHandle | null;
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
  readonly node = SIM_NODE;
  readonly containers = new Map<number, Container>();
  readonly pools = new Map<string, Pool>();
  readonly storages = new Map<string, Storage>();
  private readonly flocks = new Map<number, Flock>();
  private nextPid = 41000;

  constructor(private readonly rng: Rng) {
    this.storages.set("local", { id: "local", type: "dir", content: ["vztmpl", "snippets", "rootdir", "iso", "backup"], shared: false, total: 100 * 1024 ** 3, volumes: new Map() });
    this.storages.set("local-lvm", { id: "local-lvm", type: "lvmthin", content: ["rootdir", "images"], shared: false, total: 400 * 1024 ** 3, volumes: new Map() });
    this.pools.set(SIM_POOL, { id: SIM_POOL, comment: "pve-runners", vms: new Set([SIM_TEMPLATE_VMID]), storage: new Set(["local-lvm"]) });
    this.storages.get("local-lvm")!.volumes.set("base-9000-disk-0", { volname: "base-9000-disk-0", owner: SIM_TEMPLATE_VMID, size: 8 * 1024 ** 3 });
    this.create(SIM_TEMPLATE_VMID, {
      arch: "amd64",
      cores: "2",
      description: "pve-runners template: Ubuntu 24.04, docker, actions runner; a unit waits for the JIT config, runs one job, powers off.",
      features: "keyctl=1,nesting=1",
      hostname: "ubuntu-runner-template",
      memory: "2048",
      net0: `name=eth0,bridge=${SIM_BRIDGE},firewall=0,hwaddr=${this.randomMac()},ip=dhcp,tag=${SIM_VLAN},type=veth`,
      ostype: "ubuntu",
      rootfs: "local-lvm:base-9000-disk-0,size=8G",
      swap: "512",
      tags: "pve-runners-template",
      template: "1",
      unprivileged: "1",
    });
  }

  poolMembers(): Iterable<PoolMembers> {
    return this.pools.values();
  }

  get(vmid: number): Container | undefined {
    return this.containers.get(vmid);
  }

  /** load_config: 500 "Configuration file … does not exist" for an unknown vmid. */
  load(vmid: number): Container {
    const ct = this.containers.get(vmid);
    if (!ct) throw configMissing(this.node, vmid);
    return ct;
  }

  create(vmid: number, conf: Record<string, string>): Container {
    const ct: Container = { vmid, conf, running: false, startedAt: null, pid: null, fs: new GuestFs(), guest: null };
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

  /** check_vmid_unused. */
  assertUnused(vmid: number): void {
    if (this.containers.has(vmid)) throw die(`CT ${vmid} already exists on node '${this.node}'`);
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

  storage(sid: string): Storage {
    const s = this.storages.get(sid);
    if (!s) throw die(`storage '${sid}' does not exist`);
    return s;
  }

  /** A new volume for `vmid`: a thin snapshot of `base` (linked clone) or a fresh one (full clone). */
  allocVolume(sid: string, vmid: number, size: number, base?: { volname: string }): string {
    const s = this.storage(sid);
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
  freeVolume(volid: string, vmid: number, warn: (l: string) => void): void {
    const [sid, volname] = splitVolid(volid);
    const s = this.storage(sid);
    const v = s.volumes.get(volname);
    if (!v) return;
    if (v.owner !== vmid) {
      warn(`ignore deletion of '${volid}', CT ${vmid} isn't the owner!`);
      return;
    }
    if ([...s.volumes.values()].some((o) => o.base === volname)) throw die(`base volume '${volname}' is still in use by linked cloned`);
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
      cpus: Number(c.cores ?? c.cpulimit ?? 0) || NODE_CPUS,
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
        cpu: 0.02,
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
