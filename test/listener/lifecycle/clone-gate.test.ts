// The clone gate between terraform's provider and PVE (here the simulator): clones of one template
// serialised for exactly the clone task, everything else passed through undelayed, a certificate a
// client can trust from the written PEM alone, pveproxy's 595 when PVE is down, no secrets in logs,
// and a lane that is always released.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CloneGate, isVmidClash, nextPollDelay, VMID_CLASH } from "../../../listener/lifecycle/clone-gate.js";
import { CloneLane } from "../../../listener/lifecycle/clone-lane.js";
import { PveSim, SIM_NODE, SIM_TEMPLATE_VMID, SIM_TOKENS, type TokenDef } from "../../../sim/pve/index.js";
import { PveClient } from "../../../sim/provider/pve-client.js";
import { cloneContainer } from "../../../sim/provider/pve-ops.js";
import { captureLog } from "../../fixtures/terraform/helpers.js";

const SCALE = 0.05;
const OTHER_TEMPLATE = 9001;
const TEMPLATE_KEYS = [`${SIM_NODE}/${SIM_TEMPLATE_VMID}`, `${SIM_NODE}/${OTHER_TEMPLATE}`];
/** The token the listener gives terraform, and so the one the gate admits. */
const RUNNERS_TOKEN = `${SIM_TOKENS.runners.id}=${SIM_TOKENS.runners.secret}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Answer<T = unknown> {
  status: number;
  reason: string;
  data: T;
  ms: number;
}

/** A bpg-like client: form bodies, token header, trusting only `ca` (or the given agent's). */
function call<T = unknown>(
  base: string,
  method: string,
  path: string,
  params: Record<string, string | number> = {},
  opts: { token?: TokenDef; noAuth?: boolean; ca?: string; headers?: Record<string, string>; onRequest?: (req: http.ClientRequest) => void } = {},
): Promise<Answer<T>> {
  const t0 = Date.now();
  const form = new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, String(v)])).toString();
  const inQuery = method === "GET" || method === "DELETE";
  const url = new URL(`api2/json${path}${inQuery && form ? `?${form}` : ""}`, base);
  const token = opts.token ?? SIM_TOKENS.runners;
  const headers: Record<string, string> = { accept: "application/json", authorization: `PVEAPIToken=${token.id}=${token.secret}`, ...opts.headers };
  if (!inQuery) headers["content-type"] = "application/x-www-form-urlencoded";
  if (opts.noAuth) delete headers.authorization;
  const mod = url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method, headers, ...(url.protocol === "https:" ? { ca: opts.ca, agent: false } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let data: unknown = null;
        try {
          data = text ? (JSON.parse(text) as { data: unknown }).data : null;
        } catch {
          data = null;
        }
        resolve({ status: res.statusCode ?? 0, reason: res.statusMessage ?? "", data: data as T, ms: Date.now() - t0 });
      });
    });
    req.on("error", reject);
    opts.onRequest?.(req);
    req.end(inQuery ? undefined : form);
  });
}

const taskPath = (upid: string) => `/nodes/${SIM_NODE}/tasks/${encodeURIComponent(upid)}/status`;

async function waitTask(base: string, upid: string, ca?: string): Promise<string> {
  for (;;) {
    const r = await call<{ status: string; exitstatus?: string }>(base, "GET", taskPath(upid), {}, { ca });
    assert.equal(r.status, 200, `task status: ${r.status} ${r.reason}`);
    if (r.data.status === "stopped") return r.data.exitstatus ?? "";
    await sleep(10);
  }
}

async function until(what: string, pred: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await sleep(5);
  }
}

describe("CloneGate", () => {
  const sim = new PveSim({ timeScale: SCALE, seed: 11, templates: [{ node: SIM_NODE, vmid: SIM_TEMPLATE_VMID }, { node: SIM_NODE, vmid: OTHER_TEMPLATE }] });
  const log = captureLog("trace");
  const lane = new CloneLane({ logger: log.logger });
  const waits: Array<[string, number]> = [];
  const helds: Array<[string, number]> = [];
  let certDir: string;
  let gate: CloneGate;
  let simUrl: string;
  let gateUrl: string;
  let ca: string;
  let caFile: string;
  let nextId = 400;

  before(async () => {
    simUrl = await sim.start(0, "127.0.0.1");
    certDir = await mkdtemp(join(tmpdir(), "clone-gate-"));
    gate = new CloneGate({
      upstream: `${simUrl}/`,
      apiToken: RUNNERS_TOKEN,
      templates: TEMPLATE_KEYS,
      lane,
      logger: log.logger,
      certDir,
      pollMs: 20,
      onLaneWait: (k, s) => waits.push([k, s]),
      onLaneHeld: (k, s) => helds.push([k, s]),
    });
    ({ url: gateUrl, caFile } = await gate.start());
    ca = await readFile(caFile, "utf8");
  });
  after(async () => {
    await gate.stop();
    await sim.stop();
    await rm(certDir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    sim.clearFaults();
    sim.setLatency({ cloneLinked: 5_000 });
    await sim.settle();
  });

  const viaGate = <T = unknown>(method: string, path: string, params?: Record<string, string | number>, opts: Parameters<typeof call>[4] = {}) => call<T>(gateUrl, method, path, params, { ca, ...opts });
  const cloneParams = (hostname: string) => ({ newid: nextId++, hostname, pool: "ci", description: "secret-in-body-0xC0FFEE" });
  const clonePath = (vmid = SIM_TEMPLATE_VMID) => `/nodes/${SIM_NODE}/lxc/${vmid}/clone`;
  const cloneTasks = () => sim.tasks().filter((t) => t.type === "vzclone").length;

  test("parallel clones of one template: direct, the second is refused; through the gate, both succeed, the second forwarded after the first task stopped", async () => {
    sim.setLatency({ cloneLinked: 20_000 }); // 1 s at this scale
    const [a, b] = await Promise.all([call<string>(simUrl, "POST", clonePath(), cloneParams("direct-a")), call<string>(simUrl, "POST", clonePath(), cloneParams("direct-b"))]);
    const refused = [a, b].filter((r) => r.status !== 200);
    assert.equal(refused.length, 1, "exactly one of two direct parallel clones is refused");
    assert.deepEqual([refused[0].status, refused[0].reason], [500, "CT is locked (disk)"]);
    await sim.settle();

    const before = sim.containers().length;
    const t0 = Date.now();
    const [x, y] = await Promise.all([viaGate<string>("POST", clonePath(), cloneParams("runner-x")), viaGate<string>("POST", clonePath(), cloneParams("runner-y"))]);
    assert.deepEqual([x.status, y.status], [200, 200], `${x.reason} / ${y.reason}`);
    const [first, second] = x.ms <= y.ms ? [x, y] : [x, y].reverse();
    const [firstRunner, secondRunner] = first === x ? ["runner-x", "runner-y"] : ["runner-y", "runner-x"];
    // Each answer (the UPID) goes out once its task stopped: bpg's first status poll finds it done.
    assert.ok(first.ms >= 20_000 * SCALE * 0.85 && first.ms < 2 * 20_000 * SCALE * 0.85, `the first clone is answered when its task stopped (${first.ms} ms)`);
    assert.ok(second.ms >= 2 * 20_000 * SCALE * 0.85, `the second waited for the first task, then for its own (${second.ms} ms)`);
    for (const r of [first, second]) {
      const status = await call<{ status: string; exitstatus?: string }>(gateUrl, "GET", taskPath(r.data), {}, { ca });
      assert.deepEqual([status.data.status, status.data.exitstatus], ["stopped", "OK"], "done at the first look");
    }
    assert.equal(sim.containers().length, before + 2);

    const idx = (msg: string, runner: string) => log.lines.findIndex((l) => l.msg === msg && l.runner === runner && (l.time as number) >= t0);
    const stopped = idx("clone gate: clone task stopped", firstRunner);
    const entered = idx("clone gate: clone lane entered", secondRunner);
    assert.ok(stopped >= 0 && entered > stopped, "the second clone entered the lane (and was forwarded) only after the first task stopped");
    await log.waitFor((l) => l.msg === "clone gate: clone lane left" && l.runner === secondRunner);
    const left = log.lines.filter((l) => l.msg === "clone gate: clone lane left" && (l.time as number) >= t0);
    assert.deepEqual(left.map((l) => [l.runner, l.templateKey, l.reason]), [
      [firstRunner, `${SIM_NODE}/${SIM_TEMPLATE_VMID}`, "task stopped"],
      [secondRunner, `${SIM_NODE}/${SIM_TEMPLATE_VMID}`, "task stopped"],
    ]);
    for (const l of left) assert.ok(typeof l.waitedMs === "number" && typeof l.heldMs === "number" && (l.heldMs as number) >= 20_000 * SCALE * 0.85);
    assert.ok(waits.some(([k, s]) => k === `${SIM_NODE}/${SIM_TEMPLATE_VMID}` && s >= (20_000 * SCALE * 0.85) / 1000), "onLaneWait saw the second clone's wait");
    assert.ok(helds.filter(([, s]) => s >= (20_000 * SCALE * 0.85) / 1000).length >= 2, "onLaneHeld saw both holds");
    assert.deepEqual(gate.stats()[`${SIM_NODE}/${SIM_TEMPLATE_VMID}`], { holding: null });
  });

  test("while a clone holds its lane: other requests and another template's clone pass undelayed", async () => {
    sim.setLatency({ cloneLinked: 40_000 }); // 2 s
    const heldP = viaGate<string>("POST", clonePath(), cloneParams("runner-holder"));
    await until("the lane held", () => gate.stats()[`${SIM_NODE}/${SIM_TEMPLATE_VMID}`]?.holding === "runner-holder");
    const version = await viaGate<{ version: string }>("GET", "/version");
    assert.equal(version.status, 200);
    assert.ok(version.ms < 300, `GET /version not delayed (${version.ms} ms)`);
    const runningClone = () => sim.tasks().find((t) => t.type === "vzclone" && t.status === "running");
    await until("the clone task runs", () => runningClone() !== undefined);
    const running = runningClone()!;
    const status = await viaGate<{ status: string }>("GET", taskPath(running.upid));
    assert.deepEqual([status.status, status.data.status], [200, "running"]);
    assert.ok(status.ms < 300);
    const tplConfig = await viaGate("GET", `/nodes/${SIM_NODE}/lxc/${SIM_TEMPLATE_VMID}/config`);
    assert.equal(tplConfig.status, 200);
    // Another template's clone has its own lane: it enters while this one is held.
    const otherP = viaGate<string>("POST", clonePath(OTHER_TEMPLATE), cloneParams("runner-other"));
    await until("the other lane held alongside", () => gate.stats()[`${SIM_NODE}/${OTHER_TEMPLATE}`]?.holding === "runner-other", 500);
    assert.equal(gate.stats()[`${SIM_NODE}/${SIM_TEMPLATE_VMID}`].holding, "runner-holder");
    const [held, other] = await Promise.all([heldP, otherP]);
    assert.deepEqual([held.status, other.status], [200, 200], other.reason);
    assert.equal(held.data, running.upid);
    assert.ok(other.ms < held.ms + 500, `another template's clone was not queued behind this one (${other.ms} ms vs ${held.ms} ms)`);
    assert.deepEqual([await waitTask(gateUrl, held.data, ca), await waitTask(gateUrl, other.data, ca)], ["OK", "OK"]);
    await until("both lanes released", () => Object.values(gate.stats()).every((s) => s.holding === null));
  });

  test("a clone's answer waits for its task at most answerHoldMs (bpg's client gives up at 5 min); the lane stays held to the end", async () => {
    sim.setLatency({ cloneLinked: 30_000 }); // 1.5 s
    const capDir = await mkdtemp(join(tmpdir(), "clone-gate-cap-"));
    const capLane = new CloneLane({ logger: log.logger });
    const capped = new CloneGate({ apiToken: RUNNERS_TOKEN, upstream: `${simUrl}/`, templates: TEMPLATE_KEYS, lane: capLane, logger: log.logger, certDir: capDir, pollMs: 20, answerHoldMs: 200 });
    const { url, caFile: capCa } = await capped.start();
    try {
      const r = await call<string>(url, "POST", clonePath(), cloneParams("runner-answer-capped"), { ca: await readFile(capCa, "utf8") });
      assert.equal(r.status, 200);
      assert.ok(r.ms >= 150 && r.ms < 1_000, `answered after the cap, before the task ended (${r.ms} ms)`);
      assert.deepEqual(capped.stats()[`${SIM_NODE}/${SIM_TEMPLATE_VMID}`], { holding: "runner-answer-capped" }, "the lane is still held");
      assert.equal(await waitTask(simUrl, r.data), "OK");
      await until("lane released", () => capped.stats()[`${SIM_NODE}/${SIM_TEMPLATE_VMID}`]?.holding !== "runner-answer-capped");
    } finally {
      await capped.stop();
      await rm(capDir, { recursive: true, force: true });
    }
  });

  test("a client that disconnects while waiting in the lane causes no clone", async () => {
    sim.setLatency({ cloneLinked: 30_000 }); // 1.5 s
    const clonesBefore = cloneTasks();
    const heldP = viaGate<string>("POST", clonePath(), cloneParams("runner-holder2"));
    await until("the holder's clone forwarded", () => cloneTasks() > clonesBefore);
    const containers = sim.containers().length;
    const tasks = cloneTasks();
    let req: http.ClientRequest | undefined;
    const quitter = viaGate("POST", clonePath(), cloneParams("runner-quitter"), { onRequest: (r) => (req = r) }).catch((e: Error) => e);
    await log.waitFor((l) => l.msg === "waiting for the clone lane" && l.runner === "runner-quitter");
    req!.destroy();
    assert.ok((await quitter) instanceof Error, "the client saw its own disconnect");
    const held = await heldP;
    assert.equal(held.status, 200);
    await log.waitFor((l) => l.msg === "clone gate: client left while waiting for the clone lane, clone dropped" && l.runner === "runner-quitter");
    assert.equal(await waitTask(gateUrl, held.data, ca), "OK");
    await sim.settle();
    assert.equal(sim.containers().length, containers, "no container for the client that left");
    assert.equal(cloneTasks(), tasks, "the dropped clone never reached PVE");
    await until("lane released", () => gate.stats()[`${SIM_NODE}/${SIM_TEMPLATE_VMID}`].holding === null);
    assert.deepEqual(lane.stats(), {}, "an idle lane is gone");
  });

  test("the written PEM is the only trust anchor a client needs for https://127.0.0.1 (and localhost)", async () => {
    const st = await stat(caFile);
    assert.equal(st.mode & 0o777, 0o644);
    assert.deepEqual(await readdir(certDir), ["clone-gate.pem"]);
    assert.match(ca, /^-----BEGIN CERTIFICATE-----\n/);
    assert.doesNotMatch(ca, /PRIVATE KEY/, "the key is never written");
    assert.match(gateUrl, /^https:\/\/127\.0\.0\.1:\d+\/$/);
    const ok = await viaGate("GET", "/version");
    assert.equal(ok.status, 200);
    // DNS:localhost too (connecting to 127.0.0.1, verifying the name localhost).
    const port = Number(new URL(gateUrl).port);
    const peer = await new Promise<{ authorized: boolean; subjectaltname?: string; ca?: boolean }>((resolve, reject) => {
      const req = https.request({ host: "127.0.0.1", servername: "localhost", port, path: `${new URL(gateUrl).pathname}api2/json/version`, ca, agent: false, checkServerIdentity: (_h, cert) => https.globalAgent.options.checkServerIdentity?.("localhost", cert) }, (res) => {
        const sock = res.socket as import("node:tls").TLSSocket;
        const cert = sock.getPeerCertificate();
        resolve({ authorized: sock.authorized, subjectaltname: cert.subjectaltname, ca: cert.ca });
        res.resume();
      });
      req.on("error", reject);
      req.end();
    });
    assert.equal(peer.authorized, true);
    assert.equal(peer.subjectaltname, "IP Address:127.0.0.1, DNS:localhost");
    assert.equal(peer.ca, true);
    // Without the PEM the certificate is not trusted.
    await assert.rejects(call(gateUrl, "GET", "/version", {}, {}), /self-signed certificate/);
    // The provider stand-in, like Go on Linux, takes SSL_CERT_FILE as its roots.
    const saved = process.env.SSL_CERT_FILE;
    try {
      process.env.SSL_CERT_FILE = caFile;
      const client = new PveClient({ endpoint: gateUrl, insecure: false, auth: { kind: "token", token: `${SIM_TOKENS.runners.id}=${SIM_TOKENS.runners.secret}` }, log: () => {} });
      try {
        assert.ok(((await client.request<{ version: string }>("GET", "version")) as { version: string }).version);
      } finally {
        client.close();
      }
      delete process.env.SSL_CERT_FILE;
      const untrusting = new PveClient({ endpoint: gateUrl, insecure: false, auth: { kind: "token", token: `${SIM_TOKENS.runners.id}=${SIM_TOKENS.runners.secret}` }, log: () => {} });
      try {
        await assert.rejects(untrusting.request("GET", "version"), /self-signed certificate/);
      } finally {
        untrusting.close();
      }
    } finally {
      if (saved === undefined) delete process.env.SSL_CERT_FILE;
      else process.env.SSL_CERT_FILE = saved;
    }
  });

  test("a Go client (terraform's http backend) verifies the gate through SSL_CERT_FILE alone", async () => {
    // The backend sends no PVE token: once TLS holds, the gate answers its GET 401 itself, which
    // terraform reports as "requires auth"; without the PEM it never gets that far.
    const seen: string[] = [];
    const upstream = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      req.resume();
      res.writeHead(req.method === "GET" ? 404 : 200);
      res.end();
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const dir = await mkdtemp(join(tmpdir(), "clone-gate-go-"));
    const goGate = new CloneGate({ apiToken: RUNNERS_TOKEN, upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/`, templates: TEMPLATE_KEYS, lane: new CloneLane({ logger: log.logger }), logger: log.logger, certDir: join(dir, "certs") });
    const { url, caFile: goCa } = await goGate.start();
    const init = async (name: string, env: Record<string, string>) => {
      const cwd = join(dir, name);
      await mkdir(cwd);
      await writeFile(join(cwd, "main.tf.json"), JSON.stringify({ terraform: { backend: { http: { address: `${url}api2/json/state` } } } }));
      // SSL_CERT_FILE must not leak in from the test's own environment.
      const { SSL_CERT_FILE: _ignored, ...base } = process.env;
      return new Promise<{ code: number; out: string }>((resolve) =>
        execFile("terraform", ["init", "-input=false", "-no-color"], { cwd, env: { ...base, ...env, CHECKPOINT_DISABLE: "1", TF_IN_AUTOMATION: "1" } }, (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
        ),
      );
    };
    try {
      const trusted = await init("trusted", { SSL_CERT_FILE: goCa });
      assert.match(trusted.out, /HTTP remote state endpoint requires auth/, trusted.out);
      assert.doesNotMatch(trusted.out, /x509/);
      assert.deepEqual(seen, [], "refused by the gate, never forwarded");
      const untrusted = await init("untrusted", {});
      assert.notEqual(untrusted.code, 0);
      assert.match(untrusted.out, /x509: certificate signed by unknown authority/);
    } finally {
      await goGate.stop();
      await new Promise<void>((r) => upstream.close(() => r()));
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("upstream down: 595 like pveproxy, for plain requests and clones, and the lane is released", async () => {
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const downLane = new CloneLane({ logger: log.logger });
    const dir = await mkdtemp(join(tmpdir(), "clone-gate-down-"));
    const down = new CloneGate({ apiToken: RUNNERS_TOKEN, upstream: `http://127.0.0.1:${port}/`, templates: [`${SIM_NODE}/${SIM_TEMPLATE_VMID}`], lane: downLane, logger: log.logger, certDir: dir, pollMs: 20 });
    const { url, caFile: downCa } = await down.start();
    try {
      const pem = await readFile(downCa, "utf8");
      const v = await call(url, "GET", "/version", {}, { ca: pem });
      assert.deepEqual([v.status, v.reason, v.data], [595, "Connection refused", null]);
      const c = await call(url, "POST", clonePath(), cloneParams("runner-down"), { ca: pem });
      assert.deepEqual([c.status, c.reason], [595, "Connection refused"]);
      assert.deepEqual(downLane.stats(), {});
      assert.deepEqual(down.stats(), { [`${SIM_NODE}/${SIM_TEMPLATE_VMID}`]: { holding: null } });
    } finally {
      await down.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a clone sent on a kept-alive socket the upstream has just reset is sent once more, not answered 595", async () => {
    // An upstream that, like a server whose keep-alive timeout closed the socket as the next
    // request went out, resets the first request sent on a reused socket, unread.
    let resets = 0;
    const requests: string[] = [];
    const served = new WeakMap<object, number>();
    const upstream = http.createServer((req, res) => {
      const n = (served.get(req.socket) ?? 0) + 1;
      served.set(req.socket, n);
      if (n > 1 && resets === 0) {
        resets++;
        req.socket.resetAndDestroy();
        return;
      }
      requests.push(`${req.method} ${req.url}`);
      req.resume();
      const isClone = req.method === "POST" && /\/clone$/.test(req.url ?? "");
      const data = isClone ? `UPID:${SIM_NODE}:00001234:00000000:00000000:vzclone:${SIM_TEMPLATE_VMID}:root@pam:` : /\/tasks\//.test(req.url ?? "") ? { status: "stopped", exitstatus: "OK" } : { version: "9.0.0" };
      res.writeHead(200, { "content-type": "application/json;charset=UTF-8" });
      res.end(JSON.stringify({ data }));
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const dir = await mkdtemp(join(tmpdir(), "clone-gate-reset-"));
    const resetLane = new CloneLane({ logger: log.logger });
    const g = new CloneGate({ apiToken: RUNNERS_TOKEN, upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/`, templates: [`${SIM_NODE}/${SIM_TEMPLATE_VMID}`], lane: resetLane, logger: log.logger, certDir: dir, pollMs: 10 });
    const { url, caFile: pemFile } = await g.start();
    try {
      const pem = await readFile(pemFile, "utf8");
      // The task poll opens the kept-alive socket; the clone is the first request to reuse it.
      assert.equal((await call(url, "GET", taskPath("UPID:pve1:0:0:0:vzclone:1:root@pam:"), {}, { ca: pem })).status, 200);
      const c = await call<string>(url, "POST", clonePath(), cloneParams("runner-reset"), { ca: pem });
      assert.equal(c.status, 200, `${c.status} ${c.reason}`);
      assert.equal(resets, 1, "the upstream did reset the reused socket");
      assert.equal(requests.filter((r) => r.startsWith("POST")).length, 1, "the clone reached PVE once");
    } finally {
      await g.stop();
      await new Promise<void>((r) => upstream.close(() => r()));
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("the lane is released when the clone is refused, when its task fails, when the task status keeps failing, and at the hold cap", async () => {
    const key = `${SIM_NODE}/${SIM_TEMPLATE_VMID}`;
    const lastLeft = (runner: string) => log.waitFor((l) => l.msg === "clone gate: clone lane left" && l.runner === runner);

    // Refused by pveproxy (596) and by PVE (500): passed on as they are, released at once.
    sim.setFaults({ timeoutRate: 1, paths: "/clone$" });
    const refused = await viaGate("POST", clonePath(), cloneParams("runner-refused"));
    assert.deepEqual([refused.status, refused.reason], [596, "Connection timed out"]);
    assert.equal((await lastLeft("runner-refused")).reason, "clone refused (596)");
    sim.clearFaults();
    // PVE's 500 "already exists" for another guest's vmid: the gate's own 409 (see below), released at once.
    const exists = await viaGate("POST", clonePath(), { newid: SIM_TEMPLATE_VMID, hostname: "runner-exists" });
    assert.equal(exists.status, 409, exists.reason);
    assert.equal((await lastLeft("runner-exists")).reason, "vmid clash refused");
    assert.deepEqual(gate.stats()[key], { holding: null });

    // The task fails: held until it stopped, then released.
    sim.setFaults({ errorRate: { clone: 1 } });
    const failing = await viaGate<string>("POST", clonePath(), cloneParams("runner-failing"));
    assert.equal(failing.status, 200);
    assert.match(await waitTask(gateUrl, failing.data, ca), /^clone failed: /);
    assert.equal((await lastLeft("runner-failing")).reason, "task stopped");
    sim.clearFaults();

    // The task status keeps failing: released after a few polls, long before the task ends.
    sim.setLatency({ cloneLinked: 60_000 }); // 3 s
    sim.setFaults({ timeoutRate: 1, paths: "/tasks/" });
    const t0 = Date.now();
    const blind = await viaGate<string>("POST", clonePath(), cloneParams("runner-blind"));
    assert.equal(blind.status, 200);
    const left = await lastLeft("runner-blind");
    assert.equal(left.reason, "task status unavailable");
    assert.ok(Date.now() - t0 < 60_000 * SCALE * 0.5, "released long before the task ended");
    assert.ok(log.lines.some((l) => l.msg === "clone gate: clone task status keeps failing, releasing the clone lane" && l.level === 40 && l.lastError === "596 Connection timed out"));
    assert.deepEqual(gate.stats()[key], { holding: null });
    sim.clearFaults();
    await sim.settle();

    // The hold cap: a gate that holds at most 200 ms.
    const capLane = new CloneLane({ logger: log.logger });
    const dir = await mkdtemp(join(tmpdir(), "clone-gate-cap-"));
    const capped = new CloneGate({ apiToken: RUNNERS_TOKEN, upstream: `${simUrl}/`, templates: TEMPLATE_KEYS, lane: capLane, logger: log.logger, certDir: dir, pollMs: 20, maxHoldMs: 200 });
    const { url, caFile: capCa } = await capped.start();
    try {
      const pem = await readFile(capCa, "utf8");
      const slow = await call<string>(url, "POST", clonePath(), cloneParams("runner-capped"), { ca: pem });
      assert.equal(slow.status, 200);
      assert.equal((await lastLeft("runner-capped")).reason, "hold cap reached");
      assert.deepEqual(capped.stats()[key], { holding: null });
      assert.equal(await waitTask(simUrl, slow.data), "OK");
    } finally {
      await capped.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a clone onto another guest's vmid is refused with a 409 bpg does not retry; that guest keeps its config", async () => {
    sim.setLatency({ cloneLinked: 2_000 });
    const foreign = cloneParams("someone-elses-guest");
    const made = await call<string>(simUrl, "POST", clonePath(), foreign);
    assert.equal(made.status, 200, made.reason);
    assert.equal(await waitTask(simUrl, made.data), "OK");
    const configPath = `/nodes/${SIM_NODE}/lxc/${foreign.newid}/config`;
    const before = await call<Record<string, unknown>>(simUrl, "GET", configPath);
    const tasks = cloneTasks();

    // What bpg sends when handed that vmid: the same newid, its own hostname and description.
    const r = await viaGate("POST", clonePath(), { newid: foreign.newid, hostname: "runner-intruder", pool: "ci", description: "pve-runners ephemeral runner runner-intruder" });
    assert.equal(r.status, 409, `${r.status} ${r.reason}`);
    assert.match(r.reason, new RegExp(`^${VMID_CLASH}: CT ${foreign.newid} is another guest, not runner-intruder \\(its hostname: someone-elses-guest\\)`));
    assert.ok(isVmidClash(new Error(r.reason)));
    // bpg's retry predicate (IsTransientAPIError: 5xx only) does not retry it, so nothing is adopted.
    assert.ok(r.status < 500);
    const after = await call<Record<string, unknown>>(simUrl, "GET", configPath);
    assert.deepEqual(after.data, before.data, "the other guest's config (hostname, description, net0) is untouched");
    assert.equal(cloneTasks(), tasks, "no clone task ran");
    const left = await log.waitFor((l) => l.msg === "clone gate: clone lane left" && l.runner === "runner-intruder");
    assert.equal(left.reason, "vmid clash refused");
    assert.deepEqual(gate.stats()[`${SIM_NODE}/${SIM_TEMPLATE_VMID}`], { holding: null });

    // A token that cannot read the guest (outside its pool) cannot vouch for it either: refused.
    const hiddenId = nextId++;
    const hidden = await call<string>(simUrl, "POST", clonePath(), { newid: hiddenId, hostname: "runner-intruder" }, { token: SIM_TOKENS.root });
    assert.equal(hidden.status, 200, hidden.reason);
    await until("the hidden guest's clone stopped", () => sim.tasks().some((t) => t.upid === hidden.data && t.status === "stopped"));
    const blind = await viaGate("POST", clonePath(), { newid: hiddenId, hostname: "runner-intruder", pool: "ci" });
    assert.equal(blind.status, 409, `${blind.status} ${blind.reason}`);
    assert.match(blind.reason, /its hostname: unreadable/);
  });

  test("bpg's retry of a clone after a 5xx does not take the gate's 409 for its own success: the other guest is never adopted", async () => {
    // bpg v0.111.1 DoTask: on a retry, an error containing "already exists" counts as done, whatever
    // its status. The provider stand-in does the same; the gate's 409 must not read that way.
    sim.setLatency({ cloneLinked: 200 });
    const foreign = cloneParams("someone-elses-guest-2");
    const made = await call<string>(simUrl, "POST", clonePath(), foreign);
    assert.equal(await waitTask(simUrl, made.data), "OK");
    const configPath = `/nodes/${SIM_NODE}/lxc/${foreign.newid}/config`;
    const before = await call<Record<string, unknown>>(simUrl, "GET", configPath);
    // pveproxy times the first clone POST out (596, nothing done); bpg sends it again after its backoff.
    sim.setFaults({ next: { op: "api", count: 1, error: "596" } });
    const saved = process.env.SSL_CERT_FILE;
    process.env.SSL_CERT_FILE = caFile;
    const client = new PveClient({ endpoint: gateUrl, insecure: false, auth: { kind: "token", token: RUNNERS_TOKEN }, log: () => {} });
    const retries: string[] = [];
    try {
      const ctx = { client, signal: AbortSignal.timeout(30_000), pollMs: 20, log: (_l: string, msg: string) => void retries.push(msg) };
      const outcome = await cloneContainer(ctx, SIM_NODE, SIM_TEMPLATE_VMID, { newid: foreign.newid, hostname: "runner-retried", full: 0 }).then(
        () => null,
        (e: Error) => e,
      );
      assert.deepEqual(retries, ["retrying container clone"], "the 596 was retried once");
      assert.ok(outcome, "the retried clone is not taken for done");
      assert.ok(isVmidClash(outcome), outcome.message);
      const after = await call<Record<string, unknown>>(simUrl, "GET", configPath);
      assert.deepEqual(after.data, before.data, "the other guest is untouched");
    } finally {
      client.close();
      if (saved === undefined) delete process.env.SSL_CERT_FILE;
      else process.env.SSL_CERT_FILE = saved;
    }
  });

  test("a clone onto the vmid of this runner's own earlier clone passes PVE's answer on (bpg then adopts it)", async () => {
    sim.setLatency({ cloneLinked: 2_000 });
    const own = cloneParams("runner-again");
    const first = await viaGate<string>("POST", clonePath(), own);
    assert.equal(first.status, 200, first.reason);
    assert.equal(await waitTask(gateUrl, first.data, ca), "OK");
    const again = await viaGate("POST", clonePath(), own);
    assert.equal(again.status, 500);
    assert.match(again.reason, new RegExp(`^CT ${own.newid} already exists on node '${SIM_NODE}'`));
    assert.ok(!isVmidClash(new Error(again.reason)));
  });

  test("no Authorization, cookie, CSRF token or body ever reaches the log (level trace)", async () => {
    const r = await viaGate("GET", "/version", {}, { headers: { cookie: "PVEAuthCookie=PVE:root@pam:SECRETTICKET", csrfpreventiontoken: "CSRFSECRET" } });
    assert.equal(r.status, 200);
    const text = log.text();
    assert.ok(log.lines.some((l) => l.msg === "clone gate: passed" && l.path === "/api2/json/version" && l.status === 200 && typeof l.ms === "number"), "requests are logged at debug");
    for (const secret of [SIM_TOKENS.runners.secret, SIM_TOKENS.root.secret, "PVEAPIToken", "SECRETTICKET", "CSRFSECRET", "secret-in-body-0xC0FFEE"]) {
      assert.ok(!text.includes(secret), `${secret} never logged`);
    }
    assert.doesNotMatch(text, /authorization/i);
  });
});

// Issue 14: any local process can reach 127.0.0.1. The gate serves only a caller with the PVE token
// the listener gives terraform, keeps lanes for the configured templates alone, and adds no
// credentials of its own. (bpg v0.111.1 drops an endpoint's path, so a secret path cannot do this.)
describe("CloneGate against hostile local callers", () => {
  const log = captureLog("trace");
  const lane = new CloneLane({ logger: log.logger });
  const seen: Array<{ method: string; url: string; authorization?: string; cookie?: string }> = [];
  let upstream: http.Server;
  let upstreamUrl: string;
  let dir: string;
  let gate: CloneGate;
  let gateUrl: string;
  let ca: string;

  before(async () => {
    // A recording PVE: answers a clone with a task that has already stopped.
    upstream = http.createServer((req, res) => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", authorization: req.headers.authorization, cookie: req.headers.cookie });
      req.resume();
      const isClone = req.method === "POST" && /\/clone$/.test(req.url ?? "");
      const data = isClone ? `UPID:${SIM_NODE}:00001234:00000000:00000000:vzclone:1:root@pam:` : /\/tasks\//.test(req.url ?? "") ? { status: "stopped", exitstatus: "OK" } : { version: "9.0.0" };
      res.writeHead(200, { "content-type": "application/json;charset=UTF-8" });
      res.end(JSON.stringify({ data }));
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    dir = await mkdtemp(join(tmpdir(), "clone-gate-hostile-"));
    gate = new CloneGate({ upstream: `${upstreamUrl}/`, apiToken: RUNNERS_TOKEN, templates: [`${SIM_NODE}/${SIM_TEMPLATE_VMID}`], lane, logger: log.logger, certDir: dir, pollMs: 10 });
    let caFile: string;
    ({ url: gateUrl, caFile } = await gate.start());
    ca = await readFile(caFile, "utf8");
  });
  after(async () => {
    await gate.stop();
    await new Promise<void>((r) => upstream.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    seen.length = 0;
  });

  test("a request without the listener's token gets 401 (never 404: bpg would read \"gone\") and is never forwarded", async () => {
    assert.match(gateUrl, /^https:\/\/127\.0\.0\.1:\d+\/$/, "the handed-out URL is the bare origin (bpg drops any path)");
    const wrong: Array<[string, Parameters<typeof call>[4]]> = [
      ["no Authorization", { ca, noAuth: true }],
      ["another valid PVE token (root's)", { ca, token: SIM_TOKENS.root }],
      ["the token's id with another secret", { ca, token: { ...SIM_TOKENS.runners, secret: SIM_TOKENS.runners.secret.slice(0, -1) + "0" } }],
      ["the token with more after it", { ca, headers: { authorization: `PVEAPIToken=${RUNNERS_TOKEN}x` } }],
      ["a ticket cookie instead", { ca, noAuth: true, headers: { cookie: "PVEAuthCookie=PVE:root@pam:SECRETTICKET" } }],
    ];
    for (const [why, opts] of wrong) {
      const v = await call(gateUrl, "GET", "/version", {}, opts);
      assert.equal(v.status, 401, `GET with ${why}`);
      const c = await call(gateUrl, "POST", `/nodes/${SIM_NODE}/lxc/${SIM_TEMPLATE_VMID}/clone`, { newid: 4242, hostname: "runner-bogus" }, opts);
      assert.equal(c.status, 401, `clone with ${why}`);
    }
    assert.equal(seen.length, 0, "nothing reached PVE");
    assert.deepEqual(lane.stats(), {}, "no bogus clone sits in a lane");
    assert.deepEqual(gate.stats(), { [`${SIM_NODE}/${SIM_TEMPLATE_VMID}`]: { holding: null } });
    assert.ok(log.lines.some((l) => l.msg === "clone gate: request without the listener's PVE token refused (not from the listener's terraform)" && l.level === 40));

    // With it: forwarded as asked (PVE sees bpg's /api2/json/…), the token passed on unchanged.
    const ok = await call(gateUrl, "GET", "/version", {}, { ca });
    assert.equal(ok.status, 200);
    assert.deepEqual(seen.map((s) => [s.url, s.authorization]), [["/api2/json/version", `PVEAPIToken=${RUNNERS_TOKEN}`]]);
    assert.ok(!log.text().includes(SIM_TOKENS.runners.secret), "the token is never logged");
  });

  test("the provider stand-in drops the endpoint's path like bpg v0.111.1 and reaches PVE through the gate", async () => {
    const saved = process.env.SSL_CERT_FILE;
    process.env.SSL_CERT_FILE = join(dir, "clone-gate.pem");
    const client = new PveClient({ endpoint: gateUrl, insecure: false, auth: { kind: "token", token: RUNNERS_TOKEN }, log: () => {} });
    // bpg's NewConnection: `u.Path = ""`, so an endpoint with a path asks for /api2/json/… all the same.
    const withPath = new PveClient({ endpoint: `${upstreamUrl}/some/base//`, insecure: false, auth: { kind: "token", token: "t@pve!x=y" }, log: () => {} });
    try {
      assert.deepEqual(await client.request("GET", "version"), { version: "9.0.0" });
      await withPath.request("GET", "nodes/pve/status");
      assert.deepEqual(seen.map((s) => s.url), ["/api2/json/version", "/api2/json/nodes/pve/status"]);
    } finally {
      client.close();
      withPath.close();
      if (saved === undefined) delete process.env.SSL_CERT_FILE;
      else process.env.SSL_CERT_FILE = saved;
    }
  });

  test("clones of sources that are not configured templates pass ungated and leave no lane behind", async () => {
    const clones = await Promise.all(
      Array.from({ length: 40 }, (_, i) => call<string>(gateUrl, "POST", `/nodes/made-up-${i}/lxc/${100_000 + i}/clone`, { newid: 5000 + i, hostname: `bogus-${i}` }, { ca })),
    );
    assert.ok(clones.every((c) => c.status === 200), "forwarded: PVE, not the gate, decides (the token's privileges)");
    assert.equal(seen.filter((s) => s.method === "POST").length, 40);
    assert.equal(seen.filter((s) => s.url.includes("/tasks/")).length, 0, "no lane held them (no task polling)");
    assert.deepEqual(lane.stats(), {});
    assert.deepEqual(Object.keys(gate.stats()), [`${SIM_NODE}/${SIM_TEMPLATE_VMID}`]);

    // The configured template: gated (its task polled), and the lane gone once the task stopped.
    const own = await call<string>(gateUrl, "POST", `/nodes/${SIM_NODE}/lxc/${SIM_TEMPLATE_VMID}/clone`, { newid: 4300, hostname: "runner-real" }, { ca });
    assert.equal(own.status, 200);
    await log.waitFor((l) => l.msg === "clone gate: clone lane left" && l.runner === "runner-real");
    assert.ok(seen.some((s) => s.url.includes("/tasks/")), "the configured template's clone held its lane until its task stopped");
    await until("the lane is freed", () => Object.keys(lane.stats()).length === 0);
  });

  test("the gate adds no credentials: what reaches PVE is the caller's own token, nothing more", async () => {
    const clone = await call(gateUrl, "POST", `/nodes/${SIM_NODE}/lxc/${SIM_TEMPLATE_VMID}/clone`, { newid: 4301, hostname: "runner-own" }, { ca });
    assert.equal(clone.status, 200);
    await log.waitFor((l) => l.msg === "clone gate: clone lane left" && l.runner === "runner-own");
    assert.ok(seen.length >= 2, "the clone and its task polls reached PVE");
    // The gate's own task polls carry the clone's token too (PVE lets a task's owner read it).
    for (const s of seen) assert.deepEqual({ url: s.url, authorization: s.authorization ?? null, cookie: s.cookie ?? null }, { url: s.url, authorization: `PVEAPIToken=${RUNNERS_TOKEN}`, cookie: null });
  });
});

// The lane and the runner's apply wait for the poll that sees the clone stop. Near the end the last
// clone of the same template predicts, the gate polls every 25 ms instead of every 100; elsewhere,
// and without a prediction, as before. At time scale 1: the gain is real milliseconds.
describe("CloneGate polls densely only near a clone's expected end", () => {
  test("nextPollDelay: coarse without a prediction, fine within its window, never sleeping past the window's start", () => {
    assert.equal(nextPollDelay(0, undefined, 100), 100);
    assert.equal(nextPollDelay(5_000, undefined, 100), 100);
    // Expected 2 s: the window is 1.7–2.3 s (15 % of the clone, more than 250 ms).
    assert.equal(nextPollDelay(0, 2_000, 100), 100);
    assert.equal(nextPollDelay(1_650, 2_000, 100), 50, "a coarse sleep stops where the window starts");
    assert.equal(nextPollDelay(1_690, 2_000, 100), 25, "no sleep shorter than a fine one");
    assert.equal(nextPollDelay(1_700, 2_000, 100), 25);
    assert.equal(nextPollDelay(2_299, 2_000, 100), 25);
    assert.equal(nextPollDelay(2_300, 2_000, 100), 100, "a clone far longer than the last goes back to coarse polls");
    // Short clones: the window is ±250 ms; a configured poll below 25 ms is never slowed down.
    assert.equal(nextPollDelay(0, 400, 100), 100);
    assert.equal(nextPollDelay(150, 400, 100), 25);
    assert.equal(nextPollDelay(0, 400, 10), 10);
    // A long clone (a full one): the window is ±1 s at most, not 15 % of a minute.
    assert.equal(nextPollDelay(58_000, 60_000, 100), 100);
    assert.equal(nextPollDelay(58_950, 60_000, 100), 50);
    assert.equal(nextPollDelay(59_000, 60_000, 100), 25);
    assert.equal(nextPollDelay(61_000, 60_000, 100), 100);
  });

  test("the first clone of a template is polled every pollMs; the next one every 25 ms around when the first ended", async () => {
    const log = captureLog("debug");
    const lane = new CloneLane({ logger: log.logger });
    const CLONE_MS = 700;
    const polls: number[][] = [];
    let postedAt = 0;
    const upstream = http.createServer((req, res) => {
      req.resume();
      let data: unknown = { version: "9.0.0" };
      if (req.method === "POST" && /\/clone$/.test(req.url ?? "")) {
        postedAt = Date.now();
        polls.push([]);
        data = `UPID:${SIM_NODE}:00001234:00000000:00000000:vzclone:${polls.length}:root@pam:`;
      } else if (/\/tasks\//.test(req.url ?? "")) {
        const at = Date.now() - postedAt;
        polls.at(-1)!.push(at);
        data = at >= CLONE_MS ? { status: "stopped", exitstatus: "OK" } : { status: "running" };
      }
      res.writeHead(200, { "content-type": "application/json;charset=UTF-8" });
      res.end(JSON.stringify({ data }));
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const dir = await mkdtemp(join(tmpdir(), "clone-gate-fine-"));
    // The gate tells terraform's slots when a runner's clone request reached its lane.
    const queued: Array<[string, string, number]> = [];
    const gate = new CloneGate({ apiToken: RUNNERS_TOKEN, upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/`, templates: [`${SIM_NODE}/${SIM_TEMPLATE_VMID}`], lane, logger: log.logger, certDir: dir, onCloneQueued: (runner, key) => queued.push([runner, key, polls.length]) });
    try {
      const { url, caFile } = await gate.start();
      const ca = await readFile(caFile, "utf8");
      for (const [i, hostname] of ["runner-fine-1", "runner-fine-2"].entries()) {
        const r = await call(url, "POST", `/nodes/${SIM_NODE}/lxc/${SIM_TEMPLATE_VMID}/clone`, { newid: 500 + i, hostname }, { ca });
        assert.equal(r.status, 200);
      }
      // Each reported before its clone was forwarded (polls.length counts the clones PVE got).
      assert.deepEqual(queued, [["runner-fine-1", `${SIM_NODE}/${SIM_TEMPLATE_VMID}`, 0], ["runner-fine-2", `${SIM_NODE}/${SIM_TEMPLATE_VMID}`, 1]]);
      const gaps = (ts: number[]) => ts.slice(1).map((t, i) => t - ts[i]);
      // Medians, not extremes: one stall of a loaded machine's loop must not decide.
      const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
      const [first, second] = polls;
      // The default poll (100 ms) for the first clone.
      assert.ok(first.length > 2 && median(gaps(first)) >= 80, `first clone polled every 100 ms: ${first.join(", ")} ms`);
      assert.ok(first.at(-1)! >= CLONE_MS, "the lane is held until a poll saw the task stop");
      // The second: coarse until ~250 ms before the first's observed end, 25 ms apart from there.
      const windowFrom = first.at(-1)! - 250;
      const early = second.filter((t) => t < windowFrom - 30);
      assert.ok(early.length > 1 && median(gaps(early)) >= 80, `second clone polled coarsely before the window: ${second.join(", ")} ms`);
      const late = second.filter((t) => t >= windowFrom);
      assert.ok(late.length >= 4 && median(gaps(late)) <= 50, `second clone polled densely near the end (25 ms, not 100): ${second.join(", ")} ms`);
    } finally {
      await gate.stop();
      await new Promise<void>((r) => upstream.close(() => r()));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
