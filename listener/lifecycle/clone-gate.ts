// The clone gate: a loopback HTTPS reverse proxy between terraform's bpg/proxmox provider and the
// PVE API that holds the clone lane (listener/lifecycle/clone-lane.ts) for exactly as long as PVE holds the
// template's 'disk' lock: from forwarding `POST /nodes/{node}/lxc/{vmid}/clone` until that clone
// task has stopped. Everything else (terraform's start-up, planning, the post-clone config PUT,
// starts, destroys, state writes) passes through at once, so the lane is no longer held around a
// whole `terraform apply`.
//
// Trust: bpg refuses non-https endpoints (proxmox/api/client.go NewConnection), so the gate serves
// TLS with a certificate made at start and writes only that certificate to certDir/clone-gate.pem.
// Terraform runs with PROXMOX_VE_ENDPOINT=<gate url> and SSL_CERT_FILE=<that pem>: Go's crypto/x509
// on Linux builds its root pool in loadSystemRoots (golang/go src/crypto/x509/root_unix.go), where
// `if f := os.Getenv(certFileEnv); f != "" { files = []string{f} }` with certFileEnv = "SSL_CERT_FILE"
// replaces the bundle file (ca-certificates.crt & co.). Certificates in the SSL_CERT_DIR directories
// (default /etc/ssl/certs, /etc/pki/tls/certs) are still added, so the gate's PEM joins rather than
// replaces what is trusted — bpg verifies the gate without `insecure`. The key never leaves memory.
//
// A clone to a vmid that is taken (PVE: 500 "CT N already exists on node 'X'") is never adopted by
// accident: bpg retries a 5xx clone and, on a retry, takes ANY error whose text contains "already
// exists" for its own success, whatever its status (bpg v0.111.1 proxmox/retry/retry.go DoTask:
// `if retrying && o.isAlreadyDone(err) { return nil }`, ErrorContains("already exists") in
// proxmox/nodes/containers/containers.go CloneContainer). The gate reads that container's hostname
// and passes the answer on only when it is this clone's own (the same runner's earlier clone, e.g.
// before a listener restart); otherwise it answers 409, which bpg does not retry
// (IsTransientAPIError is 5xx only), naming VMID_CLASH so the pipeline picks a fresh vmid. The 409's
// text must never contain "already exists": on a retry bpg would take it for success, then
// configure, start and later destroy the other guest. Nothing of the other container is touched.
//
// Only the configured templates have lanes (`templates`): a clone of any other source is passed
// through like any request (PVE checks the token as it would without the gate), so no request path
// can make the gate keep state. And only the listener's terraform can use the gate at all: any
// local process reaches 127.0.0.1, so a request is forwarded only when it carries the PVE API token
// the listener gives terraform (`Authorization: PVEAPIToken=<id>=<secret>`, the header bpg sets,
// proxmox/api/token_auth.go), compared in constant time; anything else gets 401 and is not
// forwarded. Whoever holds that token can reach PVE directly, so the gate lends nobody anything.
// (A secret in the URL's path cannot do this: bpg v0.111.1 drops an endpoint's path,
// proxmox/api/client.go NewConnection `u.Path = ""`, and asks for <scheme://host:port>/api2/json/….)
// The gate adds nothing to a request: no token, no cookie; what the client sent is what PVE sees.
//
// The gate never logs Authorization, cookies, CSRF tokens, query strings or bodies (bodies carry
// passwords, tickets and JIT configs): method, path, status and milliseconds at debug only.
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { rootCertificates } from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import type pino from "pino";
import { generateSelfSignedCert } from "../http/self-signed-cert.js";
import { sameSecret, secretDigest } from "../http/same-secret.js";

