// API tokens and ACLs, evaluated the way PVE::RPCEnvironment does (pve-access-control src/PVE/RPCEnvironment.pm): ACLs on a path
// apply there, and below it when they propagate; ACLs on /pool/<id> are inherited by the pool's
// member guests (/vms/<vmid>) and storages (/storage/<sid>). Tokens get only their own ACLs.
import { permError } from "./errors.js";

/** Every privilege PVE 8/9 knows (the Administrator role). */
export const ALL_PRIVILEGES = [
  "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
  "Group.Allocate", "Mapping.Audit", "Mapping.Modify", "Mapping.Use", "Permissions.Modify",
  "Pool.Allocate", "Pool.Audit", "Realm.Allocate", "Realm.AllocateUser",
  "SDN.Allocate", "SDN.Audit", "SDN.Use",
  "Sys.AccessNetwork", "Sys.Audit", "Sys.Console", "Sys.Incoming", "Sys.Modify", "Sys.PowerMgmt", "Sys.Syslog",
  "User.Modify", "VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone", "VM.Config.CDROM", "VM.Config.CPU",
  "VM.Config.Cloudinit", "VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network",
  "VM.Config.Options", "VM.Console", "VM.GuestAgent.Audit", "VM.GuestAgent.FileRead", "VM.GuestAgent.FileSystemMgmt",
  "VM.GuestAgent.FileWrite", "VM.GuestAgent.Unrestricted", "VM.Migrate", "VM.PowerMgmt", "VM.Replicate",
  "VM.Snapshot", "VM.Snapshot.Rollback",
] as const;

/**
 * The least-privilege role pve-runners needs, granted on /pool/<pool> (template and storage are pool
 * members, so guests and the storage inherit it). Proven sufficient by test/sim/pve-privileges.test.ts
 * for clone → config → start → stop → destroy.
 */
export const PVE_RUNNERS_ROLE = [
  "VM.Clone",
  "VM.Allocate",
  "VM.PowerMgmt",
  "VM.Config.Network",
  "VM.Config.CPU",
  "VM.Config.Memory",
  "VM.Config.Options",
  "VM.Audit",
  "Datastore.AllocateSpace",
] as const;

/** Granted on /sdn/zones/localnetwork/<bridge> (propagates to its VLANs): every NIC on that bridge. */
export const PVE_RUNNERS_SDN_ROLE = ["SDN.Use"] as const;

export interface AclEntry {
  path: string;
  privs: readonly string[];
  propagate: boolean;
}

export interface TokenDef {
  /** USER@REALM!TOKENID */
  id: string;
  secret: string;
  /** A non-privsep token of root@pam: every privilege everywhere. Still not `root@pam` itself. */
  superuser?: boolean;
  acls: AclEntry[];
}

/** The ACLs of the runners token, for docs (pveum acl modify …). */
export const PVE_RUNNERS_ACLS = (pool = "ci", bridge = "vmbr1"): AclEntry[] => [
  { path: `/pool/${pool}`, privs: PVE_RUNNERS_ROLE, propagate: true },
  { path: `/sdn/zones/localnetwork/${bridge}`, privs: PVE_RUNNERS_SDN_ROLE, propagate: true },
];

export const SIM_TOKENS = {
  /** Stands in for root (used by the `pct` stand-in and tests): every privilege. */
  root: { id: "root@pam!sim", secret: "5f0c6a2e-3b1d-4c8e-9a47-1d2e3f4a5b6c", superuser: true, acls: [] } as TokenDef,
  /** Exactly the documented least-privilege grants. */
  runners: { id: "pve-runners@pve!listener", secret: "8c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", acls: PVE_RUNNERS_ACLS() } as TokenDef,
  /** Read-only: VM.Audit on every guest, nothing else. */
  auditor: {
    id: "auditor@pve!audit",
    secret: "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901",
    acls: [{ path: "/vms", privs: ["VM.Audit"], propagate: true }],
  } as TokenDef,
} satisfies Record<string, TokenDef>;

