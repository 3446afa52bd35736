// The Proxmox VE API simulator: a cluster (by default one node, "pve") with the runner template(s),
// pool and storages, speaking /api2/json the way PVE 8/9 does (pve-manager, pve-container, pve-access-control sources) —
// envelopes and errors, locks, tasks and UPIDs, token privileges, lagging /cluster/resources,
// nodes going offline — plus simulated guests that run one GitHub Actions job each and power
// themselves off.
import { createServer as createHttpsServer } from "node:https";
import type { Server } from "node:http";
import express, { type NextFunction, type Request, type Response } from "express";
import { pino, type Logger } from "pino";
import { SimClock } from "../github/clock.js";
import { createRng } from "../github/rng.js";
import { apiRouter, bodyParsers, sendError } from "./api.js";
import type { PveContext } from "./context.js";
import { nodeUptime, storageUsed } from "./cluster.js";
import { CloneHold } from "./clone-hold.js";
import { CloneLog, cloneOverlaps, type CloneCounts, type CloneOverlap, type CloneRecord } from "./clone-log.js";
import { controlRouter } from "./control.js";
import { PveError, configMissing, die } from "./errors.js";
import { DEFAULT_LATENCY, FaultInjector, type FaultsBody, type Latency } from "./faults.js";
import { DEFAULT_GUEST, type GuestTimings } from "./guest.js";
import type { VmFirewall } from "./firewall.js";
import { LxcApi } from "./lxc.js";
import { Acl, SIM_TOKENS, type TokenDef } from "./privileges.js";
import { StatsDaemon } from "./rrd.js";
import { execInGuest, type ExecResult } from "./shell.js";
import { PveState, type Container, type SimNodeSpec, type SimTemplateSpec } from "./state.js";
import { Downloads, type DownloadFixture } from "./downloads.js";
import { PlainOsGuest, execInPlainOs } from "./provision.js";
import { SIM_ROOT_PASSWORD, Tickets } from "./tickets.js";
import { TaskRegistry, type SimTask } from "./tasks.js";
import { listen } from "../../listener/http/http-listen.js";

export { SIM_NODE, SIM_TEMPLATE_VMID, SIM_POOL, SIM_BRIDGE, SIM_VLAN, NODE_CPUS, NODE_MEMORY, type SimNodeSpec, type SimTemplateSpec } from "./state.js";
export { SIM_TOKENS, PVE_RUNNERS_ROLE, PVE_RUNNERS_SDN_ROLE, PVE_RUNNERS_ACLS, ALL_PRIVILEGES, type TokenDef, type AclEntry } from "./privileges.js";
export { JIT_FILE, JIT_ENV, JOB_MARKER, DEFAULT_GUEST, type GuestTimings } from "./guest.js";
export { DEFAULT_LATENCY, type Latency, type FaultsBody } from "./faults.js";
export { cloneOverlaps, type CloneCounts, type CloneOverlap, type CloneRecord } from "./clone-log.js";
export { decodeUpid, encodeUpid, type SimTask } from "./tasks.js";
export type { ExecResult } from "./shell.js";
export { SIM_ROOT_PASSWORD } from "./tickets.js";
export { UPSTREAM_FILES, type DownloadFixture, type DigestAlgorithm } from "./downloads.js";
export { TEMPLATE_BUILD_MARKER } from "./provision.js";
export type { VmFirewall, FwRule } from "./firewall.js";

