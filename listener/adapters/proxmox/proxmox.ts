// The Proxmox VE API adapter for what terraform does not do: env-mode JIT delivery, container
// status, and (for the sweeper) listing and removing runner containers. Token auth, no CSRF.
import http from "node:http";
import https from "node:https";
import type { Logger } from "pino";
import { upstreamRoots } from "../../lifecycle/clone-gate.js";

export class ProxmoxError extends Error {
  constructor(readonly status: number, message: string, readonly errors?: Record<string, string>) {
    super(message);
  }
  /** PVE answers 500 "Configuration file … does not exist" for an unknown vmid. */
  get notFound(): boolean {
    return this.status === 404 || /does not exist/.test(this.message);
  }
}

export interface ProxmoxApiOptions {
  endpoint: string; // https://pve:8006/ (the /api2/json suffix is added)
  token: string; // USER@REALM!TOKENID=SECRET
  logger: Logger;
  requestTimeoutMs?: number;
  /** Between task status polls. */
  pollMs?: number;
  /**
   * Self-signed PVE certificates: skip verification on this client's own connections only (its own
   * agent). Nothing process-wide: GitHub and everything else stay verified. The alternative is to
   * trust PVE's CA: the system bundle or NODE_EXTRA_CA_CERTS=/etc/pve/pve-root-ca.pem (upstreamRoots).
   */
  insecure?: boolean;
}

export interface ContainerStatus {
  vmid: number;
  status: "running" | "stopped" | string;
  name?: string;
  lock?: string;
  tags?: string;
  template?: number;
  uptime?: number;
}

/** Consecutive failed status polls after which waitTask gives up. */
const TASK_POLL_FAILURES = 5;
/** No answer at all (0), a proxy's 502/503, pveproxy's 595 (no route to pvedaemon) and 596 (timeout). */
const TRANSIENT_STATUS = new Set([0, 502, 503, 595, 596]);

/** OpenSSL's certificate errors, for a clear message when the PVE certificate is not trusted. */
const CERT_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|HOSTNAME|ALTNAME/;

export class ProxmoxApi {
  private readonly base: URL;
  private readonly agent: http.Agent;
  constructor(private readonly opts: ProxmoxApiOptions) {
    this.base = new URL(opts.endpoint.replace(/\/+$/, "") + "/api2/json");
    // http only for the simulator (the config refuses it otherwise, listener/app/config.ts).
    this.agent =
      this.base.protocol === "https:"
        ? new https.Agent({ keepAlive: true, rejectUnauthorized: !opts.insecure, ca: opts.insecure ? undefined : upstreamRoots() })
        : new http.Agent({ keepAlive: true });
  }