/** The authenticated caller of one request. */
export interface Caller {
  /** user@realm!tokenid, as in task UPIDs. */
  userid: string;
  user: string;
  tokenid: string;
  token: TokenDef;
}

export function callerOf(token: TokenDef): Caller {
  const [user, tokenid] = token.id.split("!");
  return { userid: token.id, user, tokenid, token };
}

/** Checks like `$authuser eq 'root@pam'`: an API token never is root@pam, not even root's. */
export const isRootPam = (c: Caller): boolean => c.userid === "root@pam";

export interface PoolMembers {
  id: string;
  vms: ReadonlySet<number>;
  storage: ReadonlySet<string>;
}

export class Acl {
  constructor(private readonly pools: () => Iterable<PoolMembers>) {}

  /** Privileges `caller` has on `path`. */
  privileges(caller: Caller, path: string): Set<string> {
    if (caller.token.superuser) return new Set(ALL_PRIVILEGES);
    const privs = new Set<string>(this.pathPrivs(caller.token.acls, path));
    // Pool ACLs reach member guests and storages (never with propagation further down).
    const m = /^\/(vms|storage)\/([^/]+)$/.exec(path);
    if (m) {
      for (const pool of this.pools()) {
        const member = m[1] === "vms" ? pool.vms.has(Number(m[2])) : pool.storage.has(m[2]);
        if (member) for (const p of this.pathPrivs(caller.token.acls, `/pool/${pool.id}`)) privs.add(p);
      }
    }
    return privs;
  }

  /**
   * GET /access/permissions?path=: privilege → propagate (1/0) on one path, as
   * RPCEnvironment::permissions gives it (pve-access-control src/PVE/API2/AccessControl.pm
   * `permissions`). A privilege inherited from a pool propagates no further.
   */
  effective(caller: Caller, path: string): Record<string, 0 | 1> {
    const out: Record<string, 0 | 1> = {};
    if (caller.token.superuser) {
      for (const p of ALL_PRIVILEGES) out[p] = 1;
      return out;
    }
    for (const p of this.privileges(caller, path)) out[p] = 0;
    for (const a of caller.token.acls) if (a.path === path && a.propagate) for (const p of a.privs) out[p] = 1;
    return out;
  }

  has(caller: Caller, path: string, privs: readonly string[]): boolean {
    const have = this.privileges(caller, path);
    return privs.every((p) => have.has(p));
  }

  hasAny(caller: Caller, path: string, privs: readonly string[]): boolean {
    const have = this.privileges(caller, path);
    return privs.some((p) => have.has(p));
  }

  /** rpcenv->check: 403 "Permission check failed (<path>, <first missing priv>)". */
  check(caller: Caller, path: string, privs: readonly string[]): void {
    const have = this.privileges(caller, path);
    for (const p of privs) if (!have.has(p)) throw permError(`${path}, ${p}`);
  }

  /** rpcenv->check_any: the message lists the alternatives joined with "|". */
  checkAny(caller: Caller, path: string, privs: readonly string[]): void {
    if (!this.hasAny(caller, path, privs)) throw permError(`${path}, ${privs.join("|")}`);
  }

  /** rpcenv->check_vm_perm: the pool's ACL first (when given), then /vms/<vmid>. */
  checkVm(caller: Caller, vmid: number, pool: string | undefined, privs: readonly string[]): void {
    if (pool && this.has(caller, `/pool/${pool}`, privs)) return;
    this.check(caller, `/vms/${vmid}`, privs);
  }

  /** PVE::AccessControl::roles: the most specific level with ACLs wins; ancestors only if they propagate. */
  private pathPrivs(acls: readonly AclEntry[], path: string): string[] {
    const parts = path.split("/").filter(Boolean);
    let privs: string[] = [];
    for (let i = 0; i <= parts.length; i++) {
      const prefix = "/" + parts.slice(0, i).join("/");
      const here = acls.filter((a) => a.path === prefix);
      if (here.length === 0) continue;
      const final = i === parts.length;
      privs = here.filter((a) => final || a.propagate).flatMap((a) => [...a.privs]);
    }
    return privs;
  }
}
