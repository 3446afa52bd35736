// The container endpoints (pve-container src/PVE/API2/LXC.pm, LXC/Config.pm, LXC/Status.pm):
// the permission check first (the method's `permissions`), then pveproxy's proxying to the node in
// the path (checkNode), then parameter verification and the code on that node — synchronous
// checks, then a worker task of that node that holds the CT's config flock.
import { checkNode, checkQuorum, nodeDelay, nodeSleep, simSecondsSince, type PveContext } from "./context.js";
import { PveError, cfsReadOnly, configFlockTimeout, die, errorText, locked, paramError, permError, storageLockTimeout } from "./errors.js";
import type { Fault } from "./faults.js";
import { SimGuest } from "./guest.js";
import { PlainOsGuest } from "./provision.js";
import { CONFIG_KEYS, dynamicKey, isConfigKey, normalizeTags, parseEnv, parseFeatures, parseMountpoint, parseNet, printMountpoint, printNet, splitTags, typedConfig } from "./lxc-config.js";
import { BOOL_OPT, DNS_NAME, NODE, POOL_ID, STORAGE_ID, VMID, bool, verify, type RawParams, type Schema } from "./params.js";
import { isRootPam, type Caller } from "./privileges.js";
import { splitVolid, type Container, type SimNode } from "./state.js";
import type { TaskLog } from "./tasks.js";

const CONFIG_PRIVS = ["VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options"];
/** Keys whose value GET /config hides from callers without the privilege (pve-container 6.0.15). */
const READ_RESTRICTED: Record<string, string> = { env: "VM.Config.Options" };
const REQUIRED_KEYS = ["memory", "rootfs", "ostype"];
const BASE = { node: NODE, vmid: VMID };
const isVolumeKey = (k: string) => k === "rootfs" || /^mp\d+$/.test(k);
const isUnused = (k: string) => /^unused\d+$/.test(k);

export class LxcApi {
  private writes = 0;

  constructor(private readonly ctx: PveContext) {}

  // --- reading ---------------------------------------------------------------

  list(caller: Caller, raw: RawParams): unknown[] {
    checkNode(this.ctx, raw.node);
    const p = verify(raw, { node: NODE });
    return this.ctx.state
      .containersOn(p.node)
      .filter((ct) => this.ctx.acl.has(caller, `/vms/${ct.vmid}`, ["VM.Audit"]))
      .sort((a, b) => a.vmid - b.vmid)
      .map((ct) => this.vmstatus(ct));
  }

  index(caller: Caller, raw: RawParams): unknown[] {
    this.ctx.acl.check(caller, `/vms/${raw.vmid}`, ["VM.Audit"]);
    checkNode(this.ctx, raw.node);
    const p = verify(raw, BASE);
    this.ctx.state.load(p.node, Number(p.vmid));
    return ["config", "pending", "status", "vncproxy", "termproxy", "vncwebsocket", "spiceproxy", "migrate", "clone", "snapshot", "firewall", "rrd", "rrddata", "interfaces"].map((subdir) => ({ subdir }));
  }

  status(caller: Caller, raw: RawParams): Record<string, unknown> {
    this.ctx.acl.check(caller, `/vms/${raw.vmid}`, ["VM.Audit"]);
    checkNode(this.ctx, raw.node);
    const p = verify(raw, BASE);
    const ct = this.ctx.state.load(p.node, Number(p.vmid));
    return { ...this.vmstatus(ct), ha: { managed: 0 } };
  }

  getConfig(caller: Caller, raw: RawParams): Record<string, unknown> {
    this.ctx.acl.check(caller, `/vms/${raw.vmid}`, ["VM.Audit"]);
    checkNode(this.ctx, raw.node);
    const p = verify(raw, { ...BASE, current: BOOL_OPT, snapshot: { type: "string", optional: true } });
    const ct = this.ctx.state.load(p.node, Number(p.vmid));
    if (p.snapshot) throw die(`snapshot '${p.snapshot}' does not exist`);
    const conf = typedConfig(ct.conf);
    for (const [key, priv] of Object.entries(READ_RESTRICTED)) {
      if (key in conf && !this.ctx.acl.has(caller, `/vms/${ct.vmid}`, [priv])) delete conf[key];
    }
    return { ...conf, digest: this.ctx.state.digest(ct) };
  }

