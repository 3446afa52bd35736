// The read-mostly endpoints around the containers: version, nodes, storage, pools,
// /cluster/resources (lagging behind, from pvestatd's samples), /cluster/nextid and tasks.
import { checkNode, simSecondsSince, type PveContext } from "./context.js";
import { die, paramError } from "./errors.js";
import { NODE, POOL_ID, STORAGE_ID, VMID, verify, type RawParams } from "./params.js";
import type { Caller } from "./privileges.js";
import { NODE_CPUS, NODE_MEMORY, type Storage } from "./state.js";
import { decodeUpid, type SimTask } from "./tasks.js";

export const SIM_PVE_VERSION = { version: "9.1.2", release: "9.1", repoid: "5b08ebc2823dd9cb" };
const BOOTED_AT = Date.now();

export class ClusterApi {
  constructor(private readonly ctx: PveContext) {}

  version(raw: RawParams): unknown {
    verify(raw, {});
    return SIM_PVE_VERSION;
  }

  nodes(caller: Caller, raw: RawParams): unknown[] {
    verify(raw, {});
    const { node } = this.ctx.state;
    const entry: Record<string, unknown> = { node, id: `node/${node}`, type: "node", status: "online", level: "", ssl_fingerprint: "3A:7F:22:91:0C:5E:D4:18:B6:2A:9E:41:77:C3:05:EF:60:1B:8D:24:93:AF:5C:E8:12:46:7B:D0:39:F1:A6:CB" };
    if (this.ctx.acl.has(caller, `/nodes/${node}`, ["Sys.Audit"])) {
      const running = [...this.ctx.state.containers.values()].filter((c) => c.running).length;
      Object.assign(entry, { maxcpu: NODE_CPUS, cpu: 0.01 + running * 0.02, maxmem: NODE_MEMORY, mem: 6 * 1024 ** 3 + running * 512 * 1024 ** 2, maxdisk: 100 * 1024 ** 3, disk: 12 * 1024 ** 3, uptime: Math.floor(simSecondsSince(this.ctx, BOOTED_AT)) + 86_400 });
    }
    return [entry];
  }

  /** GET /nodes/{node}/storage: storages the caller may audit or allocate on. */
  storage(caller: Caller, raw: RawParams): unknown[] {
    const p = verify(raw, {
      node: NODE,
      content: { type: "string", optional: true },
      storage: { ...STORAGE_ID, optional: true },
      enabled: { type: "boolean", optional: true },
      target: { ...NODE, optional: true },
      format: { type: "boolean", optional: true },
    });
    checkNode(this.ctx, p.node);
    const wanted = p.content?.split(",").filter(Boolean);
    return [...this.ctx.state.storages.values()]
      .filter((s) => this.ctx.acl.hasAny(caller, `/storage/${s.id}`, ["Datastore.Audit", "Datastore.AllocateSpace"]))
      .filter((s) => !p.storage || s.id === p.storage)
      .filter((s) => !wanted || wanted.some((c) => s.content.includes(c)))
      .map((s) => {
        const used = this.used(s);
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

  /** GET /cluster/resources: guests only with VM.Audit; status and stats from the last pvestatd sample. */
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
        out.push(this.vmStats(vmid));
      }
    }
    if (!p.type || p.type === "node") {
      for (const n of this.nodes(caller, {})) if (acl.hasAny(caller, `/nodes/${state.node}`, ["Sys.Audit"])) out.push(n);
    }
    if (!p.type || p.type === "storage") {
      for (const s of state.storages.values()) if (acl.hasAny(caller, `/storage/${s.id}`, ["Datastore.Audit", "Datastore.AllocateSpace"])) out.push(this.storageStats(s));
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

  taskLog(caller: Caller, raw: RawParams): { data: unknown[]; total: number } {
    const task = this.task(caller, raw, { start: { type: "integer", optional: true, min: 0 }, limit: { type: "integer", optional: true, min: 0 }, download: { type: "boolean", optional: true } });
    const start = Number(raw.start ?? 0);
    const limit = Number(raw.limit ?? 50);
    const lines = task.log.map((t, i) => ({ n: i + 1, t })).slice(start, start + limit);
    return { data: lines, total: task.log.length };
  }

  /** GET /nodes/{node}/tasks: the caller's own tasks (all with Sys.Audit), newest first. */
  taskList(caller: Caller, raw: RawParams): unknown[] {
    const p = verify(raw, { node: NODE, limit: { type: "integer", optional: true, min: 0 }, start: { type: "integer", optional: true, min: 0 }, vmid: { ...VMID, optional: true }, typefilter: { type: "string", optional: true }, source: { type: "string", optional: true, enum: ["archive", "active", "all"] }, errors: { type: "boolean", optional: true } });
    checkNode(this.ctx, p.node);
    const all = this.ctx.acl.has(caller, `/nodes/${p.node}`, ["Sys.Audit"]);
    return this.ctx.tasks
      .list()
      .filter((t) => all || this.ownTask(caller, t))
      .filter((t) => !p.vmid || t.id === p.vmid)
      .filter((t) => !p.typefilter || t.type === p.typefilter)
      .slice(Number(p.start ?? 0), Number(p.start ?? 0) + Number(p.limit ?? 50))
      .map((t) => ({ upid: t.upid, node: t.node, pid: t.pid, pstart: t.pstart, starttime: t.starttime, type: t.type, id: t.id, user: t.user, ...(t.endtime ? { endtime: t.endtime, status: t.exitstatus } : {}) }));
  }

  private task(caller: Caller, raw: RawParams, extra = {}): SimTask {
    const p = verify(raw, { node: NODE, upid: { type: "string" }, ...extra });
    if (!decodeUpid(p.upid)) throw paramError({ upid: "unable to parse worker upid" });
    checkNode(this.ctx, p.node);
    const task = this.ctx.tasks.get(p.upid);
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
    if (!type || type === "storage") for (const sid of [...pool.storage].sort()) members.push(this.storageStats(this.ctx.state.storage(sid)));
    return { poolid, ...(pool.comment !== undefined ? { comment: pool.comment } : {}), members };
  }

  /** extract_vm_stats + the live config props (lock, tags) and pool. */
  private vmStats(vmid: number, withConfigProps = true): Record<string, unknown> {
    const { state } = this.ctx;
    const entry: Record<string, unknown> = { id: `lxc/${vmid}`, vmid, node: state.node, type: "lxc", status: "unknown" };
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

  private storageStats(s: Storage): Record<string, unknown> {
    const node = this.ctx.state.node;
    return { id: `storage/${node}/${s.id}`, storage: s.id, node, type: "storage", status: "available", plugintype: s.type, content: [...s.content].sort().join(","), shared: s.shared ? 1 : 0, disk: this.used(s), maxdisk: s.total };
  }

  /** Thin volumes use a fraction of their size. */
  private used(s: Storage): number {
    let used = 2 * 1024 ** 3;
    for (const v of s.volumes.values()) used += s.type === "lvmthin" ? Math.round(v.size * (v.base ? 0.02 : 0.3)) : v.size;
    return used;
  }
}