export interface PveSimOptions {
  /** Multiplies every simulated duration (tasks, guest boot, lock and auth delays). Default 1. */
  timeScale?: number;
  logger?: Logger;
  /** Seeds MACs, jitter and fault rates. Default 1. */
  seed?: number;
  /** Per-operation latencies in simulated ms (see DEFAULT_LATENCY). */
  latencyMs?: Partial<Latency>;
  /** The simulated guest's timings (see DEFAULT_GUEST). */
  guest?: Partial<GuestTimings>;
  /** Extra API tokens (tests of other ACL layouts). */
  tokens?: TokenDef[];
  /** The cluster's nodes (default: one, SIM_NODE); the API answers through the first one online. */
  nodes?: SimNodeSpec[];
  /** Runner templates, each a copy of the default one on its node (default: SIM_TEMPLATE_VMID on SIM_NODE). */
  templates?: SimTemplateSpec[];
  /** Serve https with this certificate (pveproxy's self-signed one, say) instead of plain http. */
  tls?: { certPem: string; keyPem: string };
  /** root@pam's password for POST /access/ticket (default SIM_ROOT_PASSWORD). */
  rootPassword?: string;
  /** Files the nodes can download (download-url, provision.sh's runner), over UPSTREAM_FILES. */
  downloads?: DownloadFixture[];
}

/** A node as tests see it. */
export interface SimNodeInfo {
  name: string;
  cpus: number;
  memoryBytes: number;
  online: boolean;
}

/** A container as tests see it. The `env` value is never shown: it may hold a JIT config. */
export interface SimContainer {
  vmid: number;
  /** The node that owns it. */
  node: string;
  name: string;
  status: "running" | "stopped";
  lock: string | null;
  template: boolean;
  pool: string | null;
  tags: string[];
  config: Record<string, string>;
  /** Names of the variables in the `env` option. */
  envKeys: string[];
  guest: Record<string, unknown> | null;
  files: Array<{ path: string; kind: string; mode: string; size: number }>;
}

export class PveSim {
  private readonly ctx: PveContext;
  private readonly clock: SimClock;
  private readonly log: Logger;
  private readonly lxc: LxcApi;
  private readonly tokens: TokenDef[];
  private server?: Server;
  private baseUrl = "";
  private readonly tls?: { certPem: string; keyPem: string };
  private readonly tickets: Tickets;
  private readonly downloads: Downloads;

  constructor(opts: PveSimOptions = {}) {
    this.tls = opts.tls;
    this.tickets = new Tickets(opts.rootPassword ?? SIM_ROOT_PASSWORD);
    this.downloads = new Downloads(opts.downloads);
    this.log = opts.logger ?? pino({ level: process.env.LOG_LEVEL ?? "silent" });
    this.clock = new SimClock(opts.timeScale ?? 1);
    this.tokens = [...Object.values(SIM_TOKENS), ...(opts.tokens ?? [])];
    const rng = createRng(opts.seed ?? 1);
    const state = new PveState(rng, opts.nodes, opts.templates);
    const lxcRef: { api?: LxcApi } = {};
    const stats = new StatsDaemon(state, this.clock, {
      vmstatus: (ct) => lxcRef.api?.vmstatus(ct) ?? {},
      used: storageUsed,
      uptime: () => nodeUptime(this.ctx),
      expireMs: () => this.ctx.latency.rrdExpire,
    });
    this.ctx = {
      state,
      acl: new Acl(() => state.poolMembers()),
      tasks: new TaskRegistry(this.log.child({ part: "tasks" })),
      faults: new FaultInjector(rng, createRng(((opts.seed ?? 1) ^ 0x2c1d) >>> 0)),
      clock: this.clock,
      log: this.log,
      rng,
      latency: { ...DEFAULT_LATENCY, ...opts.latencyMs },
      guestTimings: { ...DEFAULT_GUEST, ...opts.guest },
      stats,
      clones: new CloneLog(),
      cloneHold: new CloneHold(),
    };
    this.lxc = lxcRef.api = new LxcApi(this.ctx);
  }

  get url(): string {
    return this.baseUrl;
  }

  async start(port = 0, host = "127.0.0.1"): Promise<string> {
    if (this.server) throw new Error("PveSim already started");
    const app = this.buildApp();
    const tls = this.tls;
    const { server, url } = await listen(tls ? (createHttpsServer({ cert: tls.certPem, key: tls.keyPem }, app) as unknown as Server) : app, port, host);
    this.server = server;
    this.baseUrl = tls ? url.replace(/^http:/, "https:") : url;
    this.ctx.stats.seedNodes();
    this.ctx.stats.start(this.ctx.latency.statsInterval);
    this.log.info({ url: this.baseUrl }, "Proxmox VE simulator listening");
    return this.baseUrl;
  }

