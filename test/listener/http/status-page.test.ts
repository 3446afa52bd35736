// The status page renderer: untrusted text is escaped, links are job pages on GitHub only, the
// draining banner and the empty states show. (The browser test is status-page-browser.test.ts.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { esc, formatAgo, formatDuration, renderStatusPage, safeJobHref } from "../../../listener/http/status-page.js";
import type { StatusSnapshot } from "../../../listener/http/status.js";
import type { JobRow, RunnerRow } from "../../../listener/store/store.js";

const NOW = Date.UTC(2025, 5, 1, 12, 0, 0);

function snap(over: Partial<StatusSnapshot> = {}): StatusSnapshot {
  return {
    version: "0.1.0",
    startedAt: NOW - 3 * 3600_000 - 12 * 60_000,
    now: NOW,
    draining: false,
    githubBaseUrl: "https://api.github.com",
    webBaseUrl: "https://github.com",
    counts: { queuedJobs: 0, liveRunners: 0, runnersByState: {} },
    runners: [],
    lanes: {},
    jobs: [],
    sweeps: [],
    errors: [],
    ...over,
  };
}

function job(over: Partial<JobRow> = {}): JobRow {
  return {
    jobId: 101, runId: 9001, runAttempt: 1, repo: "acme/web", owner: "acme", installationId: 1,
    labels: ["self-hosted", "linux"], labelSet: "small", scope: "org:acme", status: "queued",
    runnerName: null, conclusion: null, createdAt: NOW - 30_000, updatedAt: NOW - 12_000, disputedAt: null, ...over,
  };
}

function runner(over: Partial<RunnerRow> = {}): RunnerRow {
  return {
    name: "runner-1", labelSet: "small", scope: "org:acme", state: "busy", madeForJob: 101, jobId: 101, vmid: 9101,
    githubRunnerId: 5, stackDir: "/var/lib/pve-runners/stacks/runner-1", node: null, template: null, attempts: 1, lastError: null,
    createdAt: NOW - 120_000, stateSince: NOW - 45_000, ...over,
  };
}

/** Every href in the document. */
function hrefs(html: string): string[] {
  return [...html.matchAll(/\bhref\s*=\s*"([^"]*)"/gi)].map((m) => m[1]);
}

const XSS_LABEL = "<img src=x onerror=alert(1)>";
const XSS_REPO = `"><script>alert(1)</script>`;