export interface CloneGateOptions {
  /** The real PVE API base, e.g. "https://pve:8006/" (http: is allowed too: the simulator). */
  upstream: string;
  /**
   * The PVE API token terraform is given ("user@realm!tokenid=secret"): the one credential the gate
   * admits. A request without exactly this token gets 401 and is not forwarded.
   */
  apiToken: string;
  /** Skip TLS verification towards upstream (the operator's proxmox.insecure). */
  insecure?: boolean;
  /**
   * The template copies whose clones are serialized, as "sourceNode/vmid" (placement's TemplateCopy
   * key). A clone of anything else is forwarded ungated and takes no lane.
   */
  templates: readonly string[];
  /** The clone lane (CloneLane): one clone task per template at a time. */
  lane: { run<T>(templateKey: string, runner: string, fn: () => Promise<T>): Promise<T> };
  logger: pino.Logger;
  /** Where the gate writes its certificate (clone-gate.pem, mode 0644). The key is never written. */
  certDir: string;
  /** Task status poll interval while holding the lane (default 100 ms). */
  pollMs?: number;
  /** The longest a clone's answer waits for its task to stop (default 60 s; tests shorten it). */
  answerHoldMs?: number;
  /** Safety cap on holding a lane for one clone task (default 30 min: bpg's timeout_clone default). */
  maxHoldMs?: number;
  /** Metrics hook: seconds a clone waited for its lane. */
  onLaneWait?: (templateKey: string, seconds: number) => void;
  /** Metrics hook: seconds a clone held its lane. */
  onLaneHeld?: (templateKey: string, seconds: number) => void;
  /** A clone request is queued in its lane, named by the runner (the hostname it asks for). */
  onCloneQueued?: (runner: string, templateKey: string) => void;
}

export const CLONE_GATE_PEM = "clone-gate.pem";
/** In the 409 the gate answers for a clone to another guest's vmid; the pipeline looks for it. */
export const VMID_CLASH = "pve-runners: vmid clash";

/** Whether an error (a failed apply) is the gate's refusal of a clone onto another guest's vmid. */
export function isVmidClash(err: unknown): boolean {
  return (err instanceof Error ? err.message : String(err)).includes(VMID_CLASH);
}
/** Consecutive failed task-status polls after which the lane is released anyway. */
const POLL_FAILURE_LIMIT = 5;
/**
 * A clone's answer is held at most this long. bpg v0.111.1 sets no client timeout
 * (proxmox/api/client.go), so this bounds only how long an apply waits on a task the gate cannot
 * read; bpg's own task wait (WaitForTask) takes over after it.
 */
const ANSWER_HOLD_MS = 60_000;
/** One task-status poll gives up after this long (counts as a failure). */
const POLL_TIMEOUT_MS = 10_000;
/**
 * Near a clone's expected end (the last clone of its template took as long) the status is polled
 * this often, from FINE_LEAD_MS before it (or 15 % of the clone, if longer, up to FINE_LEAD_MAX_MS)
 * to as long after: the lane and the runner's apply wait for the poll that sees the task stop, on
 * average half an interval. About ten more light GETs for a 2-s clone, at most about 30 for any.
 */
const FINE_POLL_MS = 25;
const FINE_LEAD_MS = 250;
const FINE_LEAD_MAX_MS = 1_000;

/** How long to sleep before the next status poll, `elapsedMs` into a clone expected to take `expectedMs`. */
export function nextPollDelay(elapsedMs: number, expectedMs: number | undefined, pollMs: number): number {
  const fine = Math.min(FINE_POLL_MS, pollMs);
  if (expectedMs === undefined) return pollMs;
  const lead = Math.min(FINE_LEAD_MAX_MS, Math.max(FINE_LEAD_MS, expectedMs * 0.15));
  const [from, until] = [expectedMs - lead, expectedMs + lead];
  if (elapsedMs >= from && elapsedMs < until) return fine;
  // A coarse sleep stops where the fine window starts.
  return elapsedMs < from ? Math.min(pollMs, Math.max(fine, from - elapsedMs)) : pollMs;
}
/** A clone's parameters are a few hundred bytes; pveproxy refuses big bodies with this 501. */
const MAX_CLONE_BODY = 64 * 1024;
const CLONE_PATH = /^\/api2\/json\/nodes\/([^/]+)\/lxc\/(\d+)\/clone\/?$/;
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "host"]);
/** The reason phrases pveproxy passes on with its 595 (AnyEvent::HTTP: "$!"). */
const ERRNO_TEXT: Record<string, string> = {
  ECONNREFUSED: "Connection refused",
  EHOSTUNREACH: "No route to host",
  ENETUNREACH: "Network is unreachable",
  ETIMEDOUT: "Connection timed out",
  ECONNRESET: "Connection reset by peer",
  EPIPE: "Broken pipe",
  ENOTFOUND: "Name or service not known",
  EAI_AGAIN: "Temporary failure in name resolution",
};

