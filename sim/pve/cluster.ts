// The read-mostly endpoints around the containers: version, nodes, storage, pools,
// /cluster/resources (lagging behind, from pvestatd's samples), /cluster/nextid and tasks.
import { createHash } from "node:crypto";
import { checkNode, simSecondsSince, type PveContext } from "./context.js";
import { die, paramError } from "./errors.js";
import { NODE, POOL_ID, STORAGE_ID, VMID, verify, type RawParams } from "./params.js";
import type { Caller } from "./privileges.js";
import type { SimNode, Storage } from "./state.js";
import { decodeUpid, type SimTask } from "./tasks.js";

export const SIM_PVE_VERSION = { version: "9.1.2", release: "9.1", repoid: "5b08ebc2823dd9cb" };
const BOOTED_AT = Date.now();
const FIRST_FINGERPRINT = "3A:7F:22:91:0C:5E:D4:18:B6:2A:9E:41:77:C3:05:EF:60:1B:8D:24:93:AF:5C:E8:12:46:7B:D0:39:F1:A6:CB";

/** A node's uptime in seconds (every node booted a day before the simulator started). */
export const nodeUptime = (ctx: PveContext): number => Math.floor(simSecondsSince(ctx, BOOTED_AT)) + 86_400;

/** Storage use: thin volumes use a fraction of their size. */
export function storageUsed(s: Storage): number {
  let used = 2 * 1024 ** 3;
  for (const v of s.volumes.values()) used += s.type === "lvmthin" ? Math.round(v.size * (v.base ? 0.02 : 0.3)) : v.size;
  return used;
}

/** The SHA-256 fingerprint of the node's pve-ssl.pem (made up, stable per node). */
function fingerprint(node: SimNode): string {
  if (node.index === 0) return FIRST_FINGERPRINT;
  const hex = createHash("sha256").update(`pve-ssl:${node.name}`).digest("hex").toUpperCase();
  return hex.match(/../g)!.join(":");
}

export class ClusterApi {
  constructor(private readonly ctx: PveContext) {}

  version(raw: RawParams): unknown {
    verify(raw, {});
    return SIM_PVE_VERSION;
  }

  /** GET /nodes (pve-manager PVE/API2/Nodes.pm index): every cluster node, stats only with Sys.Audit. */
  nodes(caller: Caller, raw: RawParams): unknown[] {
    verify(raw, {});
    return [...this.ctx.state.nodes.values()].map((n) => ({ ...this.nodeStats(caller, n), ssl_fingerprint: fingerprint(n) }));
  }

  /**
   * PVE/API2Tools.pm extract_node_stats: "online" only with fresh RRD data and corosync membership,
   * "offline" for a member that is not online; cpu, mem, disk and uptime only while online, the
   * max* values (and level) as long as the RRD entry lives; no stats at all without Sys.Audit.
   */
  private nodeStats(caller: Caller, n: SimNode): Record<string, unknown> {
    const audit = this.ctx.acl.has(caller, `/nodes/${n.name}`, ["Sys.Audit"]);
    const e: Record<string, unknown> = { id: `node/${n.name}`, node: n.name, type: "node", status: "unknown" };
    const d = this.ctx.stats.node(n.name);
    if (d) {
      if (n.online) {
        if (audit) Object.assign(e, { uptime: d.uptime, cpu: d.cpu, mem: d.mem, disk: d.disk });
        e.status = "online";
      }
      e.level = d.level;
      if (audit) Object.assign(e, { maxcpu: d.maxcpu, maxmem: d.maxmem, maxdisk: d.maxdisk });
    }
    if (!n.online) e.status = "offline";
    return e;
  }

  /** GET /nodes/{node}/storage: storages the caller may audit or allocate on. */
  storage(caller: Caller, raw: RawParams): unknown[] {
    const node = checkNode(this.ctx, raw.node);
    const p = verify(raw, {
      node: NODE,
      content: { type: "string", optional: true },
      storage: { ...STORAGE_ID, optional: true },
      enabled: { type: "boolean", optional: true },
      target: { ...NODE, optional: true },
      format: { type: "boolean", optional: true },
    });
    const wanted = p.content?.split(",").filter(Boolean);
    return [...node.storages.values()]
      .filter((s) => this.ctx.acl.hasAny(caller, `/storage/${s.id}`, ["Datastore.Audit", "Datastore.AllocateSpace"]))
      .filter((s) => !p.storage || s.id === p.storage)
      .filter((s) => !wanted || wanted.some((c) => s.content.includes(c)))
      .map((s) => {
        const used = storageUsed(s);
        return { storage: s.id, type: s.type, content: [...s.content].sort().join(","), active: 1, enabled: 1, shared: s.shared ? 1 : 0, total: s.total, used, avail: s.total - used, used_fraction: used / s.total };
      });
  }

