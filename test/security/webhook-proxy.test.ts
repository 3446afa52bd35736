// The webhook port behind a reverse proxy: the failure limit keys on the address the configured
// proxy hops vouch for, so X-Forwarded-For written by the client itself neither evades the limit
// nor blames someone else; /healthz tells the internet ok or not ok and nothing more.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { pino } from "pino";
import { Store } from "../../listener/store/store.js";
import { webhookApp } from "../../listener/http/webhook-app.js";
import { listenLimited } from "../../listener/http/http-listen.js";
import type { TrustProxy } from "../../listener/http/trust-proxy.js";

const SECRET = "proxy-webhook-secret-0123456789";
const sig = (body: string) => `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`;
const body = JSON.stringify({
  action: "queued",
  workflow_job: { id: 99, run_id: 1, run_attempt: 1, status: "queued", labels: ["self-hosted"], runner_name: null },
  repository: { full_name: "acme/app", owner: { login: "acme" } },
});
const headers = (xff: string, signature = "sha256=00") => ({
  "content-type": "application/json",
  "x-github-event": "workflow_job",
  "x-github-delivery": "abcdef00-0000-4000-8000-000000000001",
  "x-hub-signature-256": signature,
  "x-forwarded-for": xff,
});

async function start(trustProxy: TrustProxy, healthy: () => boolean = () => true) {
  const store = new Store(":memory:");
  const delivered: string[] = [];
  const app = webhookApp({
    webhookPath: "/hook",
    trustProxy,
    healthy,
    webhook: { secret: SECRET, bodyLimitBytes: 64 * 1024, failuresPerMinute: 30, store, logger: pino({ level: "silent" }), onDelivery: (g) => delivered.push(g) },
  });
  const { server, url } = await listenLimited(app, 0, "127.0.0.1");
  return { url, delivered, close: () => (server.close(), server.closeAllConnections(), store.close()) };
}

/** 40 requests with a bad signature, each with its own client-written X-Forwarded-For. */
async function probe(url: string, xffOf: (i: number) => string): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < 40; i++) {
    const res = await fetch(`${url}/hook`, { method: "POST", body, headers: headers(xffOf(i)) });
    await res.arrayBuffer();
    statuses.push(res.status);
  }
  return statuses;
}

describe("failure limit behind a reverse proxy", () => {
  test("trustProxy loopback: a rotating X-Forwarded-For entry written by the client does not evade the limit", async () => {
    // The proxy on loopback appends the address it saw (nginx $proxy_add_x_forwarded_for): the
    // client's own entries come first and are not believed. With `trust proxy: true` (main) the
    // leftmost entry was the address: 40 different addresses, never limited.
    const h = await start("loopback");
    try {
      const statuses = await probe(h.url, (i) => `198.51.100.${i}, 203.0.113.7`);
      assert.deepEqual(statuses, [...Array(30).fill(401), ...Array(10).fill(429)]);
      // Another client behind the same proxy is not affected.
      const other = await fetch(`${h.url}/hook`, { method: "POST", body, headers: headers("203.0.113.8") });
      assert.equal(other.status, 401);
    } finally {
      h.close();
    }
  });

  test("X-Forwarded-For from a hop that is not a configured proxy is ignored: rotating it does not evade the limit", async () => {
    const h = await start(["10.9.9.9"]);
    try {
      const statuses = await probe(h.url, (i) => `198.51.100.${i}`);
      assert.deepEqual(statuses, [...Array(30).fill(401), ...Array(10).fill(429)]);
    } finally {
      h.close();
    }
  });

  test("a prober claiming GitHub's address gets itself limited, and GitHub's signed delivery is processed", async () => {
    const github = "140.82.115.1";
    const h = await start(1);
    try {
      const statuses = await probe(h.url, () => `${github}, 203.0.113.9`);
      assert.equal(statuses.at(-1), 429, "the prober is limited");
      const direct = await probe(h.url, () => github);
      assert.equal(direct.at(-1), 429, "a prober whose proxy-seen address is GitHub's too");
      const res = await fetch(`${h.url}/hook`, { method: "POST", body, headers: headers(github, sig(body)) });
      assert.equal(res.status, 202);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(h.delivered, ["abcdef00-0000-4000-8000-000000000001"]);
    } finally {
      h.close();
    }
  });
});

describe("/healthz on the webhook port", () => {
  test("the body is exactly ok, or not ok with 503: no version, counts or names", async () => {
    let state: "up" | "down" | "broken" = "up";
    const h = await start(false, () => {
      if (state === "broken") throw new Error("SQLITE_IOERR: disk I/O error at /var/lib/pve-runners");
      return state === "up";
    });
    try {
      const get = async () => {
        const res = await fetch(`${h.url}/healthz`);
        return { status: res.status, type: res.headers.get("content-type"), body: await res.text() };
      };
      const up = await get();
      assert.deepEqual([up.status, up.body], [200, "ok"]);
      assert.match(up.type ?? "", /^text\/plain/);
      state = "down";
      assert.deepEqual(await get().then((r) => [r.status, r.body]), [503, "not ok"]);
      state = "broken";
      assert.deepEqual(await get().then((r) => [r.status, r.body]), [503, "not ok"], "the error says nothing");
    } finally {
      h.close();
    }
  });
});