interface Buffered {
  status: number;
  message: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export class CloneGate {
  private readonly opts: CloneGateOptions;
  private readonly log: pino.Logger;
  private readonly upstream: URL;
  private readonly agent: http.Agent;
  private readonly pollMs: number;
  private readonly maxHoldMs: number;
  private readonly answerHoldMs: number;
  private readonly holding = new Map<string, string | null>();
  /** By template: how long its last successful clone took, answer to the poll that saw it stop. */
  private readonly lastCloneMs = new Map<string, number>();
  /** SHA-256 of the one Authorization header admitted (a digest: compared in constant time whatever its length). */
  private readonly admitted: Buffer;
  private refusedSinceLog = 0;
  private lastRefusedLog = 0;
  private readonly inLane = new Set<Promise<unknown>>();
  private readonly stopped = new AbortController();
  private server?: https.Server;

  constructor(opts: CloneGateOptions) {
    this.opts = opts;
    this.log = opts.logger;
    const u = new URL(opts.upstream);
    if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error(`clone gate: upstream must be http(s) (got ${u.protocol})`);
    this.upstream = u;
    if (!opts.apiToken) throw new Error("clone gate: apiToken is required (the token terraform is given)");
    this.admitted = secretDigest(`PVEAPIToken=${opts.apiToken}`);
    this.pollMs = opts.pollMs ?? 100;
    this.answerHoldMs = opts.answerHoldMs ?? ANSWER_HOLD_MS;
    this.maxHoldMs = opts.maxHoldMs ?? 30 * 60_000;
    for (const t of opts.templates) this.holding.set(t, null);
    this.agent = u.protocol === "https:" ? new https.Agent({ keepAlive: true, rejectUnauthorized: !opts.insecure, ca: opts.insecure ? undefined : upstreamRoots() }) : new http.Agent({ keepAlive: true });
  }

  async start(): Promise<{ url: string; caFile: string }> {
    if (this.server) throw new Error("clone gate already started");
    const { certPem, keyPem } = generateSelfSignedCert({ commonName: "pve-runners clone gate", ips: ["127.0.0.1"], dnsNames: ["localhost"] });
    await mkdir(this.opts.certDir, { recursive: true });
    const caFile = join(this.opts.certDir, CLONE_GATE_PEM);
    await writeFile(caFile, certPem, { mode: 0o644 });
    await chmod(caFile, 0o644);
    const server = https.createServer({ key: keyPem, cert: certPem, minVersion: "TLSv1.2" }, (req, res) => this.handle(req, res));
    // A clone may wait in its lane for many minutes; bpg itself sets no request timeout.
    server.requestTimeout = 0;
    // Longer than any client's idle pooling would race with: Go keeps idle connections without limit.
    server.keepAliveTimeout = 120_000;
    server.listen(0, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      server.once("listening", resolve);
      server.once("error", reject);
    });
    this.server = server;
    const origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    this.log.info({ origin, upstream: this.upstream.origin, caFile, templates: this.opts.templates }, "clone gate listening");
    return { url: `${origin}/`, caFile };
  }

  /** Stops serving, releases every held lane (their polls end) and closes upstream connections. */
  async stop(): Promise<void> {
    this.stopped.abort();
    const server = this.server;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    // Closing upstream sockets also ends a clone still being forwarded, so stop() cannot hang on it.
    this.agent.destroy();
    await Promise.allSettled([...this.inLane]);
  }

  /** Gates clones of these templates too (a replacement template: listener/templates/template-rotation.ts). */
  addTemplates(keys: readonly string[]): void {
    for (const k of keys) if (!this.holding.has(k)) this.holding.set(k, null);
  }