  async stop(): Promise<void> {
    this.ctx.stats.stop();
    this.ctx.cloneHold.release();
    this.abortGuests();
    this.clock.stop();
    for (const n of this.ctx.state.nodes.values()) n.release();
    const server = this.server;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    await this.ctx.tasks.settle();
    this.abortGuests();
  }

  setTimeScale(scale: number): void {
    this.clock.scale = scale;
    this.ctx.stats.rescale();
  }

  get timeScale(): number {
    return this.clock.scale;
  }

  setFaults(faults: FaultsBody): void {
    this.ctx.faults.apply(faults);
  }

  clearFaults(): void {
    this.ctx.faults.clear();
  }

  faults(): Record<string, unknown> {
    return this.ctx.faults.snapshot();
  }

  setLatency(latency: Partial<Latency>): void {
    Object.assign(this.ctx.latency, latency);
    if (latency.statsInterval !== undefined && this.server) this.ctx.stats.start(latency.statsInterval);
  }

  latency(): Latency {
    return { ...this.ctx.latency };
  }

  /** The cluster's nodes, in configuration order. */
  nodes(): SimNodeInfo[] {
    return [...this.ctx.state.nodes.values()].map((n) => ({ name: n.name, cpus: n.cpus, memoryBytes: n.memory, online: n.online }));
  }

  /**
   * Takes a node out of the cluster or brings it back. Offline: GET /nodes and /cluster/resources
   * show it "offline" (its RRD data, and with it its guests' status, expire after latency.rrdExpire),
   * every /nodes/{it}/… call fails with 595 "No route to host", its tasks stand still; without
   * quorum (half the nodes or more offline) clone, start and config writes fail everywhere.
   * Back online: tasks resume, pvestatd reports again.
   */
  setNodeOnline(name: string, online: boolean): void {
    const node = this.ctx.state.node(name);
    if (!node) throw new PveError(400, `no such cluster node '${name}'\n`);
    if (node.setOnline(online)) this.log.info({ node: name, online }, online ? "node back online" : "node offline");
  }

  containers(): SimContainer[] {
    return [...this.ctx.state.containers.values()].sort((a, b) => a.vmid - b.vmid).map((ct) => this.view(ct));
  }

  container(vmid: number): SimContainer | undefined {
    const ct = this.ctx.state.get(vmid);
    return ct && this.view(ct);
  }

  /** /etc/pve/firewall/<vmid>.fw as tests see it: null when the file does not exist. */
  firewall(vmid: number): VmFirewall | null {
    return this.ctx.state.firewall.vms.has(vmid) ? this.ctx.state.firewall.vm(vmid) : null;
  }

  tasks(): SimTask[] {
    return structuredClone(this.ctx.tasks.list());
  }

  /**
   * Every clone request so far, in order of arrival: source node/vmid, newid, refused (status,
   * message) or started (UPID, task start and end in ms since the epoch, exit status).
   */
  clones(): CloneRecord[] {
    return this.ctx.clones.list();
  }

  /** How many clone requests came, started a task, were refused (and of those, "CT is locked"). */
  cloneCounts(): CloneCounts {
    return this.ctx.clones.counts();
  }

  /** Clone requests that reached a template while a clone task of it ran (see cloneOverlaps). */
  cloneOverlaps(): CloneOverlap[] {
    return cloneOverlaps(this.ctx.clones.list());
  }

  /**
   * Holds clone tasks: one that has slept its latency waits for releaseClones() before it finishes,
   * the template locked all the while. Clones already past their latency are not affected.
   */
  holdClones(): void {
    this.ctx.cloneHold.hold();
  }

  /** Lets every held clone task finish, and later ones run as usual. */
  releaseClones(): void {
    this.ctx.cloneHold.release();
  }

  /** Resolves when no task is running. */
  settle(): Promise<void> {
    return this.ctx.tasks.settle();
  }

