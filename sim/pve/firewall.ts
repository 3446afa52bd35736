// The guest and cluster firewall endpoints as pve-firewall serves them (src/PVE/API2/Firewall/
// VM.pm, Rules.pm, Groups.pm, Cluster.pm; PVE::Firewall's option and rule schemas and
// rules_{modify,audit}_permissions). /etc/pve/firewall/<vmid>.fw is cluster-wide and independent
// of the guest: PVE neither checks that the guest exists nor removes the file unless pve-container
// does (clone copies it: clone_vmfw_conf; destroy and a failed clone remove it: remove_vmfw_conf).
import { createHash } from "node:crypto";
import { checkNode, type PveContext } from "./context.js";
import { die, paramError } from "./errors.js";
import { NODE, VMID, parseBoolean, verify, type ParamDef, type RawParams, type Schema } from "./params.js";
import type { Caller } from "./privileges.js";

export interface FwRule {
  type: string;
  action: string;
  [key: string]: string;
}

/** One <vmid>.fw: [OPTIONS] and [RULES]. */
export interface VmFirewall {
  options: Record<string, string>;
  rules: FwRule[];
}

/** cluster.fw: [OPTIONS] and the [group <name>] sections. */
export interface ClusterFirewall {
  options: Record<string, string>;
  groups: Map<string, { comment?: string; rules: FwRule[] }>;
}

/** The firewall files of /etc/pve/firewall (pmxcfs: the same on every node). */
export class FirewallFiles {
  readonly vms = new Map<number, VmFirewall>();
  readonly cluster: ClusterFirewall = { options: {}, groups: new Map() };

  /** load_vmfw_conf: a missing file reads as empty options and no rules. */
  vm(vmid: number): VmFirewall {
    const f = this.vms.get(vmid);
    return f ? { options: { ...f.options }, rules: f.rules.map((r) => ({ ...r })) } : { options: {}, rules: [] };
  }

  save(vmid: number, conf: VmFirewall): void {
    this.vms.set(vmid, conf);
  }

  /** clone_vmfw_conf (PVE::Firewall::Helpers): the target's file replaced by a copy of the source's, if any. */
  clone(from: number, to: number): void {
    this.vms.delete(to);
    if (this.vms.has(from)) this.vms.set(to, this.vm(from));
  }

  /** remove_vmfw_conf. */
  remove(vmid: number): void {
    this.vms.delete(vmid);
  }
}

const bool: ParamDef = { type: "boolean", optional: true };
const POLICY: ParamDef = { type: "string", optional: true, enum: ["ACCEPT", "REJECT", "DROP"] };
const LOG_LEVEL: ParamDef = { type: "string", optional: true, enum: ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "nolog"] };
/** $PVE::Firewall::vm_option_properties. */
const VM_OPTIONS: Schema = {
  enable: bool,
  macfilter: bool,
  dhcp: bool,
  ndp: bool,
  radv: bool,
  ipfilter: bool,
  policy_in: POLICY,
  policy_out: POLICY,
  log_level_in: LOG_LEVEL,
  log_level_out: LOG_LEVEL,
};
const BOOL_OPTIONS = new Set(["enable", "macfilter", "dhcp", "ndp", "radv", "ipfilter"]);
/** The subset of $PVE::Firewall::cluster_option_properties the simulator keeps. */
const CLUSTER_OPTIONS: Schema = { enable: { type: "integer", optional: true, min: 0 }, ebtables: bool, policy_in: POLICY, policy_out: POLICY, log_ratelimit: { type: "string", optional: true } };