  /** Per configured template: the runner whose clone holds its lane now, if any. */
  stats(): { [templateKey: string]: { holding: string | null } } {
    const out: { [templateKey: string]: { holding: string | null } } = {};
    for (const [key, runner] of this.holding) out[key] = { holding: runner };
    return out;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (!this.isOurTerraform(req)) {
      this.refuse(req, res);
      return;
    }
    const path = (req.url ?? "/").split("?")[0];
    const m = req.method === "POST" ? CLONE_PATH.exec(path) : null;
    let node = m?.[1] ?? "";
    try {
      node = decodeURIComponent(node);
    } catch {
      // keep it raw
    }
    const templateKey = m ? `${node}/${Number(m[2])}` : "";
    if (m && this.holding.has(templateKey)) {
      this.clone(req, res, node, templateKey, path).catch((err: unknown) => {
        this.log.error({ err: errText(err), path }, "clone gate: clone handling failed");
        if (!res.headersSent) this.replyUnreachable(res, err);
        else res.destroy();
      });
    } else {
      this.pass(req, res, path);
    }
  }

  /** Whether the request carries the token the listener gave terraform. */
  private isOurTerraform(req: IncomingMessage): boolean {
    const got = req.headers.authorization;
    return typeof got === "string" && sameSecret(got, this.admitted);
  }

  /**
   * 401, nothing forwarded; logged at most once a minute (a local process may knock in a loop).
   * Never 404: bpg takes a 404 for "the resource does not exist" (api.ErrResourceDoesNotExist), and a
   * read would drop a live container from terraform's state. A 401 fails the run loudly instead.
   */
  private refuse(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    res.writeHead(401, "clone gate: not the listener's PVE token", { "content-type": "application/json;charset=UTF-8" });
    res.end(JSON.stringify({ data: null }));
    this.refusedSinceLog++;
    const now = Date.now();
    if (now - this.lastRefusedLog >= 60_000) {
      this.log.warn({ method: req.method, refused: this.refusedSinceLog }, "clone gate: request without the listener's PVE token refused (not from the listener's terraform)");
      this.lastRefusedLog = now;
      this.refusedSinceLog = 0;
    }
  }

