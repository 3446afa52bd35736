// proxmox.insecure applies to the listener's own PVE calls through their own agent, never process-wide:
// with a self-signed PVE certificate, insecure: false fails with a clear error, true works, and a
// plain fetch or https request to another self-signed server in the same process still fails.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { get as httpsGet, createServer, request, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { CloneGate } from "../../../../listener/lifecycle/clone-gate.js";
import { CloneLane } from "../../../../listener/lifecycle/clone-lane.js";
import { ProxmoxApi } from "../../../../listener/adapters/proxmox/proxmox.js";
import { generateSelfSignedCert } from "../../../../listener/http/self-signed-cert.js";
import { PveSim, SIM_TOKENS } from "../../../../sim/pve/index.js";

const logger = pino({ level: "silent" });
const token = `${SIM_TOKENS.runners.id}=${SIM_TOKENS.runners.secret}`;

describe("ProxmoxApi and a self-signed PVE certificate", () => {
  const pveCert = generateSelfSignedCert({ commonName: "pve.example", organization: "PVE Cluster Manager CA", ips: ["127.0.0.1"] });
  const sim = new PveSim({ timeScale: 0.01, tls: { certPem: pveCert.certPem, keyPem: pveCert.keyPem } });
  const otherCert = generateSelfSignedCert({ commonName: "other.example", ips: ["127.0.0.1"] });
  let other: Server;
  let pveUrl: string;
  let otherUrl: string;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "pve-runners-tls-"));
    pveUrl = await sim.start(0, "127.0.0.1");
    other = createServer({ cert: otherCert.certPem, key: otherCert.keyPem }, (_req, res) => res.end("ok"));
    await new Promise<void>((r) => other.listen(0, "127.0.0.1", r));
    otherUrl = `https://127.0.0.1:${(other.address() as { port: number }).port}/`;
  });
  after(async () => {
    await sim.stop();
    other.closeAllConnections();
    await new Promise((r) => other.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  const otherFails = async () => {
    await assert.rejects(fetch(otherUrl), (err: Error & { cause?: { code?: string } }) => /CERT/.test(err.cause?.code ?? ""), "global fetch still verifies");
    await assert.rejects(
      new Promise((resolve, reject) => httpsGet(otherUrl, resolve).on("error", reject)),
      (err: NodeJS.ErrnoException) => /CERT/.test(err.code ?? ""),
      "node:https's global agent still verifies",
    );
  };

  test("insecure: false refuses the certificate with an error that says what to do", async () => {
    assert.match(pveUrl, /^https:/);
    const api = new ProxmoxApi({ endpoint: pveUrl + "/", token, logger, insecure: false });
    await assert.rejects(api.request("GET", "/version"), /GET \/version: the PVE certificate is not trusted \(.*\): set proxmox\.insecure: true, or trust PVE's CA \(system bundle or NODE_EXTRA_CA_CERTS\)/);
  });

  test("insecure: true works for this client alone; nothing else in the process stops verifying", async () => {
    const api = new ProxmoxApi({ endpoint: pveUrl + "/", token, logger, insecure: true });
    const v = await api.request<{ version: string }>("GET", "/version");
    assert.match(v.version, /^9\./);
    assert.equal(process.env.NODE_TLS_REJECT_UNAUTHORIZED, undefined);
    await otherFails();
    // And a client for the same PVE without the option is still refused.
    await assert.rejects(new ProxmoxApi({ endpoint: pveUrl + "/", token, logger }).request("GET", "/version"), /not trusted/);
  });

  test("without insecure, PVE's CA in NODE_EXTRA_CA_CERTS is trusted (by this client's own roots)", async () => {
    const caFile = join(dir, "pve-root-ca.pem");
    await writeFile(caFile, pveCert.certPem);
    const saved = process.env.NODE_EXTRA_CA_CERTS;
    process.env.NODE_EXTRA_CA_CERTS = caFile;
    try {
      const api = new ProxmoxApi({ endpoint: pveUrl + "/", token, logger });
      assert.match((await api.request<{ version: string }>("GET", "/version")).version, /^9\./);
    } finally {
      if (saved === undefined) delete process.env.NODE_EXTRA_CA_CERTS;
      else process.env.NODE_EXTRA_CA_CERTS = saved;
    }
  });

  test("the clone gate's upstream: insecure on its own agent too (595 without it)", async () => {
    const viaGate = async (insecure: boolean) => {
      const gate = new CloneGate({ upstream: pveUrl + "/", apiToken: token, insecure, templates: [], lane: new CloneLane({ logger }), certDir: join(dir, `gate-${insecure}`), logger });
      const { url, caFile } = await gate.start();
      try {
        const ca = await readFile(caFile, "utf8");
        return await new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = request(new URL("api2/json/version", url), { ca, headers: { authorization: `PVEAPIToken=${token}` }, agent: false }, (res) => {
            let body = "";
            res.on("data", (c: Buffer) => (body += c.toString()));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
          });
          req.on("error", reject);
          req.end();
        });
      } finally {
        await gate.stop();
      }
    };
    assert.equal((await viaGate(false)).status, 595, "the gate does not trust PVE's self-signed certificate by default");
    const ok = await viaGate(true);
    assert.equal(ok.status, 200);
    assert.match(ok.body, /"version":"9\./);
    await otherFails();
  });
});