const GROUP_NAME: ParamDef = { type: "string", pattern: /^[A-Za-z][A-Za-z0-9\-_]+$/, maxLength: 18 };
const DIGEST: ParamDef = { type: "string", optional: true, maxLength: 64 };
/** add_rule_properties (create_rule: action and type required). */
const RULE: Schema = {
  type: { type: "string", pattern: /^(in|out|forward|group)$/ },
  action: { type: "string", pattern: /^[A-Za-z][A-Za-z0-9\-_]+$/, maxLength: 20 },
  pos: { type: "integer", optional: true, min: 0 },
  enable: { type: "integer", optional: true, min: 0 },
  macro: { type: "string", optional: true, maxLength: 128 },
  source: { type: "string", optional: true, maxLength: 512 },
  dest: { type: "string", optional: true, maxLength: 512 },
  proto: { type: "string", optional: true },
  sport: { type: "string", optional: true },
  dport: { type: "string", optional: true },
  iface: { type: "string", optional: true, maxLength: 20 },
  log: LOG_LEVEL,
  comment: { type: "string", optional: true },
  "icmp-type": { type: "string", optional: true },
  digest: DIGEST,
};
/** $rule_env_direction_lookup. */
const RULE_TYPES: Record<"ct" | "group", readonly string[]> = { ct: ["in", "out", "group"], group: ["in", "out", "forward"] };

/** copy_opject_with_digest: sha1 over "key:value\n" of the sorted keys. */
function withDigest(obj: Record<string, string>): Record<string, unknown> & { digest: string } {
  const sha = createHash("sha1");
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(obj).sort()) {
    out[k] = BOOL_OPTIONS.has(k) || k === "enable" ? Number(obj[k]) : obj[k];
    sha.update(`${k}:${obj[k]}\n`);
  }
  return { ...out, digest: sha.digest("hex") };
}

const listDigest = (rules: FwRule[]) => createHash("sha1").update(JSON.stringify(rules)).digest("hex");

export class FirewallApi {
  constructor(private readonly ctx: PveContext) {}

  private get files(): FirewallFiles {
    return this.ctx.state.firewall;
  }

  // --- /nodes/{node}/lxc/{vmid}/firewall/options (proxyto node) -----------------

  getOptions(caller: Caller, raw: RawParams): Record<string, unknown> {
    this.ctx.acl.check(caller, `/vms/${raw.vmid}`, ["VM.Audit"]);
    checkNode(this.ctx, raw.node);
    const p = verify(raw, { node: NODE, vmid: VMID });
    return withDigest(this.files.vm(Number(p.vmid)).options);
  }

  setOptions(caller: Caller, raw: RawParams): null {
    this.ctx.acl.check(caller, `/vms/${raw.vmid}`, ["VM.Config.Network"]);
    checkNode(this.ctx, raw.node);
    const p = verify(raw, { node: NODE, vmid: VMID, ...VM_OPTIONS, delete: { type: "string", optional: true }, digest: DIGEST });
    const vmid = Number(p.vmid);
    const conf = this.files.vm(vmid);
    if (p.digest !== undefined && p.digest !== withDigest(conf.options).digest) throw die("detected modified configuration - file changed by other user? Try again.");
    for (const opt of (p.delete ?? "").split(/[,;\s]+/).filter(Boolean)) {
      if (!VM_OPTIONS[opt]) throw paramError({ delete: `no such option '${opt}'` });
      delete conf.options[opt];
    }
    for (const k of Object.keys(VM_OPTIONS)) {
      if (p[k] === undefined) continue;
      // Booleans are normalised to 1/0 by the schema check (PVE::JSONSchema check_type).
      conf.options[k] = BOOL_OPTIONS.has(k) ? (parseBoolean(p[k]) ? "1" : "0") : p[k];
    }
    this.files.save(vmid, conf);
    return null;
  }

  // --- /nodes/{node}/lxc/{vmid}/firewall/rules (not proxied) ---------------------

  getRules(caller: Caller, raw: RawParams): unknown[] {
    this.ctx.acl.check(caller, `/vms/${raw.vmid}`, ["VM.Audit"]);
    const p = verify(raw, { node: NODE, vmid: VMID });
    return numbered(this.files.vm(Number(p.vmid)).rules);
  }