  /**
   * GET {vmid}/interfaces (src/PVE/API2/LXC.pm `ip`, VM.Audit on /vms/{vmid}; PVE::LXC::get_interfaces):
   * `ip --json a` inside a running container as [{name, hwaddr, hardware-address, inet, inet6,
   * ip-addresses: [{ip-address-type, ip-address, prefix}]}]; null when the container does not run
   * here (find_lxc_pid fails and get_interfaces returns nothing). bpg polls it on every refresh of
   * a running container. A DHCP address shows once the guest has booted; the IPv6 link-local one
   * (EUI-64 of the MAC) as soon as the link is up.
   */
  interfaces(caller: Caller, raw: RawParams): unknown[] | null {
    this.ctx.acl.check(caller, `/vms/${raw.vmid}`, ["VM.Audit"]);
    const node = checkNode(this.ctx, raw.node);
    const p = verify(raw, BASE);
    const ct = this.ctx.state.on(node.name, Number(p.vmid));
    if (!ct?.running) return null;
    const booted = ct.guest !== null && ct.guest.describe().phase !== "booting";
    const iface = (name: string, mac: string, addrs: Array<[family: "inet" | "inet6", address: string, prefix: number]>) => {
      const out: Record<string, unknown> = { name, hwaddr: mac, "hardware-address": mac };
      for (const [family, address, prefix] of addrs) out[family] = `${address}/${prefix}`;
      out["ip-addresses"] = addrs.map(([family, address, prefix]) => ({ "ip-address-type": family, "ip-address": address, prefix }));
      return out;
    };
    const list = [iface("lo", "00:00:00:00:00:00", [["inet", "127.0.0.1", 8], ["inet6", "::1", 128]])];
    for (const key of Object.keys(ct.conf).filter((k) => /^net\d+$/.test(k)).sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)))) {
      const net = parseNet(ct.conf[key], key);
      const mac = (net.hwaddr ?? "").toLowerCase();
      const addrs: Array<["inet" | "inet6", string, number]> = [];
      const v4 = net.ip === "dhcp" ? (booted ? `10.${(ct.vmid >> 16) & 255}.${(ct.vmid >> 8) & 255}.${ct.vmid & 255}/16` : null) : net.ip && net.ip !== "manual" ? net.ip : null;
      if (v4) addrs.push(["inet", v4.split("/")[0], Number(v4.split("/")[1] ?? 32)]);
      if (net.ip6 && net.ip6.includes("/")) addrs.push(["inet6", net.ip6.split("/")[0], Number(net.ip6.split("/")[1])]);
      if (mac) addrs.push(["inet6", linkLocal(mac), 64]);
      list.push(iface(net.name ?? key.replace("net", "eth"), mac, addrs));
    }
    return list;
  }

  vmstatus(ct: Container): Record<string, unknown> {
    return this.ctx.state.vmstatus(ct, (t) => simSecondsSince(this.ctx, t));
  }

  // --- PUT /config (synchronous) -----------------------------------------------

  async setConfig(caller: Caller, raw: RawParams): Promise<null> {
    const { ctx } = this;
    ctx.acl.checkAny(caller, `/vms/${raw.vmid}`, CONFIG_PRIVS);
    const node = checkNode(ctx, raw.node);
    const schema: Schema = {
      ...BASE,
      ...CONFIG_KEYS,
      delete: { type: "string", optional: true },
      revert: { type: "string", optional: true },
      digest: { type: "string", optional: true, maxLength: 40 },
    };
    const p = verify(raw, schema, dynamicKey);
    const vmid = Number(p.vmid);
    const { node: _n, vmid: _v, digest, delete: del, revert: rev, ...param } = p;
    if (!Object.keys(param).length && del === undefined && rev === undefined) throw die("no options specified");
    const deletes = splitList(del);
    const reverts = splitList(rev);

    // The realistic failure of a config update is its flock timing out (bpg retries on "got timeout").
    const fault = ctx.faults.forOp("config");
    if (fault?.kind === "error" && fault.message) throw die(fault.message);
    if (fault) await this.lockTimeout(node, configFlockTimeout(vmid));
    const release = await ctx.state.flock(vmid, ctx.clock.scaled(ctx.latency.lockTimeout));
    try {
      const ct = ctx.state.load(node.name, vmid);
      if (ct.conf.lock) throw locked(ct.conf.lock);
      if (digest !== undefined && digest !== ctx.state.digest(ct)) throw die("detected modified configuration - file changed by other user? Try again.");
      const unprivileged = ct.conf.unprivileged === "1";
      for (const opt of [...deletes, ...reverts]) this.checkModifyPerm(caller, ct, opt, undefined, true, unprivileged);
      for (const opt of reverts) if (!isConfigKey(opt)) throw paramError({ revert: `unknown option '${opt}'` });
      for (const opt of deletes) {
        if (!isConfigKey(opt)) throw paramError({ delete: `unknown option '${opt}'` });
        if (param[opt] !== undefined) throw paramError({ delete: `you can't use '-${opt}' and -delete ${opt}' at the same time` });
      }
      for (const [opt, value] of Object.entries(param)) this.checkModifyPerm(caller, ct, opt, value, false, unprivileged);

      // update_pct_config: validate everything, then write once.
      const next = { ...ct.conf };
      for (const opt of deletes) {
        if (next[opt] === undefined) continue; // "cannot delete '…' - not set in current configuration!" is only a warning
        if (REQUIRED_KEYS.includes(opt)) throw die(`unable to delete required option '${opt}'`);
        if (opt === "unprivileged") throw die(`unable to delete read-only option: '${opt}'`);
        delete next[opt];
      }
      for (const [opt, value] of Object.entries(param)) {
        if (opt === "unprivileged") throw die(`unable to modify read-only option: '${opt}'`);
        next[opt] = this.normalizeValue(opt, value);
      }
      await nodeDelay(ctx, node, ctx.latency.config);
      if (!ctx.state.quorate()) throw cfsReadOnly(node.name, vmid, this.daemonPid());
      ct.conf = next;
      return null;
    } finally {
      release();
    }
  }

  /** check_ct_modify_config_perm (src/PVE/LXC.pm), one option. */
  private checkModifyPerm(caller: Caller, ct: Container, opt: string, value: string | undefined, isDelete: boolean, unprivileged: boolean, pool?: string): void {
    if (isRootPam(caller)) return;
    const { acl } = this.ctx;
    const vm = (privs: string[]) => acl.checkVm(caller, ct.vmid, pool, privs);
    if (["cores", "cpuunits", "cpulimit"].includes(opt)) vm(["VM.Config.CPU"]);
    else if (isVolumeKey(opt)) {
      vm(["VM.Config.Disk"]);
      if (isDelete || value === undefined) return;
      const mp = parseMountpoint(value, opt);
      if (!mp.volume.includes(":")) throw permError("mount point type bind is only allowed for root@pam");
      acl.check(caller, `/storage/${splitVolid(mp.volume)[0]}`, ["Datastore.AllocateSpace"]);
    } else if (opt === "memory" || opt === "swap") vm(["VM.Config.Memory"]);
    else if (/^net\d+$/.test(opt)) {
      vm(["VM.Config.Network"]);
      if (ct.conf[opt]) this.checkBridge(caller, ct.conf[opt], opt);
      if (!isDelete && value) this.checkBridge(caller, value, opt);
    } else if (/^dev\d+$/.test(opt)) throw permError("configuring device passthrough is only allowed for root@pam");
    else if (["nameserver", "searchdomain", "hostname"].includes(opt)) vm(["VM.Config.Network"]);
    else if (opt === "features") this.checkFeatures(caller, ct, value, isDelete, unprivileged, pool);
    else if (opt === "hookscript") throw permError("changing the hookscript is only allowed for root@pam");
    else if (opt === "tags") {
      vm(["VM.Config.Options"]);
      // datacenter.cfg user-tag-access defaults to "free": any tag is allowed with VM.Config.Options.
    } else vm(["VM.Config.Options"]);
  }

  /** Only nesting may change without root@pam; re-sending identical features is no change. */
  private checkFeatures(caller: Caller, ct: Container, value: string | undefined, isDelete: boolean, unprivileged: boolean, pool?: string): void {
    if (!unprivileged) throw permError("changing feature flags for privileged container is only allowed for root@pam");
    let nesting = false;
    let other = false;
    if (!isDelete) {
      const next = parseFeatures(value);
      if (ct.conf.features) {
        const old = parseFeatures(ct.conf.features);
        for (const f of [...Object.keys(old), ...Object.keys(next)]) {
          if ((old[f] ?? "") === (next[f] ?? "")) continue;
          if (f === "nesting") nesting = true;
          else {
            other = true;
            break;
          }
        }
      } else {
        const keys = Object.keys(next);
        if (keys.length === 1 && keys[0] === "nesting") nesting = true;
        else if (keys.length) other = true;
      }
    } else {
      const keys = Object.keys(parseFeatures(ct.conf.features));
      if (keys.length === 1 && keys[0] === "nesting") nesting = true;
      else if (keys.length) other = true;
    }
    if (other) throw permError("changing feature flags (except nesting) is only allowed for root@pam");
    if (nesting) this.ctx.acl.checkVm(caller, ct.vmid, pool, ["VM.Allocate"]);
  }

  /** check_bridge_access → SDN.Use on /sdn/zones/localnetwork/<bridge>[/<tag>]. */
  private checkBridge(caller: Caller, netValue: string, key: string): void {
    if (isRootPam(caller)) return;
    const net = parseNet(netValue, key);
    if (!net.bridge) return;
    const path = `/sdn/zones/localnetwork/${net.bridge}${net.tag ? `/${net.tag}` : ""}`;
    if (net.trunks && !net.tag) {
      for (const t of net.trunks.split(";")) this.ctx.acl.check(caller, `/sdn/zones/localnetwork/${net.bridge}/${t}`, ["SDN.Use"]);
    } else this.ctx.acl.check(caller, path, ["SDN.Use"]);
  }

  private normalizeValue(opt: string, value: string): string {
    if (opt === "tags") return normalizeTags(value);
    if (/^net\d+$/.test(opt)) {
      // parse_lxc_network: type=veth, and a fresh MAC when none is given.
      const net = parseNet(value, opt);
      net.type = "veth";
      net.hwaddr ??= this.ctx.state.randomMac();
      return printNet(net);
    }
    return value;
  }

  // --- clone -----------------------------------------------------------------

  /** POST …/clone, recorded in the clone log: refused with what, or the task and its start and end. */
  async clone(caller: Caller, raw: RawParams): Promise<string> {
    const newid = Number(raw.newid);
    const rec = this.ctx.clones.request(String(raw.node), Number(raw.vmid), Number.isInteger(newid) ? newid : null);
    try {
      return await this.startClone(caller, raw, {
        started: (upid) => this.ctx.clones.started(rec, upid, Date.now()),
        ended: (exitstatus) => this.ctx.clones.ended(rec, exitstatus),
      });
    } catch (err) {
      this.ctx.clones.refused(rec, err instanceof PveError ? err.status : 500, errorText(err));
      throw err;
    }
  }

  private async startClone(caller: Caller, raw: RawParams, task: { started(upid: string): void; ended(exitstatus: string): void }): Promise<string> {
    const { ctx } = this;
    const { acl, state } = ctx;
    // ['and', VM.Clone on the source, ['or', VM.Allocate on /vms/{newid}, on /pool/{pool}]]
    acl.check(caller, `/vms/${raw.vmid}`, ["VM.Clone"]);
    const mayAllocate = acl.has(caller, `/vms/${raw.newid ?? ""}`, ["VM.Allocate"]) || (raw.pool !== undefined && acl.has(caller, `/pool/${raw.pool}`, ["VM.Allocate"]));
    if (!mayAllocate) throw permError();
    const node = checkNode(ctx, raw.node);
    const p = verify(raw, {
      ...BASE,
      newid: VMID,
      hostname: { ...DNS_NAME, optional: true },
      description: { type: "string", optional: true },
      pool: { ...POOL_ID, optional: true },
      snapname: { type: "string", optional: true },
      storage: { ...STORAGE_ID, optional: true },
      full: BOOL_OPT,
      target: { ...NODE, optional: true },
      bwlimit: { type: "number", optional: true, min: 0 },
    });
    const vmid = Number(p.vmid);
    const newid = Number(p.newid);
    if (p.pool !== undefined && !state.pools.has(p.pool)) throw permError(`pool '${p.pool}' does not exist`);
    // `target` counts only when it names another node, which must exist; a storage given with a
    // target must exist there too and be shared (clone_vm, src/PVE/API2/LXC.pm).
    const targetNode = p.target === undefined || p.target === node.name || p.target === "localhost" ? undefined : p.target;
    if (targetNode !== undefined && !state.node(targetNode)) throw die(`no such cluster node '${targetNode}'`);
    if (p.storage !== undefined) {
      const st = state.storage(node.name, p.storage);
      if (targetNode !== undefined) {
        state.storage(targetNode, p.storage);
        if (!st.shared) throw die(`can't clone to non-shared storage '${p.storage}'`);
      }
    }
    checkQuorum(ctx);

    // set_lock($vmid, 'disk'): held on the source for the whole clone.
    const release = await state.flock(vmid, ctx.clock.scaled(ctx.latency.lockTimeout));
    let src: Container;
    try {
      src = state.load(node.name, vmid);
      if (src.conf.lock) throw locked(src.conf.lock);
      // Another process (a backup, another client) holding the lock at this moment.
      if (ctx.faults.cloneLocked()) throw locked("disk");
      src.conf.lock = "disk";
    } finally {
      release();
    }
    const unlockSource = () => {
      if (src.conf.lock === "disk") delete src.conf.lock;
    };
    let target: Container;
    try {
      state.assertUnused(newid);
      target = state.create(node.name, newid, { lock: "create" });
    } catch (err) {
      unlockSource();
      throw err;
    }

    const full = p.full !== undefined ? bool(p.full) : src.conf.template !== "1";
    // clone_vmfw_conf, before the storage checks: the clone starts with the source's firewall.
    state.firewall.clone(vmid, newid);
    const mountpoints: Array<{ opt: string; mp: Record<string, string>; sid: string }> = [];
    try {
      let sharedvm = true;
      if (p.storage !== undefined && !full) throw die("parameter 'storage' not allowed for linked clones");
      if (p.snapname) throw die(`snapshot '${p.snapname}' does not exist`);
      const newconf: Record<string, string> = {};
      for (const opt of Object.keys(src.conf).sort()) {
        const value = src.conf[opt];
        if (isUnused(opt)) continue;
        if (isVolumeKey(opt)) {
          const mp = parseMountpoint(value, opt);
          const [volSid, volname] = splitVolid(mp.volume);
          const sid = p.storage ?? volSid;
          if (!state.storage(node.name, sid).shared) sharedvm = false;
          acl.check(caller, `/storage/${sid}`, ["Datastore.AllocateSpace"]);
          if (full && src.running) throw die("Full clone of a running container is only possible from a snapshot");
          if (!full && (!/^base-/.test(volname) || volname.includes("/"))) throw die(`Linked clone feature for '${mp.volume}' is not available`);
          mountpoints.push({ opt, mp, sid });
          newconf[opt] = value;
        } else if (/^net\d+$/.test(opt)) {
          const net = parseNet(value, opt);
          net.hwaddr = state.randomMac(); // always a new MAC
          newconf[opt] = printNet({ ...net, type: "veth" });
          this.checkBridge(caller, newconf[opt], opt);
        } else newconf[opt] = value;
      }
      if (targetNode !== undefined && !sharedvm) throw die(`can't clone CT to node '${targetNode}' (CT uses local storage)`);
      newconf.lock = "create";
      delete newconf.template;
      if (p.hostname) newconf.hostname = p.hostname;
      if (p.description) newconf.description = p.description;
      target.conf = newconf;
    } catch (err) {
      unlockSource();
      state.remove(newid);
      state.firewall.remove(newid);
      throw err;
    }

    const latency = full ? ctx.latency.cloneFull : ctx.latency.cloneLinked;
    const upid = ctx.tasks.spawn(node, "vzclone", vmid, caller.userid, async (log) => {
      log.print(`create ${full ? "full" : "linked"} clone of container ${vmid} with ID ${newid}`);
      const created: string[] = [];
      try {
        const fault = ctx.faults.forOp("clone");
        await this.failLater(node, fault, latency, () => storageLockTimeout(mountpoints[0]?.sid ?? "local-lvm"), () =>
          die(`lvcreate 'pve/vm-${newid}-disk-0' error:   Cannot create new thin volume, free space in thin pool pve/data reached threshold.`),
        );
        await nodeDelay(ctx, node, latency);
        await ctx.cloneHold.passed();
        for (const { opt, mp, sid } of mountpoints) {
          const [volSid, volname] = splitVolid(mp.volume);
          const size = state.storage(node.name, volSid).volumes.get(volname)?.size ?? 8 * 1024 ** 3;
          log.print(`create ${full ? "full clone" : "linked clone"} of mount point ${opt} (${mp.volume})`);
          const volid = state.allocVolume(node.name, sid, newid, size, full ? undefined : { volname });
          created.push(volid);
          log.print(`  Logical volume "${volid.split("/").pop()?.split(":").pop()}" created.`);
          target.conf[opt] = printMountpoint({ ...mp, volume: volid });
        }
        if (p.pool) state.pools.get(p.pool)?.vms.add(newid);
      } catch (err) {
        unlockSource();
        for (const volid of created) state.freeVolume(node.name, volid, newid, () => {});
        if (state.get(newid) === target) {
          state.remove(newid);
          state.firewall.remove(newid);
        }
        throw die(`clone failed: ${errorText(err)}`);
      }
      unlockSource();
      if (target.conf.lock === "create") delete target.conf.lock;
    }, task.ended);
    task.started(upid);
    return upid;
  }

  // --- create from a CT image, convert to template ---------------------------

  /**
   * POST /nodes/{node}/lxc (create_vm, src/PVE/API2/LXC.pm) from a `vztmpl` volume: permissions
   * checked inside (VM.Allocate on the vmid or the pool; Sys.Modify on / for a privileged CT;
   * check_ct_modify_config_perm on every option — so `features: keyctl=1` is root@pam's alone, a
   * token of root@pam's included), the config created locked, then a `vzcreate` task allocates the
   * root volume, "unpacks" the image, writes the config and, with `start`, starts the container.
   * Restore (`restore`, `force`) is not simulated.
   */
  create(caller: Caller, raw: RawParams): string {
    const { ctx } = this;
    const { acl, state } = ctx;
    const node = checkNode(ctx, raw.node);
    const p = verify(
      raw,
      {
        ...BASE,
        ...CONFIG_KEYS,
        ostemplate: { type: "string", maxLength: 255 },
        storage: { ...STORAGE_ID, optional: true },
        password: { type: "string", optional: true },
        "ssh-public-keys": { type: "string", optional: true },
        pool: { ...POOL_ID, optional: true },
        start: BOOL_OPT,
        restore: BOOL_OPT,
        force: BOOL_OPT,
        unique: BOOL_OPT,
        "ignore-unpack-errors": BOOL_OPT,
        bwlimit: { type: "number", optional: true, min: 0 },
        "ha-managed": BOOL_OPT,
      },
      dynamicKey,
    );
    checkQuorum(ctx);
    const vmid = Number(p.vmid);
    const { node: _n, vmid: _v, ostemplate, storage: storageParam, password: _pw, "ssh-public-keys": _keys, pool, start, restore, force: _f, unique: _u, "ignore-unpack-errors": _i, bwlimit: _b, "ha-managed": ha, unprivileged: unprivParam, ...param } = p;
    if (restore !== undefined && bool(restore)) throw die("pve-sim: restoring a backup is not simulated");
    const unprivileged = unprivParam === undefined ? true : bool(unprivParam);
    if (!unprivileged) acl.check(caller, "/", ["Sys.Modify"]);
    if (ha !== undefined && bool(ha)) acl.check(caller, "/", ["Sys.Console"]);
    state.assertUnused(vmid);
    if (pool !== undefined && !state.pools.has(pool)) throw die(`pool '${pool}' does not exist`);
    if (!acl.has(caller, `/vms/${vmid}`, ["VM.Allocate"]) && !(pool !== undefined && acl.has(caller, `/pool/${pool}`, ["VM.Allocate"]))) throw permError();
    const storage = storageParam ?? "local";
    const blank: Container = { vmid, node: node.name, conf: {}, running: false, startedAt: null, pid: null, fs: null as never, guest: null };
    for (const [opt, value] of Object.entries(param)) this.checkModifyPerm(caller, blank, opt, value, false, unprivileged, pool);
    // check_volume_access for the image: a vztmpl volume the caller may read.
    const [tplSid, tplVolname] = splitVolid(ostemplate);
    if (!tplSid || !tplVolname.startsWith("vztmpl/")) throw die(`unable to parse volume ID '${ostemplate}'`);
    acl.checkAny(caller, `/storage/${tplSid}`, ["Datastore.AllocateSpace", "Datastore.Audit"]);

    // The root volume: rootfs (a size on a storage, "<sid>:<GiB>"), else 4 GiB on `storage`.
    const rootfsSpec = param.rootfs ? parseMountpoint(param.rootfs) : { volume: `${storage}:4` };
    const sizeMatch = /^([^:]+):(\d+(?:\.\d+)?)$/.exec(rootfsSpec.volume ?? "");
    if (!sizeMatch) throw die(`pve-sim: rootfs must be a new volume '<storage>:<GiB>', got '${rootfsSpec.volume}'`);
    const rootSid = sizeMatch[1];
    const sizeGiB = Number(sizeMatch[2]);
    if (!state.storage(node.name, rootSid).content.includes("rootdir")) throw paramError({ storage: `storage '${rootSid}' does not support container directories` });
    acl.check(caller, `/storage/${rootSid}`, ["Datastore.AllocateSpace"]);

    const conf: Record<string, string> = {};
    for (const [opt, value] of Object.entries(param)) if (opt !== "rootfs") conf[opt] = this.normalizeValue(opt, value);
    if (unprivileged) conf.unprivileged = "1";
    // create_and_lock_config
    const ct = state.create(node.name, vmid, { lock: "create" });
    return ctx.tasks.spawn(node, "vzcreate", vmid, caller.userid, (log) =>
      this.withFlock(vmid, async () => {
        let volid: string | undefined;
        try {
          await nodeDelay(ctx, node, ctx.latency.createCt);
          const tplStorage = state.storage(node.name, tplSid);
          if (!tplStorage.volumes.has(tplVolname)) throw die(`volume '${ostemplate}' does not exist`);
          volid = state.allocVolume(node.name, rootSid, vmid, sizeGiB * 1024 ** 3);
          log.print(`  Logical volume "${splitVolid(volid)[1]}" created.`);
          log.print(`extracting archive '/var/lib/vz/template/cache/${tplVolname.slice("vztmpl/".length)}'`);
          log.print(`Total bytes read: ${tplStorage.volumes.get(tplVolname)!.size}`);
          conf.rootfs = printMountpoint({ ...rootfsSpec, volume: volid, size: `${sizeGiB}G` });
          conf.hostname ||= `CT${vmid}`;
          conf.memory ||= "512";
          conf.swap ??= "512";
          if (!state.quorate()) throw cfsReadOnly(node.name, vmid, this.daemonPid());
          ct.conf = conf;
          ct.plainOs = true;
          if (pool !== undefined) state.pools.get(pool)?.vms.add(vmid);
        } catch (err) {
          if (volid) state.freeVolume(node.name, volid, vmid, () => {});
          if (state.get(vmid) === ct) state.remove(vmid);
          throw die(`unable to create CT ${vmid} - ${errorText(err)}`);
        }
        if (start !== undefined && bool(start)) {
          await nodeDelay(ctx, node, ctx.latency.start);
          this.boot(ct, log);
        }
      }),
    );
  }

  /**
   * POST /nodes/{node}/lxc/{vmid}/template (src/PVE/API2/LXC.pm `template`, VM.Allocate on the
   * CT): refused while locked, running or already a template; template_create turns every volume
   * into a base volume (vdisk_create_base: vm-<vmid>-disk-N → base-<vmid>-disk-N), which is what
   * linked clones need, and sets `template: 1`. PVE forks a `vztemplate` worker and answers null;
   * the simulator converts before it answers (the answer is the same null).
   */
  async template(caller: Caller, raw: RawParams): Promise<null> {
    const { ctx } = this;
    const { state } = ctx;
    ctx.acl.check(caller, `/vms/${raw.vmid}`, ["VM.Allocate"]);
    const node = checkNode(ctx, raw.node);
    const p = verify(raw, BASE);
    const vmid = Number(p.vmid);
    await this.withFlock(vmid, async () => {
      const ct = state.load(node.name, vmid);
      if (ct.conf.lock) throw locked(ct.conf.lock);
      if (ct.conf.template === "1") throw die("you can't convert a template to a template");
      if (ct.running) throw die("you can't convert a CT to template if the CT is running");
      const mounts = Object.keys(ct.conf).filter(isVolumeKey);
      const next = { ...ct.conf };
      const renames: Array<{ sid: string; from: string; to: string }> = [];
      for (const key of mounts) {
        const mp = parseMountpoint(ct.conf[key], key);
        const [sid, volname] = splitVolid(mp.volume);
        const m = /^(?:(\d+)\/)?vm-(\d+)-disk-(\d+)(\.raw)?$/.exec(volname);
        if (!m) throw die(`Template feature is not available for '${mp.volume}'`);
        const to = m[1] ? `${m[1]}/base-${m[2]}-disk-${m[3]}${m[4] ?? ""}` : `base-${m[2]}-disk-${m[3]}`;
        renames.push({ sid, from: volname, to });
        next[key] = printMountpoint({ ...mp, volume: `${sid}:${to}` });
      }
      await nodeDelay(ctx, node, ctx.latency.config);
      if (!state.quorate()) throw cfsReadOnly(node.name, vmid, this.daemonPid());
      for (const r of renames) {
        const s = state.storage(node.name, r.sid);
        const v = s.volumes.get(r.from);
        if (!v) continue;
        s.volumes.delete(r.from);
        s.volumes.set(r.to, { ...v, volname: r.to });
      }
      next.template = "1";
      ct.conf = next;
    });
    return null;
  }

  // --- power -----------------------------------------------------------------

  start(caller: Caller, raw: RawParams): string {
    const { ctx } = this;
    ctx.acl.check(caller, `/vms/${raw.vmid}`, ["VM.PowerMgmt"]);
    const node = checkNode(ctx, raw.node);
    const p = verify(raw, { ...BASE, skiplock: BOOL_OPT, debug: BOOL_OPT });
    const vmid = Number(p.vmid);
    const skiplock = bool(p.skiplock);
    if (skiplock && !isRootPam(caller)) throw paramError({ skiplock: "Only root may use this option." });
    // check_running is node-local: a CT of another node is "not running" here.
    if (ctx.state.on(node.name, vmid)?.running) throw die(`CT ${vmid} already running`);
    checkQuorum(ctx);
    return ctx.tasks.spawn(node, "vzstart", vmid, caller.userid, (log) =>
      this.withFlock(vmid, async () => {
        const ct = ctx.state.load(node.name, vmid);
        if (ct.conf.template === "1") throw die("you can't start a CT if it's a template");
        if (!skiplock && ct.conf.lock && ct.conf.lock !== "mounted") throw locked(ct.conf.lock);
        if (ct.running) throw die(`CT ${vmid} already running`);
        await this.failLater(node, ctx.faults.forOp("start"), ctx.latency.start, () => configFlockTimeout(vmid), () => die(`startup for container '${vmid}' failed`));
        await nodeDelay(ctx, node, ctx.latency.start);
        this.boot(ct, log);
      }),
    );
  }

  stop(caller: Caller, raw: RawParams): string {
    const { ctx } = this;
    ctx.acl.check(caller, `/vms/${raw.vmid}`, ["VM.PowerMgmt"]);
    const node = checkNode(ctx, raw.node);
    const p = verify(raw, { ...BASE, skiplock: BOOL_OPT, "overrule-shutdown": BOOL_OPT, timeout: { type: "integer", optional: true, min: 0 } });
    const vmid = Number(p.vmid);
    const skiplock = bool(p.skiplock);
    if (skiplock && !isRootPam(caller)) throw paramError({ skiplock: "Only root may use this option." });
    if (!ctx.state.on(node.name, vmid)?.running) throw die(`CT ${vmid} not running`);
    return ctx.tasks.spawn(node, "vzstop", vmid, caller.userid, () =>
      this.withFlock(vmid, async () => {
        const ct = ctx.state.load(node.name, vmid);
        if (!skiplock && ct.conf.lock && ct.conf.lock !== "mounted") throw locked(ct.conf.lock);
        await this.failLater(node, ctx.faults.forOp("stop"), ctx.latency.stop, () => configFlockTimeout(vmid), () => die("container did not stop"));
        ct.guest?.abort("stop");
        await nodeDelay(ctx, node, ctx.latency.stop);
        this.markStopped(ct);
      }),
    );
  }

  shutdown(caller: Caller, raw: RawParams): string {
    const { ctx } = this;
    ctx.acl.check(caller, `/vms/${raw.vmid}`, ["VM.PowerMgmt"]);
    const node = checkNode(ctx, raw.node);
    const p = verify(raw, { ...BASE, timeout: { type: "integer", optional: true, min: 0 }, forceStop: BOOL_OPT });
    const vmid = Number(p.vmid);
    // vm_shutdown (src/PVE/API2/LXC/Status.pm): timeout defaults to 60 s; vm_stop (src/PVE/LXC.pm)
    // runs `lxc-stop --timeout T`, with --nokill unless forceStop.
    const timeoutMs = (p.timeout !== undefined ? Number(p.timeout) : 60) * 1000;
    const forceStop = bool(p.forceStop);
    if (!ctx.state.on(node.name, vmid)?.running) throw die(`CT ${vmid} not running`);
    return ctx.tasks.spawn(node, "vzshutdown", vmid, caller.userid, () =>
      this.withFlock(vmid, async () => {
        const ct = ctx.state.load(node.name, vmid);
        if (ct.conf.lock) throw locked(ct.conf.lock);
        await this.failLater(node, ctx.faults.forOp("shutdown"), ctx.latency.shutdown, () => configFlockTimeout(vmid), () => die("container did not stop"));
        // latency.shutdown is how long the guest takes to shut down cleanly; past the timeout,
        // lxc-stop kills it (forceStop) or gives up with the container still running.
        if (ctx.latency.shutdown <= timeoutMs) {
          ct.guest?.abort("shutdown");
          await nodeDelay(ctx, node, ctx.latency.shutdown);
        } else {
          await nodeSleep(ctx, node, timeoutMs);
          if (!forceStop) throw die("container did not stop");
          ct.guest?.abort("shutdown (killed after the timeout)");
          await nodeDelay(ctx, node, ctx.latency.stop);
        }
        this.markStopped(ct);
      }),
    );
  }

  // --- destroy ---------------------------------------------------------------

  destroy(caller: Caller, raw: RawParams): string {
    const { ctx } = this;
    const { state } = ctx;
    ctx.acl.check(caller, `/vms/${raw.vmid}`, ["VM.Allocate"]);
    const node = checkNode(ctx, raw.node);
    const p = verify(raw, { ...BASE, force: BOOL_OPT, purge: BOOL_OPT, "destroy-unreferenced-disks": BOOL_OPT });
    const vmid = Number(p.vmid);
    const force = bool(p.force);
    const early = (ct: Container) => {
      if (ct.conf.protection === "1") throw die(`can't remove CT ${vmid} - protection mode enabled`);
      if (ct.conf.lock) throw locked(ct.conf.lock);
    };
    const running = `unable to destroy CT ${vmid} - container is running`;
    early(state.load(node.name, vmid));
    if (!force && state.on(node.name, vmid)?.running) throw die(running);
    return ctx.tasks.spawn(node, "vzdestroy", vmid, caller.userid, (log) =>
      this.withFlock(vmid, async () => {
        const ct = state.load(node.name, vmid);
        early(ct);
        if (ct.running) {
          if (!force) throw die(running);
          log.warn(`forced to stop CT ${vmid} before destroying!`);
          ct.guest?.abort("destroy");
          this.markStopped(ct);
        }
        const volids = Object.entries(ct.conf)
          .filter(([k]) => isVolumeKey(k) || isUnused(k))
          .map(([k, v]) => (isUnused(k) ? v : parseMountpoint(v, k).volume))
          .filter((v) => v.includes(":"));
        const sid = volids[0] ? splitVolid(volids[0])[0] : "local-lvm";
        await this.failLater(node, ctx.faults.forOp("destroy"), ctx.latency.destroy, () => storageLockTimeout(sid), () =>
          die(`lvremove 'pve/vm-${vmid}-disk-0' error:   Logical volume pve/vm-${vmid}-disk-0 in use.`),
        );
        await nodeDelay(ctx, node, ctx.latency.destroy * 0.7);
        for (const volid of volids) state.freeVolume(node.name, volid, vmid, (l) => log.warn(l));
        // destroy_lxc_container writes the replacement config: read-only /etc/pve without quorum.
        if (!state.quorate()) throw cfsReadOnly(node.name, vmid, this.daemonPid());
        ct.conf = { lock: "destroyed" }; // the replacement config until the end
        await nodeDelay(ctx, node, ctx.latency.destroy * 0.3);
        state.firewall.remove(vmid); // remove_vmfw_conf
        if (bool(p.purge)) log.print(`purging CT ${vmid} from related configurations..`);
        state.remove(vmid);
        ctx.stats.forget(vmid);
      }),
    );
  }

  // --- helpers ---------------------------------------------------------------

  /** A lock wait that runs into its timeout on `node`: the full (scaled) timeout, then the error. */
  private async lockTimeout(node: SimNode, err: Error): Promise<never> {
    await nodeSleep(this.ctx, node, this.ctx.latency.lockTimeout);
    throw err;
  }

  /** The pid of the pvedaemon worker that writes a file (its temp file's name). */
  private daemonPid(): number {
    return 1_400 + (this.writes++ % 600);
  }

  /** lock_config around a worker: waits for the CT's flock (10 s, then "got timeout"). */
  private async withFlock(vmid: number, fn: () => Promise<void>): Promise<void> {
    const release = await this.ctx.state.flock(vmid, this.ctx.clock.scaled(this.ctx.latency.lockTimeout));
    try {
      await fn();
    } finally {
      release();
    }
  }

  /** An injected fault: a lock wait runs into its timeout; an error strikes halfway through. */
  private async failLater(node: SimNode, fault: Fault | null, latency: number, lockErr: () => Error, opErr: () => Error): Promise<void> {
    if (!fault) return;
    if (fault.kind === "lock") return this.lockTimeout(node, lockErr());
    await nodeDelay(this.ctx, node, latency / 2);
    throw fault.kind === "error" && fault.message ? die(fault.message.replace(/^clone failed: /, "")) : opErr();
  }

  /** vm_start succeeded: the container runs and its guest boots. */
  private boot(ct: Container, log: TaskLog): void {
    const { ctx } = this;
    ct.running = true;
    ct.startedAt = Date.now();
    ct.pid = ctx.state.newPid();
    if (ct.plainOs) {
      // A CT made from an image: it boots and idles; there is no runner unit in it (yet).
      ct.guest = new PlainOsGuest(ctx.clock, ctx.guestTimings.bootMs);
      return;
    }
    const env = parseEnv(ct.conf.env);
    const guest: SimGuest = new SimGuest({
      vmid: ct.vmid,
      fs: ct.fs,
      env,
      clock: ctx.clock,
      log: ctx.log.child({ part: "guest", vmid: ct.vmid }),
      timings: ctx.guestTimings,
      hang: ctx.faults.forOp("guest")?.kind === "hang",
      powerOff: () => {
        if (ct.guest === guest) this.markStopped(ct);
      },
    });
    ct.guest = guest;
    void guest.run();
    if (Object.keys(env).length) log.print(`container environment: ${Object.keys(env).sort().join(", ")}`);
  }

  markStopped(ct: Container): void {
    ct.guest?.abort("stopped");
    ct.guest = null;
    ct.running = false;
    ct.startedAt = null;
    ct.pid = null;
    ct.fs.wipeTmpfs();
  }
}

const splitList = (v: string | undefined): string[] => splitTags(v ?? "");

/** The EUI-64 IPv6 link-local address of a MAC (fe80::/64). */
function linkLocal(mac: string): string {
  const b = mac.split(":").map((x) => Number.parseInt(x, 16));
  const words = [((b[0] ^ 2) << 8) | b[1], (b[2] << 8) | 0xff, 0xfe00 | b[3], (b[4] << 8) | b[5]];
  return `fe80::${words.map((w) => w.toString(16)).join(":")}`;
}
