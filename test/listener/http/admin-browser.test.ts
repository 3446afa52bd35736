// The admin listener in a real browser (headless Chromium): an operator logs in with the token and
// sees the status page (reloads included); a page on another port of the same host (same site, so a
// SameSite=Strict cookie still goes along) cannot drain it; a rebinding name answered by 127.0.0.1
// gets nothing. Skipped like the status page's browser test when there is no Chromium.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { chromium, type Browser } from "playwright-core";
import { pino } from "pino";
import { startAdmin } from "../../../listener/http/admin.js";
import { Metrics } from "../../../listener/metrics/metrics.js";
import { renderStatusPage } from "../../../listener/http/status-page.js";
import type { StatusSnapshot } from "../../../listener/http/status.js";
import { chromiumSkip, findChromium } from "../../fixtures/chromium.js";

const TOKEN = "browser-admin-token-0123456789abcdef";
const REBIND = "rebind.evil.example";

const snapshot = (): StatusSnapshot => ({
  version: "0.1.0", startedAt: Date.now() - 60_000, now: Date.now(), draining: false,
  githubBaseUrl: "https://api.github.com", webBaseUrl: "https://github.com",
  counts: { queuedJobs: 0, liveRunners: 1, runnersByState: { busy: 1 } },
  runners: [{ name: "runner-b1a2c3", state: "busy", labelSet: "small", scope: "org:acme", madeForJob: 7, jobId: 7, vmid: 100001, githubRunnerId: 1, stackDir: null, node: "pve", template: null, attempts: 1, lastError: null, createdAt: Date.now() - 30_000, stateSince: Date.now() - 10_000 }],
  lanes: {}, jobs: [], sweeps: [], errors: [],
});

describe("the admin listener in Chromium", { skip: chromiumSkip() }, () => {
  let browser: Browser;
  let admin: Awaited<ReturnType<typeof startAdmin>>;
  let evil: Server;
  let evilUrl = "";
  const drained: boolean[] = [];

  before(async () => {
    const metrics = new Metrics({ runnersByState: () => ({}), lanes: () => ({}), queuedJobs: () => 0, githubRateLimitRemaining: () => null, draining: () => false });
    admin = await startAdmin({
      host: "127.0.0.1", port: 0, token: TOKEN, metrics, logger: pino({ level: "silent" }),
      hooks: { snapshot, setDraining: (on) => void drained.push(on), sweep: async () => ({}), renderPage: renderStatusPage },
    });
    // The attacker's page: same host, another port. It submits a text/plain form and a no-cors fetch.
    evil = createServer((_req, res) => {
      res.setHeader("content-type", "text/html");
      res.end(`<!doctype html><body><form id="f" method="post" action="${admin.url}/api/drain" enctype="text/plain"><input name='{"x":"' value='"}'></form>
<script>fetch(${JSON.stringify(admin.url + "/api/drain")}, { method: "POST", mode: "no-cors", credentials: "include", body: "{}" }).finally(() => document.getElementById("f").submit());</script></body>`);
    });
    await new Promise<void>((r) => evil.listen(0, "127.0.0.1", r));
    evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/`;
    // DNS rebinding without DNS: the browser resolves the attacker's name to loopback.
    browser = await chromium.launch({ executablePath: findChromium()!, headless: true, args: [`--host-resolver-rules=MAP ${REBIND} 127.0.0.1`] });
  });
  after(async () => {
    await browser?.close();
    await admin?.close();
    evil?.close();
  });

  test("an operator logs in with the token and sees the status page; the cookie is HttpOnly, SameSite=Strict", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error" && !/status of 401/.test(m.text())) problems.push(m.text());
    });
    const first = await page.goto(admin.url + "/");
    assert.equal(first?.status(), 401);
    await page.locator('input[name="token"]').fill("not-the-token-0123456789abcdef");
    await Promise.all([page.waitForURL(`${admin.url}/login`), page.locator("button[type=submit]").click()]);
    assert.match(await page.locator("[role=alert]").innerText(), /not the admin token/);
    await page.locator('input[name="token"]').fill(TOKEN);
    await Promise.all([page.waitForURL(`${admin.url}/`), page.locator("button[type=submit]").click()]);
    assert.ok((await page.locator("body").innerText()).includes("runner-b1a2c3"), "the status page after login");
    const reload = await page.reload();
    assert.equal(reload?.status(), 200, "the page's own reload keeps the session");
    const cookies = await context.cookies(admin.url);
    assert.equal(cookies.length, 1);
    assert.equal(cookies[0].httpOnly, true);
    assert.equal(cookies[0].sameSite, "Strict");
    assert.notEqual(cookies[0].value, TOKEN);
    assert.equal(cookies[0].expires, -1, "a session cookie");
    assert.ok(!page.url().includes(TOKEN), "the token is in no URL");
    assert.deepEqual(problems, [], "a CSP violation or script error on the login or status page");
    await context.close();
  });

  test("a page on another port of this host cannot drain it, even with the session cookie going along", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(admin.url + "/login");
    await page.locator('input[name="token"]').fill(TOKEN);
    await Promise.all([page.waitForURL(`${admin.url}/`), page.locator("button[type=submit]").click()]);
    const attack = await context.newPage();
    const answered = attack.waitForResponse((r) => r.url() === `${admin.url}/api/drain` && r.request().resourceType() === "document");
    await attack.goto(evilUrl);
    const r = await answered;
    assert.equal(r.status(), 403);
    assert.match(await r.text(), /Sec-Fetch-Site: same-site/, "the browser saw it as same-site: the cookie went along");
    assert.ok(await r.request().headerValue("cookie"), "the session cookie was sent");
    assert.deepEqual(drained, [], "drained by a cross-origin page");
    await context.close();
  });

  test("DNS rebinding: a page on the attacker's name, now resolving to 127.0.0.1, gets 421 and nothing else", async () => {
    const page = await browser.newPage();
    const port = new URL(admin.url).port;
    for (const path of ["/", "/api/status", "/metrics", "/login"]) {
      const r = await page.goto(`http://${REBIND}:${port}${path}`);
      assert.equal(r?.status(), 421, path);
      assert.doesNotMatch(await page.content(), /runner-b1a2c3|<form/);
    }
    await page.close();
  });
});