  /** Any request but a clone of a configured template: streamed both ways, never delayed. */
  private pass(req: IncomingMessage, res: ServerResponse, path: string): void {
    const t0 = Date.now();
    const up = this.request(req.method ?? "GET", req.url ?? "/", forwardHeaders(req.headers));
    up.on("response", (ur) => {
      this.log.debug({ method: req.method, path, status: ur.statusCode, ms: Date.now() - t0 }, "clone gate: passed");
      writeHead(res, ur.statusCode ?? 502, ur.statusMessage ?? "", ur.headers);
      ur.pipe(res);
      ur.on("error", () => res.destroy());
    });
    up.on("error", (err) => {
      this.log.debug({ method: req.method, path, status: 595, ms: Date.now() - t0, err: errText(err) }, "clone gate: upstream unreachable");
      if (!res.headersSent) this.replyUnreachable(res, err);
      else res.destroy();
    });
    // The client gave up: so does the upstream request.
    res.on("close", () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  }

  /** POST …/lxc/{vmid}/clone: forwarded inside the template's lane, which stays held until the task stops. */
  private async clone(req: IncomingMessage, res: ServerResponse, node: string, templateKey: string, path: string): Promise<void> {
    let body: Buffer | null;
    try {
      body = await readBody(req, MAX_CLONE_BODY);
    } catch (err) {
      this.log.debug({ method: "POST", path, err: errText(err) }, "clone gate: client left while sending a clone");
      return;
    }
    if (body === null) {
      writeHead(res, 501, "for data too large", {});
      res.end();
      return;
    }
    const { runner, newid } = cloneFields(body, req.headers["content-type"]);
    let clientGone = false;
    res.on("close", () => {
      if (!res.writableFinished) clientGone = true;
    });
    const enqueued = Date.now();
    this.opts.onCloneQueued?.(runner, templateKey);
    const work = this.opts.lane.run(templateKey, runner, async () => {
      const waitedMs = Date.now() - enqueued;
      this.opts.onLaneWait?.(templateKey, waitedMs / 1000);
      if (clientGone || this.stopped.signal.aborted) {
        // Forwarding now would make a container nobody tracks.
        this.log.warn({ runner, templateKey, waitedMs }, "clone gate: client left while waiting for the clone lane, clone dropped");
        return;
      }
      this.holding.set(templateKey, runner);
      this.log.info({ runner, templateKey, waitedMs }, "clone gate: clone lane entered");
      const entered = Date.now();
      let reason = "answered";
      let upid: string | undefined;
      try {
        const t0 = Date.now();
        let answer: Buffered;
        try {
          // Not tied to the client: once sent, PVE may clone whether or not the client still listens.
          answer = await this.exchange("POST", req.url ?? path, { ...forwardHeaders(req.headers), "content-length": String(body.length) }, body);
        } catch (err) {
          reason = "upstream unreachable";
          this.log.debug({ method: "POST", path, status: 595, ms: Date.now() - t0, err: errText(err) }, "clone gate: upstream unreachable");
          if (!res.headersSent && !clientGone) this.replyUnreachable(res, err);
          return;
        }
        this.log.debug({ method: "POST", path, status: answer.status, ms: Date.now() - t0 }, "clone gate: clone forwarded");
        if (answer.status >= 500 && /already exists/.test(answer.message) && newid !== null) {
          const owner = await this.hostnameOf(answer.message, node, newid, req.headers);
          if (owner !== runner) {
            reason = "vmid clash refused";
            // Not "already exists" (see the top): bpg's retry would take that text for success.
            const text = `${VMID_CLASH}: CT ${newid} is another guest, not ${runner} (its hostname: ${owner ?? "unreadable"}); not adopted`;
            this.log.warn({ runner, templateKey, newid, owner }, "clone gate: clone onto another guest's vmid refused");
            if (!clientGone) {
              writeHead(res, 409, text, { "content-type": "application/json;charset=UTF-8" });
              res.end(JSON.stringify({ data: null, message: `${text}\n` }));
            }
            return;
          }
          this.log.info({ runner, templateKey, newid }, "clone gate: the vmid holds this runner's own earlier clone: passed on");
        }
        const reply = () => {
          if (clientGone || res.headersSent) return;
          writeHead(res, answer.status, answer.message, answer.headers);
          res.end(answer.body);
        };
        upid = answer.status === 200 ? upidOf(answer.body) : undefined;
        if (!upid) {
          reply();
          reason = answer.status === 200 ? "no task in the answer" : `clone refused (${answer.status})`;
          return;
        }
        // The answer (the task's UPID) goes out when the task has stopped, at most ANSWER_HOLD_MS
        // after: bpg's WaitForTask asks for the status at once and then only every second
        // (proxmox/nodes/tasks/tasks.go: retry.FixedDelay, retry.Delay(time.Second)), so it
        // finds the clone done at its first look instead of up to a second late.
        const replyAnyway = setTimeout(reply, Math.min(this.answerHoldMs, this.maxHoldMs));
        try {
          reason = await this.holdUntilStopped(upid, node, req.headers, { runner, templateKey });
        } finally {
          clearTimeout(replyAnyway);
          reply();
        }
      } finally {
        const heldMs = Date.now() - entered;
        this.holding.set(templateKey, null);
        this.opts.onLaneHeld?.(templateKey, heldMs / 1000);
        this.log.info({ runner, templateKey, waitedMs, heldMs, reason, upid }, "clone gate: clone lane left");
      }
    });
    this.inLane.add(work);
    try {
      await work;
    } finally {
      this.inLane.delete(work);
    }
  }

  /** The hostname of the container an "already exists" names (null when it cannot be read). */
  private async hostnameOf(message: string, pathNode: string, vmid: number, clientHeaders: IncomingHttpHeaders): Promise<string | null> {
    // pve-cluster check_vmid_unused: "CT N already exists on node 'X'" (or "VM N …" for a VM).
    const node = /on node '([^']+)'/.exec(message)?.[1] ?? pathNode;
    const headers: http.OutgoingHttpHeaders = { accept: "application/json" };
    for (const h of ["authorization", "cookie"]) if (clientHeaders[h] !== undefined) headers[h] = clientHeaders[h];
    try {
      const r = await this.exchange("GET", `/api2/json/nodes/${encodeURIComponent(node)}/lxc/${vmid}/config`, headers, undefined, AbortSignal.any([this.stopped.signal, AbortSignal.timeout(POLL_TIMEOUT_MS)]));
      if (r.status !== 200) return null;
      const h = (JSON.parse(r.body.toString("utf8")) as { data?: { hostname?: unknown } | null }).data?.hostname;
      return typeof h === "string" ? h : null;
    } catch {
      return null;
    }
  }

  /** Polls the clone task until it stopped; returns why the lane is released. */
  private async holdUntilStopped(upid: string, pathNode: string, clientHeaders: IncomingHttpHeaders, ctx: { runner: string; templateKey: string }): Promise<string> {
    // The task runs on the node its UPID names (the clone's source node).
    const node = /^UPID:([^:]+):/.exec(upid)?.[1] ?? pathNode;
    const statusPath = `/api2/json/nodes/${encodeURIComponent(node)}/tasks/${encodeURIComponent(upid)}/status`;
    const headers: http.OutgoingHttpHeaders = { accept: "application/json" };
    for (const h of ["authorization", "cookie", "csrfpreventiontoken"]) if (clientHeaders[h] !== undefined) headers[h] = clientHeaders[h];
    const started = Date.now();
    const deadline = started + this.maxHoldMs;
    const expectedMs = this.lastCloneMs.get(ctx.templateKey);
    let failures = 0;
    let lastError = "";
    for (;;) {
      try {
        await sleep(Math.max(0, Math.min(nextPollDelay(Date.now() - started, expectedMs, this.pollMs), deadline - Date.now())), undefined, { signal: this.stopped.signal });
      } catch {
        return "gate stopped";
      }
      if (Date.now() >= deadline) {
        this.log.warn({ ...ctx, upid, maxHoldMs: this.maxHoldMs }, "clone gate: clone task still running after the hold cap, releasing the clone lane");
        return "hold cap reached";
      }
      try {
        const r = await this.exchange("GET", statusPath, headers, undefined, AbortSignal.any([this.stopped.signal, AbortSignal.timeout(POLL_TIMEOUT_MS)]));
        if (r.status === 200) {
          const data = (JSON.parse(r.body.toString("utf8")) as { data?: { status?: string; exitstatus?: string } | null }).data;
          failures = 0;
          if (data?.status === "stopped") {
            if (data.exitstatus === "OK") this.lastCloneMs.set(ctx.templateKey, Date.now() - started);
            this.log.info({ ...ctx, upid, exitstatus: data.exitstatus }, "clone gate: clone task stopped");
            return "task stopped";
          }
          continue;
        }
        lastError = `${r.status} ${r.message}`;
      } catch (err) {
        if (this.stopped.signal.aborted) return "gate stopped";
        lastError = errText(err);
      }
      if (++failures >= POLL_FAILURE_LIMIT) {
        this.log.warn({ ...ctx, upid, failures, lastError }, "clone gate: clone task status keeps failing, releasing the clone lane");
        return "task status unavailable";
      }
    }
  }

  private request(method: string, pathAndQuery: string, headers: http.OutgoingHttpHeaders, signal?: AbortSignal): http.ClientRequest {
    const u = this.upstream;
    const mod = u.protocol === "https:" ? https : http;
    return mod.request({ protocol: u.protocol, hostname: u.hostname.replace(/^\[|\]$/g, ""), port: u.port || undefined, method, path: pathAndQuery, headers: { ...headers, host: u.host }, agent: this.agent, signal });
  }

  /**
   * One upstream request, its whole answer buffered. A kept-alive socket the server closed while
   * idle (its keep-alive timeout) resets the next request sent on it before the server read it;
   * that one is sent once more, as Node's http docs advise (`request.reusedSocket`): the agent has
   * dropped the dead socket by then.
   */
  private async exchange(method: string, pathAndQuery: string, headers: http.OutgoingHttpHeaders, body?: Buffer, signal?: AbortSignal): Promise<Buffered> {
    try {
      return await this.exchangeOnce(method, pathAndQuery, headers, body, signal);
    } catch (err) {
      if (!(err instanceof StaleSocket)) throw err;
      return this.exchangeOnce(method, pathAndQuery, headers, body, signal);
    }
  }

  private exchangeOnce(method: string, pathAndQuery: string, headers: http.OutgoingHttpHeaders, body?: Buffer, signal?: AbortSignal): Promise<Buffered> {
    return new Promise((resolve, reject) => {
      const up = this.request(method, pathAndQuery, headers, signal);
      let answered = false;
      up.on("response", (ur) => {
        answered = true;
        const chunks: Buffer[] = [];
        ur.on("data", (c: Buffer) => chunks.push(c));
        ur.on("end", () => resolve({ status: ur.statusCode ?? 502, message: ur.statusMessage ?? "", headers: ur.headers, body: Buffer.concat(chunks) }));
        ur.on("error", reject);
      });
      up.on("error", (err: NodeJS.ErrnoException) => reject(!answered && up.reusedSocket && err.code === "ECONNRESET" ? new StaleSocket(err) : err));
      up.end(body);
    });
  }

  /** What pveproxy answers when it cannot reach the daemon: 595 and the errno text, no body. */
  private replyUnreachable(res: ServerResponse, err: unknown): void {
    const code = (err as { code?: string }).code;
    writeHead(res, 595, (code && ERRNO_TEXT[code]) || errText(err), {});
    res.end();
  }
}