  /**
   * GET /pools (list: pools with Pool.Audit) and GET /pools?poolid=X (members). PVE 8.1+ does not
   * enforce Pool.Audit for ?poolid= (its check result is ignored); reproduced on purpose.
   */
  pools(caller: Caller, raw: RawParams): unknown[] {
    const p = verify(raw, { poolid: { ...POOL_ID, optional: true }, type: { type: "string", optional: true, enum: ["qemu", "lxc", "storage"] } });
    if (p.poolid !== undefined) return [this.poolInfo(p.poolid, p.type)];
    return [...this.ctx.state.pools.values()]
      .filter((pool) => this.ctx.acl.has(caller, `/pool/${pool.id}`, ["Pool.Audit"]))
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((pool) => ({ poolid: pool.id, ...(pool.comment !== undefined ? { comment: pool.comment } : {}) }));
  }

  /** GET /pools/{poolid} (deprecated form): needs Pool.Audit. */
  pool(caller: Caller, raw: RawParams): unknown {
    this.ctx.acl.check(caller, `/pool/${raw.poolid}`, ["Pool.Audit"]);
    const p = verify(raw, { poolid: POOL_ID, type: { type: "string", optional: true, enum: ["qemu", "lxc", "storage"] } });
    const { poolid: _id, ...rest } = this.poolInfo(p.poolid, p.type);
    return rest;
  }

  /**
   * GET /cluster/resources (pve-manager PVE/API2/Cluster.pm): guests only with VM.Audit, every node
   * (stats only with Sys.Audit), each storage once per node; status and stats from the RRD.
   */
  resources(caller: Caller, raw: RawParams): unknown[] {
    const p = verify(raw, { type: { type: "string", optional: true, enum: ["vm", "storage", "node", "sdn"] } });
    const { state, acl } = this.ctx;
    const out: unknown[] = [];
    if (!p.type) {
      for (const pool of state.pools.values()) if (acl.has(caller, `/pool/${pool.id}`, ["Pool.Audit"])) out.push({ id: `/pool/${pool.id}`, pool: pool.id, type: "pool" });
    }
    if (!p.type || p.type === "vm") {
      for (const vmid of [...state.containers.keys()].sort((a, b) => a - b)) {
        if (!acl.has(caller, `/vms/${vmid}`, ["VM.Audit"])) continue;
        const entry = this.vmStats(vmid);
        // The pool is only shown to who may audit it.
        if (entry.pool !== undefined && !acl.has(caller, `/pool/${entry.pool}`, ["Pool.Audit"])) delete entry.pool;
        out.push(entry);
      }
    }
    if (!p.type || p.type === "node") {
      for (const n of state.nodes.values()) out.push(this.nodeStats(caller, n));
    }
    if (!p.type || p.type === "storage") {
      for (const sid of state.entryNode.storages.keys()) {
        if (!acl.hasAny(caller, `/storage/${sid}`, ["Datastore.Audit", "Datastore.AllocateSpace"])) continue;
        for (const n of state.nodes.values()) out.push(this.storageStats(n.name, state.storage(n.name, sid)));
      }
    }
    return out;
  }

  /** GET /cluster/nextid: the lowest free VMID (a string); ?vmid=N asserts N is free. Nothing is reserved. */
  nextid(raw: RawParams): string {
    const p = verify(raw, { vmid: { ...VMID, optional: true } });
    if (p.vmid !== undefined) {
      if (this.ctx.state.containers.has(Number(p.vmid))) throw paramError({ vmid: `VM ${p.vmid} already exists` });
      return p.vmid;
    }
    return String(this.ctx.state.nextFreeVmid());
  }

  /** Task status: your own tasks freely, others' with Sys.Audit on the node. */
  taskStatus(caller: Caller, raw: RawParams): unknown {
    const task = this.task(caller, raw);
    const [user, tokenid] = task.user.split("!");
    const out: Record<string, unknown> = { upid: task.upid, node: task.node, pid: task.pid, pstart: task.pstart, starttime: task.starttime, type: task.type, id: task.id, user, status: task.status };
    if (tokenid) out.tokenid = tokenid;
    if (task.status === "stopped") out.exitstatus = task.exitstatus;
    return out;
  }

  /**
   * DELETE /nodes/{node}/tasks/{upid} (stop_task, pve-manager PVE/API2/Tasks.pm): stops a running
   * worker; a finished one is left as it is. The simulator's workers cannot be killed: running or
   * not, the answer is null (bpg calls it after a failed download-url wait).
   */
  taskStop(caller: Caller, raw: RawParams): null {
    this.task(caller, raw);
    return null;
  }

  taskLog(caller: Caller, raw: RawParams): { data: unknown[]; total: number } {
    const task = this.task(caller, raw, { start: { type: "integer", optional: true, min: 0 }, limit: { type: "integer", optional: true, min: 0 }, download: { type: "boolean", optional: true } });
    const start = Number(raw.start ?? 0);
    const limit = Number(raw.limit ?? 50);
    const lines = task.log.map((t, i) => ({ n: i + 1, t })).slice(start, start + limit);
    return { data: lines, total: task.log.length };
  }