  async request<T>(method: "GET" | "POST" | "PUT" | "DELETE", path: string, params: Record<string, string | number | boolean | undefined> = {}): Promise<T> {
    const form = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined) form.set(k, typeof v === "boolean" ? (v ? "1" : "0") : String(v));
    const withQuery = method === "GET" || method === "DELETE";
    const url = new URL(this.base.href + path + (withQuery && [...form].length ? `?${form}` : ""));
    const body = withQuery ? undefined : form.toString();
    let res: { status: number; statusText: string; text: string };
    try {
      res = await this.send(method, url, body);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code && CERT_ERROR.test(e.code)) {
        throw new ProxmoxError(0, `${method} ${path}: the PVE certificate is not trusted (${e.message}): set proxmox.insecure: true, or trust PVE's CA (system bundle or NODE_EXTRA_CA_CERTS)`);
      }
      throw new ProxmoxError(0, `${method} ${path}: ${e.name === "AbortError" ? `no answer within ${this.opts.requestTimeoutMs ?? 30_000} ms` : e.message}`);
    }
    let parsed: { data?: unknown; message?: string; errors?: Record<string, string> } = {};
    try {
      parsed = res.text ? JSON.parse(res.text) : {};
    } catch {
      /* a proxy error page: fall through with the status line */
    }
    if (res.status < 200 || res.status > 299) {
      const detail = parsed.errors ? ` (${Object.entries(parsed.errors).map(([k, v]) => `${k}: ${v}`).join("; ")})` : "";
      throw new ProxmoxError(res.status, `${method} ${path}: ${res.status} ${(parsed.message ?? res.statusText).trim()}${detail}`, parsed.errors);
    }
    return parsed.data as T;
  }

  /** One request on this client's own agent; the answer buffered. */
  private send(method: string, url: URL, body: string | undefined): Promise<{ status: number; statusText: string; text: string }> {
    const headers: Record<string, string | number> = { authorization: `PVEAPIToken=${this.opts.token}` };
    if (body !== undefined) Object.assign(headers, { "content-type": "application/x-www-form-urlencoded", "content-length": Buffer.byteLength(body) });
    const request = url.protocol === "https:" ? https.request : http.request;
    return new Promise((resolve, reject) => {
      const req = request(url, { method, headers, agent: this.agent, signal: AbortSignal.timeout(this.opts.requestTimeoutMs ?? 30_000) }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? "", text: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(body);
    });
  }

  /** GET /cluster/resources: nodes (with load, given Sys.Audit) or guests (those the token may audit). */
  clusterResources(type: "node" | "vm"): Promise<Array<Record<string, unknown>>> {
    return this.request("GET", "/cluster/resources", { type });
  }

  /**
   * GET /cluster/nextid?vmid=N: N is free when PVE returns it; 400 "VM N already exists" when any
   * guest of the cluster has it (pve-manager PVE/API2/Cluster.pm nextid checks the whole vmlist,
   * whatever the token may see). Anything else is an error.
   */
  async vmidFree(vmid: number): Promise<boolean> {
    try {
      await this.request("GET", "/cluster/nextid", { vmid });
      return true;
    } catch (err) {
      if (err instanceof ProxmoxError && err.status === 400 && /already exists/.test(err.message)) return false;
      throw err;
    }
  }

  /** Waits for a task to stop; throws with its exit status unless it is OK (or WARNINGS). */
  async waitTask(node: string, upid: string, timeoutMs = 300_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let failures = 0;
    while (Date.now() < deadline) {
      let t: { status: string; exitstatus?: string };
      try {
        t = await this.request<{ status: string; exitstatus?: string }>("GET", `/nodes/${node}/tasks/${encodeURIComponent(upid)}/status`);
        failures = 0;
      } catch (err) {
        // The task runs on whether or not we could look: no answer (a dropped keep-alive socket),
        // a proxy's 502/503 or pveproxy's 595/596 is asked again; anything else, or 5 failures in a
        // row, is the answer.
        const transient = err instanceof ProxmoxError && TRANSIENT_STATUS.has(err.status);
        if (!transient || ++failures >= TASK_POLL_FAILURES) throw err;
        await new Promise((r) => setTimeout(r, this.opts.pollMs ?? 500));
        continue;
      }
      if (t.status === "stopped") {
        if (t.exitstatus === "OK" || t.exitstatus?.startsWith("WARNINGS")) return;
        throw new ProxmoxError(500, `task ${upid.split(":")[5] ?? ""} failed: ${t.exitstatus}`);
      }
      await new Promise((r) => setTimeout(r, this.opts.pollMs ?? 500));
    }
    throw new ProxmoxError(504, `task ${upid} did not finish within ${timeoutMs} ms`);
  }

  containerStatus(node: string, vmid: number): Promise<ContainerStatus> {
    return this.request("GET", `/nodes/${node}/lxc/${vmid}/status/current`);
  }

  containerConfig(node: string, vmid: number): Promise<Record<string, string | number>> {
    return this.request("GET", `/nodes/${node}/lxc/${vmid}/config`);
  }

  listContainers(node: string): Promise<ContainerStatus[]> {
    return this.request("GET", `/nodes/${node}/lxc`);
  }

  async setConfig(node: string, vmid: number, params: Record<string, string | number | boolean | undefined>): Promise<void> {
    await this.request("PUT", `/nodes/${node}/lxc/${vmid}/config`, params);
  }

  async start(node: string, vmid: number): Promise<void> {
    const upid = await this.request<string>("POST", `/nodes/${node}/lxc/${vmid}/status/start`);
    await this.waitTask(node, upid);
  }

  /**
   * Starts the container unless it runs already (after a restart it may). PVE refuses to start a
   * running CT before it makes a task ("CT N already running", pve-container API2/LXC/Status.pm
   * vm_start), so there is no status read first: that round trip was on every runner's way to its job.
   */
  async ensureStarted(node: string, vmid: number): Promise<void> {
    await this.start(node, vmid).catch((err: Error) => {
      if (!/already running/.test(err.message)) throw err;
    });
  }

  async stop(node: string, vmid: number): Promise<void> {
    const upid = await this.request<string>("POST", `/nodes/${node}/lxc/${vmid}/status/stop`);
    await this.waitTask(node, upid);
  }

  async destroy(node: string, vmid: number): Promise<void> {
    const upid = await this.request<string>("DELETE", `/nodes/${node}/lxc/${vmid}`, { purge: 1, "destroy-unreferenced-disks": 1 });
    await this.waitTask(node, upid);
  }
}