  createRule(caller: Caller, raw: RawParams): null {
    this.ctx.acl.check(caller, `/vms/${raw.vmid}`, ["VM.Config.Network"]);
    const p = verify(raw, { node: NODE, vmid: VMID, ...RULE });
    const vmid = Number(p.vmid);
    const conf = this.files.vm(vmid);
    conf.rules.unshift(newRule(p, "ct"));
    this.files.save(vmid, conf);
    return null;
  }

  // --- /cluster/firewall ---------------------------------------------------------

  listGroups(_caller: Caller, raw: RawParams): unknown[] {
    verify(raw, {});
    return [...this.files.cluster.groups.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([group, g]) => ({ group, ...(g.comment ? { comment: g.comment } : {}), digest: listDigest(g.rules) }));
  }

  createGroup(caller: Caller, raw: RawParams): null {
    this.ctx.acl.check(caller, "/", ["Sys.Modify"]);
    const p = verify(raw, { group: GROUP_NAME, comment: { type: "string", optional: true }, digest: DIGEST });
    if (this.files.cluster.groups.has(p.group)) throw paramError({ group: `Security group '${p.group}' already exists` });
    this.files.cluster.groups.set(p.group, { comment: p.comment, rules: [] });
    return null;
  }

  getGroupRules(caller: Caller, raw: RawParams): unknown[] {
    this.ctx.acl.check(caller, "/", ["Sys.Audit"]);
    const p = verify(raw, { group: GROUP_NAME });
    return numbered(this.group(p.group).rules);
  }

  createGroupRule(caller: Caller, raw: RawParams): null {
    this.ctx.acl.check(caller, "/", ["Sys.Modify"]);
    const p = verify(raw, { group: GROUP_NAME, ...RULE });
    this.group(p.group).rules.unshift(newRule(p, "group"));
    return null;
  }

  getClusterOptions(caller: Caller, raw: RawParams): Record<string, unknown> {
    this.ctx.acl.check(caller, "/", ["Sys.Audit"]);
    verify(raw, {});
    return withDigest(this.files.cluster.options);
  }

  setClusterOptions(caller: Caller, raw: RawParams): null {
    this.ctx.acl.check(caller, "/", ["Sys.Modify"]);
    const p = verify(raw, { ...CLUSTER_OPTIONS, delete: { type: "string", optional: true }, digest: DIGEST });
    const { delete: del, digest: _d, ...set } = p;
    for (const opt of (del ?? "").split(/[,;\s]+/).filter(Boolean)) delete this.files.cluster.options[opt];
    Object.assign(this.files.cluster.options, set);
    return null;
  }

  private group(name: string) {
    const g = this.files.cluster.groups.get(name);
    if (!g) throw die(`no such security group '${name}'`);
    return g;
  }
}

/** verify_rule's checks for the rule kinds the simulator keeps; a rule is disabled unless `enable` is given. */
function newRule(p: RawParams, env: "ct" | "group"): FwRule {
  const { node: _n, vmid: _v, group: _g, pos: _p, digest: _d, ...rest } = p;
  const errors: Record<string, string> = {};
  if (!RULE_TYPES[env].includes(rest.type)) errors.type = `invalid rule type '${rest.type}' for rule_env '${env}'`;
  else if (rest.type !== "group" && !/^(ACCEPT|DROP|REJECT)$/.test(rest.action)) errors.action = `unknown action '${rest.action}'`;
  if (rest.iface && env === "ct" && !/^net\d+$/.test(rest.iface)) errors.iface = "value does not match the regex pattern 'net\\d+'";
  if (Object.keys(errors).length) throw paramError(errors);
  return { ...rest, type: rest.type, action: rest.action, enable: rest.enable ?? "0" };
}

const numbered = (rules: FwRule[]) => rules.map((r, pos) => ({ pos, ...r, enable: Number(r.enable) }));