  /** GET /nodes/{node}/tasks: the caller's own tasks (all with Sys.Audit), newest first. */
  taskList(caller: Caller, raw: RawParams): unknown[] {
    checkNode(this.ctx, raw.node);
    const p = verify(raw, { node: NODE, limit: { type: "integer", optional: true, min: 0 }, start: { type: "integer", optional: true, min: 0 }, vmid: { ...VMID, optional: true }, typefilter: { type: "string", optional: true }, source: { type: "string", optional: true, enum: ["archive", "active", "all"] }, errors: { type: "boolean", optional: true } });
    const all = this.ctx.acl.has(caller, `/nodes/${p.node}`, ["Sys.Audit"]);
    return this.ctx.tasks
      .list(p.node)
      .filter((t) => all || this.ownTask(caller, t))
      .filter((t) => !p.vmid || t.id === p.vmid)
      .filter((t) => !p.typefilter || t.type === p.typefilter)
      .slice(Number(p.start ?? 0), Number(p.start ?? 0) + Number(p.limit ?? 50))
      .map((t) => ({ upid: t.upid, node: t.node, pid: t.pid, pstart: t.pstart, starttime: t.starttime, type: t.type, id: t.id, user: t.user, ...(t.endtime ? { endtime: t.endtime, status: t.exitstatus } : {}) }));
  }

  private task(caller: Caller, raw: RawParams, extra = {}): SimTask {
    checkNode(this.ctx, raw.node);
    const p = verify(raw, { node: NODE, upid: { type: "string" }, ...extra });
    if (!decodeUpid(p.upid)) throw paramError({ upid: "unable to parse worker upid" });
    const task = this.ctx.tasks.get(p.upid, p.node);
    if (!this.ownTask(caller, task)) this.ctx.acl.check(caller, `/nodes/${p.node}`, ["Sys.Audit"]);
    return task;
  }

  /** A token sees its own tasks; the user sees its own and its tokens' tasks. */
  private ownTask(caller: Caller, t: SimTask): boolean {
    return t.user === caller.userid || t.user.split("!")[0] === caller.userid;
  }

  private poolInfo(poolid: string, type?: string): { poolid: string; comment?: string; members: unknown[] } {
    const pool = this.ctx.state.pools.get(poolid);
    if (!pool) throw die(`pool '${poolid}' does not exist`);
    const members: unknown[] = [];
    if (!type || type === "lxc") for (const vmid of [...pool.vms].sort((a, b) => a - b)) if (this.ctx.state.containers.has(vmid)) members.push(this.vmStats(vmid, false));
    // Pool.pm: a storage member as the answering node sees it ("prefer local node").
    const local = this.ctx.state.entryNode.name;
    if (!type || type === "storage") for (const sid of [...pool.storage].sort()) members.push(this.storageStats(local, this.ctx.state.storage(local, sid)));
    return { poolid, ...(pool.comment !== undefined ? { comment: pool.comment } : {}), members };
  }

  /** extract_vm_stats + the live config props (lock, tags) and pool. */
  private vmStats(vmid: number, withConfigProps = true): Record<string, unknown> {
    const { state } = this.ctx;
    const entry: Record<string, unknown> = { id: `lxc/${vmid}`, vmid, node: state.get(vmid)?.node, type: "lxc", status: "unknown" };
    const s = this.ctx.stats.get(vmid);
    if (s) {
      Object.assign(entry, {
        uptime: s.uptime,
        name: s.name,
        status: s.status,
        template: s.template ?? 0,
        maxcpu: s.cpus,
        cpu: s.cpu,
        maxmem: s.maxmem,
        mem: s.mem,
        maxdisk: s.maxdisk,
        disk: s.disk,
        netin: s.netin,
        netout: s.netout,
        diskread: s.diskread,
        diskwrite: s.diskwrite,
      });
    }
    const conf = state.get(vmid)?.conf;
    if (withConfigProps && conf?.lock) entry.lock = conf.lock;
    if (withConfigProps && conf?.tags !== undefined) entry.tags = conf.tags;
    const pool = state.poolOf(vmid);
    if (pool) entry.pool = pool;
    return entry;
  }

  /** extract_storage_stats: "available" with its size and use while the node's RRD entry lives. */
  private storageStats(node: string, s: Storage): Record<string, unknown> {
    const e: Record<string, unknown> = { id: `storage/${node}/${s.id}`, storage: s.id, node, type: "storage", status: "unknown", plugintype: s.type, content: [...s.content].sort().join(","), shared: s.shared ? 1 : 0 };
    const d = this.ctx.stats.storage(node, s.id);
    if (d) Object.assign(e, { status: "available", disk: d.disk, maxdisk: d.maxdisk });
    return e;
  }
}
