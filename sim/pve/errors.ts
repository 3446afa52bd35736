// PVE's error shapes (pve-http-server + PVE::Exception): the reason phrase is the message's first
// line, the json body is {"data":null,"message":"…\n"} plus "errors" for parameter errors (400).
export class PveError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors?: Record<string, string>,
    /** Auth failures and proxy errors carry no body, only the status line. */
    readonly bare = false,
  ) {
    super(message);
  }

  body(): Record<string, unknown> {
    const b: Record<string, unknown> = { data: null, message: this.message };
    if (this.errors) b.errors = this.errors;
    return b;
  }
}

/** A plain `die "…\n"` in a PVE handler: 500 with the text as message. */
export const die = (msg: string) => new PveError(500, `${msg}\n`);

/** raise_param_exc: 400 "Parameter verification failed." with per-parameter messages. */
export const paramError = (errors: Record<string, string>) => new PveError(400, "Parameter verification failed.\n", errors);

/** raise_perm_exc: 403, with "(path, priv)" or a free text in parentheses. */
export const permError = (what?: string) => new PveError(403, `Permission check failed${what ? ` (${what})` : ""}\n`);

export const notImplemented = (method: string, path: string) => new PveError(501, `Method '${method} ${path}' not implemented`);

export const configMissing = (node: string, vmid: number | string) => die(`Configuration file 'nodes/${node}/lxc/${vmid}.conf' does not exist`);

export const locked = (lock: string) => die(`CT is locked (${lock})`);

/** The node-local flock on a CT config (10 s timeout). */
export const configFlockTimeout = (vmid: number) => die(`can't lock file '/run/lock/lxc/pve-config-${vmid}.lock' - got timeout`);

/** The storage lock taken around volume allocation and removal. */
export const storageLockTimeout = (sid: string) => die(`can't lock file '/var/lock/pve-manager/pve-storage-${sid}' - got timeout`);

/** pveproxy could not reach pvedaemon: status line only. */
export const proxyTimeout = () => new PveError(596, "Connection timed out", undefined, true);

/**
 * pveproxy proxying a /nodes/{node}/… call (proxyto => 'node') to a node that is down: AnyEvent::HTTP
 * fails to connect and pve-http-server's proxy_request (src/PVE/APIServer/AnyEvent.pm) passes its
 * pseudo-status on — 595 ("errors during connection establishment") with "$!" as the reason and no
 * body. A powered-off or cut-off node on the LAN answers no ARP, so connect() gives EHOSTUNREACH
 * after the ~3 s ARP timeout: "595 No route to host", as pveproxy logs it for offline nodes
 * (sergelogvinov/proxmox-cloud-controller-manager#206, canvrno/ProxmoxMCP#15).
 */
export class NodeUnreachable extends PveError {
  constructor(readonly node: string) {
    super(595, "No route to host", undefined, true);
  }
}

/** PVE::Cluster::check_cfs_quorum: /etc/pve is read-only without quorum. */
export const noQuorum = () => die("cluster not ready - no quorum?");

/** A config write into read-only /etc/pve (no quorum): PVE::File::file_set_contents. */
export const cfsReadOnly = (node: string, vmid: number, pid: number) => die(`unable to open file '/etc/pve/nodes/${node}/lxc/${vmid}.conf.tmp.${pid}' - Permission denied`);

/** Text of an error as a task's exit status or a log line (no trailing newline). */
export const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err)).replace(/\n+$/, "");