/** The request's headers minus hop-by-hop ones (and Host, which becomes upstream's). */
function forwardHeaders(h: IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

function writeHead(res: ServerResponse, status: number, message: string, headers: IncomingHttpHeaders): void {
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  // PVE puts its error text in the reason phrase; keep it unless Node finds it unsendable.
  const safe = message.replace(/[^\t\x20-\x7e\x80-\xff]/g, "?");
  res.writeHead(status, safe, out);
}

/** The body, or null if it is over `limit` bytes. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) over = true;
      else chunks.push(c);
    });
    req.on("end", () => resolve(over ? null : Buffer.concat(chunks)));
    req.on("error", reject);
    req.on("close", () => {
      if (!req.complete) reject(new Error("client left before sending the whole request"));
    });
  });
}

/** The clone's `hostname` ("unknown" if none) and `newid` (form-urlencoded as bpg sends them, or JSON). */
function cloneFields(body: Buffer, contentType: string | undefined): { runner: string; newid: number | null } {
  const text = body.toString("utf8");
  let hostname: unknown;
  let newid: unknown;
  try {
    if (contentType?.includes("json")) ({ hostname, newid } = JSON.parse(text) as { hostname?: unknown; newid?: unknown });
    else {
      const form = new URLSearchParams(text);
      hostname = form.get("hostname");
      newid = form.get("newid");
    }
  } catch {
    // neither: unknown runner, no newid
  }
  const id = Number(newid);
  return { runner: typeof hostname === "string" && hostname ? hostname : "unknown", newid: newid !== null && newid !== undefined && Number.isInteger(id) && id > 0 ? id : null };
}

function upidOf(body: Buffer): string | undefined {
  try {
    const data = (JSON.parse(body.toString("utf8")) as { data?: unknown }).data;
    return typeof data === "string" && data.startsWith("UPID:") ? data : undefined;
  } catch {
    return undefined;
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Roots for a verified PVE (the gate's upstream and the listener's own calls, listener/adapters/proxmox/proxmox.ts).
 * bpg used to talk to PVE itself through Go's TLS, which trusts the system bundle (where an operator
 * may have installed the PVE cluster CA); Node trusts only its own bundled roots, so the system
 * bundle is added when there is one, and NODE_EXTRA_CA_CERTS (which an explicit `ca` would
 * otherwise drop).
 */
export function upstreamRoots(): string[] {
  const roots = [...rootCertificates];
  for (const file of ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem"]) {
    try {
      roots.push(readFileSync(file, "utf8"));
      break;
    } catch {
      // next candidate
    }
  }
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  if (extra) {
    try {
      roots.push(readFileSync(extra, "utf8"));
    } catch {
      // Node itself warns about an unreadable NODE_EXTRA_CA_CERTS at start
    }
  }
  return roots;
}

/** A reset on a reused kept-alive socket before any answer: the server never saw the request. */
class StaleSocket extends Error {
  readonly code: string | undefined;
  constructor(cause: NodeJS.ErrnoException) {
    super(cause.message, { cause });
    this.code = cause.code;
  }
}