  /**
   * A new runner template appears on `node`, as `pct template` would leave it (a blue/green
   * replacement without building it through the template stack). Seen by the API at once, by
   * /cluster/resources after the next pvestatd pass.
   */
  addTemplate(node: string, vmid: number, o: { pool?: string | null; tags?: string } = {}): SimContainer {
    this.ctx.state.createTemplate(node, vmid, o);
    return this.view(this.ctx.state.get(vmid)!);
  }

  /** Runs one pvestatd pass now (tests of /cluster/resources). */
  sampleStats(): void {
    this.ctx.stats.sample();
  }

  /**
   * `pct exec <vmid> -- <command…>` with `stdin` on `node` (default: the CT's own node): exit 255 if
   * the CT is not on that node or stopped.
   */
  async exec(vmid: number, command: string[], stdin = "", node = this.defaultNode(vmid)): Promise<ExecResult> {
    const ct = this.ctx.state.on(node, vmid);
    if (!ct) return { exitcode: 255, stdout: "", stderr: `Configuration file 'nodes/${node}/lxc/${vmid}.conf' does not exist\n` };
    if (!ct.running) return { exitcode: 255, stdout: "", stderr: `CT ${vmid} not running\n` };
    await this.clock.sleep(this.ctx.latency.exec);
    if (!ct.running) return { exitcode: 255, stdout: "", stderr: `CT ${vmid} not running\n` };
    const plain = ct.guest instanceof PlainOsGuest ? await execInPlainOs(ct.guest, ct.fs, command, this.downloads, ct.conf.arch === "arm64" ? "arm64" : "x64") : undefined;
    const r = plain ?? execInGuest(ct.fs, command, stdin, vmid);
    // Log what ran, never what went in on stdin (a JIT config).
    this.log.info({ vmid, command: command.map((a) => (a.length > 200 ? `${a.slice(0, 200)}…` : a)), exitcode: r.exitcode }, "pct exec");
    return r;
  }

  /**
   * `pct push <vmid> <file> <dest> [--perms]` (src/PVE/CLI/pct.pm push: the CT must run on this
   * node; the destination's directory must exist; perms default 0644 as pct's). Root's files.
   */
  push(vmid: number, dest: string, content: string, perms: number | undefined, node = this.defaultNode(vmid)): void {
    const ct = this.ctx.state.on(node, vmid);
    if (!ct) throw configMissing(node, vmid);
    if (!ct.running) throw die(`CT ${vmid} not running`);
    if (!dest.startsWith("/")) throw die(`destination path must be absolute: '${dest}'`);
    try {
      ct.fs.write(dest, content, perms ?? 0o644);
      if (perms !== undefined) ct.fs.chmod(dest, perms);
    } catch (err) {
      throw die(`failed to open ${dest} for writing: ${(err as Error).message.startsWith("ENOENT") ? "No such file or directory" : (err as Error).message}`);
    }
    this.log.info({ vmid, dest, bytes: content.length, perms: perms?.toString(8) }, "pct push");
  }

  /** A file inside a container, running or not (the host mounts it), or undefined: for tests and the demo. */
  guestFile(vmid: number, path: string): string | undefined {
    const ct = this.ctx.state.get(vmid);
    if (!ct?.fs.isFile(path)) return undefined;
    return ct.fs.read(path);
  }

  /** The guest powers itself off (`systemctl poweroff` inside): stopped, no task. */
  powerOff(vmid: number, node = this.defaultNode(vmid)): void {
    const ct = this.ctx.state.on(node, vmid);
    if (!ct) throw configMissing(node, vmid);
    if (!ct.running) throw die(`CT ${vmid} not running`);
    this.lxc.markStopped(ct);
  }