test("untrusted text from webhooks and APIs is escaped everywhere it appears", () => {
  const evil = 'x"><script>alert(2)</script><b onmouseover=alert(3)>\'`';
  const html = renderStatusPage(
    snap({
      version: evil,
      counts: { queuedJobs: 1, liveRunners: 1, runnersByState: { busy: 1, [evil]: 2 } },
      runners: [runner({ name: evil, labelSet: evil, scope: evil, state: evil as any, lastError: evil })],
      lanes: { [evil]: { running: 1, waiting: 2 } },
      jobs: [job({ repo: XSS_REPO, labels: [XSS_LABEL, evil], labelSet: evil, runnerName: evil, conclusion: evil, status: "completed" })],
      sweeps: [{ at: NOW - 5000, kind: evil, target: evil, reason: evil, dryRun: true }],
      errors: [{ at: NOW - 1000, runner: evil, job: 101, message: `${XSS_LABEL}\n${evil}` }],
    }),
  );
  assert.ok(!html.includes(XSS_LABEL), "the label's <img> tag appears unescaped");
  assert.ok(!html.includes(XSS_REPO), "the repo's quote-and-script appears unescaped");
  assert.ok(!/<script/i.test(html), "a <script> tag reached the page");
  assert.ok(!/<img/i.test(html), "an <img> tag reached the page");
  assert.ok(!/<b onmouseover/i.test(html), "an injected attribute reached the page");
  // Every tag carries only the page's own attributes (attribute values, escaped, are set aside first).
  const allowedAttrs = new Set(["lang", "charset", "http-equiv", "content", "name", "rel", "href", "class", "title", "datetime", "id", "role", "aria-label", "scope"]);
  for (const m of html.matchAll(/<[a-zA-Z][^>]*>/g)) {
    const names = [...m[0].replace(/="[^"]*"/g, "").matchAll(/\s([^\s=>/]+)/g)].map((a) => a[1].toLowerCase());
    for (const n of names) assert.ok(allowedAttrs.has(n), `unexpected attribute ${n} in ${m[0]}`);
  }
  // The escaped forms are there: the text is shown, not dropped.
  assert.ok(html.includes("&lt;img src=x onerror=alert(1)&gt;"));
  assert.ok(html.includes("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
  // Whatever the text, the only tags are the page's own.
  const tags = new Set([...html.matchAll(/<([a-zA-Z][a-zA-Z0-9]*)/g)].map((m) => m[1].toLowerCase()));
  const allowed = new Set(["html", "head", "meta", "link", "title", "style", "body", "header", "div", "h1", "h2", "span", "b", "strong", "main", "section", "table", "thead", "tbody", "tr", "th", "td", "a", "time", "footer"]);
  for (const t of tags) assert.ok(allowed.has(t), `unexpected tag <${t}>`);
  assert.equal(esc(`<&>"'\``), "&lt;&amp;&gt;&quot;&#39;&#96;");
});

test("job links are the job's page on GitHub; javascript: and foreign origins never become an href", () => {
  const good = renderStatusPage(snap({ jobs: [job({ jobId: 7, runId: 70, repo: "acme/web" })], runners: [runner({ madeForJob: 7, jobId: 7 })] }));
  assert.ok(hrefs(good).includes("https://github.com/acme/web/actions/runs/70/job/7"), hrefs(good).join(", "));
  assert.match(good, /<a [^>]*href="https:\/\/github\.com\/acme\/web\/actions\/runs\/70\/job\/7"[^>]*>#7<\/a>/);

  const ghes = renderStatusPage(snap({ githubBaseUrl: "https://ghe.example.com/api/v3", webBaseUrl: "https://ghe.example.com", jobs: [job({ jobId: 8, runId: 80 })] }));
  assert.ok(hrefs(ghes).includes("https://ghe.example.com/acme/web/actions/runs/80/job/8"));

  const hostile: StatusSnapshot[] = [
    snap({ webBaseUrl: "javascript:alert(1)//", jobs: [job({ repo: "x/y" })] }),
    snap({ webBaseUrl: "JaVaScRiPt:alert(1)", jobs: [job()] }),
    snap({ webBaseUrl: "data:text/html,<script>alert(1)</script>", jobs: [job()] }),
    snap({ webBaseUrl: "", jobs: [job({ repo: "javascript:alert(1)" })] }),
    snap({ jobs: [job({ repo: "\njavascript:alert(1)" }), job({ jobId: 102, repo: XSS_REPO }), job({ jobId: 103, repo: "@evil.example/x" })] }),
    snap({ webBaseUrl: "https://github.com@evil.example", jobs: [job()] }),
  ];
  for (const s of hostile) {
    const html = renderStatusPage(s);
    for (const h of hrefs(html)) {
      if (h === "data:,") continue; // the empty favicon
      assert.ok(!/^\s*javascript:/i.test(h), `javascript: href ${h}`);
      const u = new URL(h.replace(/&amp;/g, "&"));
      assert.ok(u.protocol === "https:" || u.protocol === "http:", `non-http(s) href ${h}`);
      assert.equal(u.origin, new URL(s.webBaseUrl).origin, `href off the web origin: ${h}`);
      assert.equal(u.username, "");
    }
  }
  assert.equal(safeJobHref({ webBaseUrl: "javascript:alert(1)//" }, job()), null);
  assert.equal(safeJobHref({ webBaseUrl: "https://github.com" }, job({ repo: "/evil.example/x" }))?.startsWith("https://github.com/"), true);
  // A repository name cannot carry the link elsewhere, and its quote cannot close the attribute.
  const html = renderStatusPage(snap({ jobs: [job({ repo: XSS_REPO })] }));
  for (const h of hrefs(html)) assert.ok(!h.includes('"') && !h.includes("<"), h);
});

test("the draining banner shows only when draining", () => {
  const on = renderStatusPage(snap({ draining: true }));
  assert.match(on, /class="banner"/);
  assert.match(on, /Draining\./);
  assert.match(on, /No new runners are made/);
  assert.match(on, /<title>\[draining\]/);
  const off = renderStatusPage(snap({ draining: false }));
  assert.doesNotMatch(off, /class="banner"/);
  assert.doesNotMatch(off, /Draining\./);
  assert.match(off, /accepting jobs/);
});

test("an empty snapshot reads as intentional: scaled to zero, no jobs, nothing swept, no errors", () => {
  const html = renderStatusPage(snap());
  assert.match(html, /No runners — scaled to zero\./);
  assert.match(html, /No jobs seen yet\./);
  assert.match(html, /No clones since start\./);
  assert.match(html, /Nothing swept\./);
  assert.match(html, /No errors\./);
  assert.doesNotMatch(html, /<table/, "empty sections draw no empty tables");
  assert.doesNotMatch(html, /undefined|NaN|\[object/);
});

test("a full snapshot: header, counts, runners, lanes, jobs, sweeps, errors, relative times", () => {
  const jobs = [
    job({ jobId: 201, runId: 2001, status: "completed", conclusion: "failure", runnerName: "runner-a", updatedAt: NOW - 12_000 }),
    job({ jobId: 202, runId: 2002, labels: ["ubuntu-latest"], labelSet: null, scope: null }),
  ];
  const html = renderStatusPage(
    snap({
      version: "1.2.3",
      counts: { queuedJobs: 3, liveRunners: 2, runnersByState: { busy: 1, provisioning: 1, gone: 4 } },
      runners: [
        runner({ name: "runner-a", state: "busy", madeForJob: 201, jobId: 201, stateSince: NOW - 125_000 }),
        runner({ name: "runner-b", state: "failed", madeForJob: 999, jobId: null, vmid: null, attempts: 3, lastError: "x".repeat(500) }),
      ],
      lanes: { "pve1/9000": { running: 1, waiting: 2 } },
      jobs,
      sweeps: [{ at: NOW - 60_000, kind: "destroy-container", target: "9107", reason: "no live record", dryRun: false }],
      errors: [{ at: NOW - 5 * 60_000, runner: "runner-b", job: 999, message: "terraform apply failed: CT is locked (disk)" }],
    }),
  );
  assert.match(html, /<meta http-equiv="refresh" content="5">/);
  assert.match(html, /version <b>1\.2\.3<\/b>/);
  assert.match(html, />3 h 12 min</, "uptime");
  assert.match(html, /class="card-value">3<\/div><div class="card-label">queued jobs/);
  assert.match(html, /class="card-value">2<\/div><div class="card-label">live runners/);
  assert.match(html, /badge tone-gone">gone<\/span><span class="count">4</);
  assert.match(html, /runner-a/);
  assert.match(html, /badge tone-busy">busy</);
  assert.match(html, /badge tone-failed">failed</);
  assert.match(html, />2 min</, "age in state");
  assert.match(html, /×3/, "apply attempts");
  assert.match(html, />x{89}…<\/span>/, "the last error is truncated in the table");
  assert.ok(html.includes(`title="${"x".repeat(500)}"`), "the full last error is in its tooltip");
  assert.match(html, /<span class="mono">#999<\/span>/, "a job the snapshot does not hold is not linked");
  assert.match(html, /pve1\/9000/);
  assert.match(html, /<td class="mono">pve1\/9000<\/td><td><span class="badge tone-run">cloning<\/span><\/td><td class="num"><span class="strong">1<\/span><\/td><td class="num"><span class="strong">2<\/span>/);
  assert.match(html, /1 waiting in the clone lanes|2 waiting in the clone lanes/);
  assert.match(html, /badge tone-bad">failure</);
  assert.match(html, /not ours/);
  assert.match(html, />12 s ago</);
  assert.match(html, />1 min ago</);
  assert.match(html, /destroy-container/);
  assert.match(html, /CT is locked \(disk\)/);
  assert.match(html, />5 min ago</);
  assert.doesNotMatch(html, /undefined|NaN|\[object/);
});

test("durations and relative times", () => {
  assert.equal(formatDuration(0), "0 s");
  assert.equal(formatDuration(59_999), "59 s");
  assert.equal(formatDuration(60_000), "1 min");
  assert.equal(formatDuration(3600_000), "1 h");
  assert.equal(formatDuration(3 * 3600_000 + 12 * 60_000), "3 h 12 min");
  assert.equal(formatDuration(50 * 3600_000), "2 d 2 h");
  assert.equal(formatDuration(NaN), "—");
  assert.equal(formatAgo(NOW - 12_000, NOW), "12 s ago");
  assert.equal(formatAgo(NOW + 5_000, NOW), "just now", "clock skew is not 'in the future'");
  assert.equal(formatAgo(NOW - 400, NOW), "just now");
  // A garbage timestamp does not throw (toISOString on an invalid date would).
  assert.doesNotThrow(() => renderStatusPage(snap({ errors: [{ at: NaN, message: "m" }], sweeps: [{ at: 1e20, kind: "k", target: "t", reason: "r", dryRun: false }] })));
});

test("templates: each copy's runner, what superseded it, the cutoff and days left; a banner only from the warning on; error text escaped", () => {
  const DAY = 86_400_000;
  const t = (template: string, over: Record<string, unknown>) => ({ template, version: "2.336.0", readError: null, level: "current", supersededBy: null, behindDays: 0, leftDays: 30, behindMs: 0, leftMs: 30 * DAY, cutoffAt: null, ...over });
  const fresh = {
    latest: { version: "2.337.0", publishedAt: NOW - 20 * DAY },
    checkedAt: NOW - 3600_000,
    lastError: "<b>503</b>",
    templates: [
      t("pve/9000", { version: "2.337.0" }),
      t("pve2/9001", { level: "warning", supersededBy: { version: "2.337.0", publishedAt: NOW - 20 * DAY }, behindDays: 20, leftDays: 9, behindMs: 20 * DAY + 5, leftMs: 10 * DAY - 5, cutoffAt: NOW + 10 * DAY }),
      t("pve2/9002", { version: null, level: "unknown", readError: "<no tag>" }),
    ],
  } as unknown as StatusSnapshot["runnerFreshness"];
  const html = renderStatusPage(snap({ runnerFreshness: fresh }));
  assert.match(html, /<section id="templates"><h2>Templates <span class="note">latest actions\/runner 2\.337\.0, asked 1 h ago; the last check failed: &lt;b&gt;503&lt;\/b&gt;;/);
  assert.match(html, /<td class="mono">pve\/9000<\/td><td class="mono">2\.337\.0<\/td><td><span class="muted">—<\/span><\/td><td class="nowrap"><span class="muted">—<\/span><\/td><td><span class="badge tone-ok">current<\/span>/);
  assert.match(html, /<td class="mono">pve2\/9001<\/td>.*2\.337\.0<\/span> <span class="muted small">20 d ago<\/span>.*2025-06-11.*<span class="badge tone-wait">9 d left<\/span>/);
  assert.match(html, /<td class="mono">pve2\/9002<\/td><td class="mono"><span class="muted" title="&lt;no tag&gt;">unknown<\/span>/);
  assert.match(html, /Rebuild the template\.<\/strong> pve2\/9001: runner 2\.336\.0, 9 d left/);
  assert.doesNotMatch(html, /<b>503/);
  // Current everywhere: the section, no banner; freshness off: no section.
  const calm = renderStatusPage(snap({ runnerFreshness: { ...fresh!, templates: [fresh!.templates[0]] } }));
  assert.doesNotMatch(calm, /Rebuild the template/);
  assert.doesNotMatch(renderStatusPage(snap()), /id="templates"/);
});