  state(): Record<string, unknown> {
    const { state } = this.ctx;
    return {
      url: this.baseUrl,
      node: state.entryNode.name,
      nodes: this.nodes(),
      quorate: state.quorate(),
      timeScale: this.clock.scale,
      containers: this.containers(),
      pools: [...state.pools.values()].map((p) => ({ id: p.id, comment: p.comment, vms: [...p.vms], storage: [...p.storage] })),
      storages: [...state.nodes.values()].flatMap((n) => [...n.storages.values()].map((s) => ({ node: n.name, id: s.id, type: s.type, content: s.content, volumes: [...s.volumes.values()] }))),
      tasks: this.ctx.tasks.list().map(({ log: _log, ...t }) => t),
      faults: this.faults(),
      latency: this.latency(),
      guest: this.ctx.guestTimings,
    };
  }

  private view(ct: Container): SimContainer {
    const { env, ...config } = ct.conf;
    return {
      vmid: ct.vmid,
      node: ct.node,
      name: ct.conf.hostname ?? `CT${ct.vmid}`,
      status: ct.running ? "running" : "stopped",
      lock: ct.conf.lock ?? null,
      template: ct.conf.template === "1",
      pool: this.ctx.state.poolOf(ct.vmid) ?? null,
      tags: (ct.conf.tags ?? "").split(";").filter(Boolean),
      config,
      envKeys: (env ?? "").split("\0").filter(Boolean).map((kv) => kv.split("=")[0]),
      guest: ct.guest?.describe() ?? null,
      files: ct.fs.list().map((f) => ({ ...f, mode: f.mode.toString(8).padStart(4, "0") })),
    };
  }

  /** The CT's own node, or the first node for an unknown vmid. */
  private defaultNode(vmid: number): string {
    return this.ctx.state.get(vmid)?.node ?? this.ctx.state.nodes.keys().next().value!;
  }

  private abortGuests(): void {
    for (const ct of this.ctx.state.containers.values()) ct.guest?.abort("simulator stopped");
  }

  private buildApp(): express.Express {
    const app = express();
    app.disable("x-powered-by");
    app.set("etag", false);
    app.use((_req, res, next) => {
      res.setHeader("Server", "pve-api-daemon/3.0");
      res.setHeader("Cache-Control", "max-age=0");
      next();
    });
    app.use(
      "/_sim",
      controlRouter({
        tokens: () => this.tokens,
        root: SIM_TOKENS.root,
        state: () => this.state(),
        containers: () => this.containers(),
        tasks: () => this.ctx.tasks.list().map(({ log: _log, ...t }) => t),
        clones: () => ({ records: this.clones(), counts: this.cloneCounts(), overlaps: this.cloneOverlaps() }),
        holdClones: () => this.holdClones(),
        releaseClones: () => this.releaseClones(),
        faults: () => this.faults(),
        setFaults: (f) => this.setFaults(f),
        clearFaults: () => this.clearFaults(),
        latency: () => this.latency(),
        setLatency: (l) => this.setLatency(l),
        setTimeScale: (s) => this.setTimeScale(s),
        exec: (node, vmid, command, stdin) => this.exec(vmid, command, stdin, node),
        push: (node, vmid, dest, content, perms) => this.push(vmid, dest, content, perms, node),
        powerOff: (node, vmid) => this.powerOff(vmid, node),
        nodes: () => this.nodes(),
        setNodeOnline: (node, online) => this.setNodeOnline(node, online),
        addTemplate: (node, vmid, o) => this.addTemplate(node, vmid, o),
      }),
    );
    app.use("/api2/json", ...bodyParsers(), apiRouter(this.ctx, () => this.tokens, { tickets: this.tickets, downloads: this.downloads }));
    app.use(() => {
      throw new PveError(501, "no such uri", undefined, true);
    });
    app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
      void _next;
      if (res.headersSent) return;
      if (err instanceof PveError) return sendError(res, err);
      const e = err as { type?: string; message?: string };
      if (e.type === "entity.too.large") return sendError(res, new PveError(501, "for data too large", undefined, true));
      if (e.type === "entity.parse.failed") return sendError(res, new PveError(400, `malformed JSON string\n`));
      this.log.error({ err, path: req.path }, "PVE simulator route crashed");
      sendError(res, new PveError(500, `${e.message ?? String(err)}\n`));
    });
    return app;
  }
}
