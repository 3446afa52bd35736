// The status page in a real browser (headless Chromium through playwright-core): it renders what the
// snapshot holds, runs no injected script, fits 1280 px without horizontal scrolling, and its
// screenshot is not blank. docs/status-page.png is rewritten only with UPDATE_SCREENSHOT=1.
//
// Chromium: Debian's `chromium` package (.ci/run installs it), any chromium on PATH, or CHROMIUM_PATH.
// Without it these tests are skipped with one line, and fail when CI is set (test/fixtures/chromium.ts).
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import { renderStatusPage } from "../../../listener/http/status-page.js";
import type { StatusSnapshot } from "../../../listener/http/status.js";
import type { JobRow, RunnerRow } from "../../../listener/store/store.js";
import { chromiumSkip, findChromium } from "../../fixtures/chromium.js";

// dist/test/listener → the repository root
const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
const SCREENSHOT = join(ROOT, "docs", "status-page.png");
const WIDTH = 1280;

const NOW = Date.UTC(2025, 5, 1, 14, 30, 0);
const s_ = (n: number) => NOW - n * 1000;

function job(j: Partial<JobRow> & Pick<JobRow, "jobId">): JobRow {
  return {
    runId: 880000 + (j.jobId % 1000), runAttempt: 1, repo: "acme/web", owner: "acme", installationId: 42,
    labels: ["self-hosted", "linux", "x64"], labelSet: "small", scope: "org:acme", status: "completed",
    runnerName: null, conclusion: null, createdAt: s_(600), updatedAt: s_(300), disputedAt: null, ...j,
  };
}

function runner(r: Partial<RunnerRow> & Pick<RunnerRow, "name" | "state">): RunnerRow {
  return {
    labelSet: "small", scope: "org:acme", madeForJob: null, jobId: null, vmid: null, githubRunnerId: null,
    stackDir: null, node: null, template: null, attempts: 1, lastError: null, createdAt: s_(400), stateSince: s_(30), ...r,
  };
}

/** A listener in the middle of a busy afternoon. */
function realisticSnapshot(): StatusSnapshot {
  const jobs: JobRow[] = [
    job({ jobId: 31000417, repo: "acme/web", status: "queued", updatedAt: s_(4) }),
    job({ jobId: 31000416, repo: "acme/api", labels: ["self-hosted", "linux", "x64", "docker"], labelSet: "docker", status: "queued", updatedAt: s_(9) }),
    job({ jobId: 31000415, repo: "acme/web", status: "in_progress", runnerName: "runner-7f3a21", updatedAt: s_(72) }),
    job({ jobId: 31000414, repo: "acme/infra-modules", labels: ["self-hosted", "linux", "ARM64"], labelSet: "arm", status: "in_progress", runnerName: "runner-7f3a1c", updatedAt: s_(140) }),
    job({ jobId: 31000412, repo: "acme/api", labels: ["self-hosted", "linux", "x64", "docker"], labelSet: "docker", conclusion: "failure", runnerName: "runner-7f3a0e", updatedAt: s_(190) }),
    job({ jobId: 31000410, repo: "acme/web", conclusion: "success", runnerName: "runner-7f3a09", updatedAt: s_(260) }),
    job({ jobId: 31000409, repo: "acme/docs", labels: ["ubuntu-latest"], labelSet: null, scope: null, conclusion: "success", runnerName: "GitHub Actions 12", updatedAt: s_(300) }),
    job({ jobId: 31000407, repo: "acme/web", conclusion: "cancelled", runnerName: null, updatedAt: s_(610) }),
  ];
  const runners: RunnerRow[] = [
    runner({ name: "runner-7f3a2c", state: "requested", labelSet: "small", madeForJob: 31000417, stateSince: s_(4) }),
    runner({ name: "runner-7f3a2b", state: "provisioning", labelSet: "docker", madeForJob: 31000416, vmid: 9123, stateSince: s_(8) }),
    runner({ name: "runner-7f3a25", state: "booting", labelSet: "small", madeForJob: 31000413, vmid: 9122, stateSince: s_(21) }),
    runner({ name: "runner-7f3a21", state: "busy", labelSet: "small", madeForJob: 31000413, jobId: 31000415, vmid: 9121, githubRunnerId: 811, stateSince: s_(72) }),
    runner({ name: "runner-7f3a1c", state: "busy", labelSet: "arm", scope: "repo:acme/infra-modules", madeForJob: 31000414, jobId: 31000414, vmid: 9120, githubRunnerId: 809, stateSince: s_(140) }),
    runner({ name: "runner-7f3a11", state: "idle", labelSet: "small", madeForJob: 31000411, vmid: 9119, githubRunnerId: 808, stateSince: s_(35) }),
    runner({ name: "runner-7f3a0e", state: "destroying", labelSet: "docker", madeForJob: 31000412, jobId: 31000412, vmid: 9118, stateSince: s_(6) }),
    runner({ name: "runner-7f3a09", state: "gone", labelSet: "small", madeForJob: 31000410, jobId: 31000410, vmid: 9117, stateSince: s_(230) }),
    runner({
      name: "runner-7f3a02", state: "failed", labelSet: "docker", madeForJob: 31000405, vmid: null, attempts: 3, stateSince: s_(540),
      lastError: "terraform apply: Error: error waiting for container clone: task UPID:pve1:0003A1F2:01B2C3D4:66F0A1B2:vzclone:9000:pve-runners@pve!listener: failed: CT is locked (disk)",
    }),
  ];
  return {
    version: "0.1.0",
    startedAt: NOW - (2 * 86400 + 5 * 3600 + 17 * 60) * 1000,
    now: NOW,
    draining: false,
    githubBaseUrl: "https://api.github.com",
    webBaseUrl: "https://github.com",
    counts: { queuedJobs: 2, liveRunners: 7, runnersByState: { requested: 1, provisioning: 1, booting: 1, idle: 1, busy: 2, destroying: 1, failed: 1, gone: 212 } },
    runners,
    lanes: { "pve1/9000": { running: 1, waiting: 1 }, "pve1/9001": { running: 0, waiting: 0 }, "pve2/9010": { running: 0, waiting: 0 } },
    jobs,
    sweeps: [
      { at: s_(95), kind: "destroy-container", target: "9104", reason: "guest powered off: its runner ran its one job (completed webhook never arrived)", dryRun: false },
      { at: s_(215), kind: "delete-registration", target: "runner-7f39f0", reason: "registration with no live runner or container of ours", dryRun: false },
      { at: s_(335), kind: "redeliver", target: "delivery 5f1e2a40-8c1b-11ef-9a3e-0242ac120002", reason: "failed workflow_job delivery since the last pass", dryRun: false },
    ],
    errors: [
      { at: s_(540), runner: "runner-7f3a02", job: 31000405, message: "terraform apply: Error: error waiting for container clone: task UPID:pve1:0003A1F2:01B2C3D4:66F0A1B2:vzclone:9000:pve-runners@pve!listener: failed: CT is locked (disk)" },
      { at: s_(1250), message: "sweeper: GET /repos/acme/web/actions/runs?status=queued: 502 Bad Gateway (retried 3 times)" },
    ],
  };
}

/** Colour statistics of a PNG, computed in the browser (a canvas), so no PNG decoder is needed here. */
interface PixelStats {
  width: number;
  height: number;
  /** Share of pixels that differ clearly from the most common colour (the background). */
  inkRatio: number;
  /** Distinct colours, quantised to 4 bits a channel. */
  colors: number;
  /** Hue sectors (of 12) holding at least 200 clearly coloured pixels: the state badges' tints. */
  hues: number;
}

async function pixelStats(page: Page, png: Buffer): Promise<PixelStats> {
  return page.evaluate(async (b64: string) => {
    // Runs in the browser (the project compiles without the DOM lib, hence the untyped globals).
    const w = globalThis as any;
    const img = new w.Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = w.document.createElement("canvas");
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const d: Uint8ClampedArray = ctx.getImageData(0, 0, c.width, c.height).data;
    const counts = new Map<number, number>();
    const hueBins = new Array<number>(12).fill(0);
    for (let i = 0; i < d.length; i += 4) {
      const r = d[i], g = d[i + 1], b = d[i + 2];
      const key = ((r >> 4) << 8) | ((g >> 4) << 4) | (b >> 4);
      counts.set(key, (counts.get(key) ?? 0) + 1);
      const max = Math.max(r, g, b), min = Math.min(r, g, b);
      if (max - min >= 24) {
        let h: number;
        if (max === r) h = ((g - b) / (max - min) + 6) % 6;
        else if (max === g) h = (b - r) / (max - min) + 2;
        else h = (r - g) / (max - min) + 4;
        hueBins[Math.floor(h * 2) % 12]++;
      }
    }
    let bgKey = 0, bgCount = -1;
    for (const [k, n] of counts) if (n > bgCount) [bgKey, bgCount] = [k, n];
    const bg = [(bgKey >> 8) << 4, ((bgKey >> 4) & 15) << 4, (bgKey & 15) << 4];
    let ink = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i] - bg[0]) + Math.abs(d[i + 1] - bg[1]) + Math.abs(d[i + 2] - bg[2]) > 60) ink++;
    }
    return { width: c.width, height: c.height, inkRatio: ink / (d.length / 4), colors: counts.size, hues: hueBins.filter((n) => n >= 200).length };
  }, png.toString("base64"));
}

/** What a real status page has and a blank or error page lacks: ink, many colours, several tints. */
function looksRendered(p: PixelStats): string | null {
  if (p.inkRatio < 0.015) return `only ${(p.inkRatio * 100).toFixed(2)}% of the pixels differ from the background`;
  if (p.colors < 40) return `only ${p.colors} distinct colours`;
  if (p.hues < 4) return `only ${p.hues} hue sectors are coloured (the state badges have at least 4)`;
  return null;
}

function pngSize(png: Buffer): { width: number; height: number } {
  assert.equal(png.subarray(1, 4).toString("latin1"), "PNG", "not a PNG");
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

let browser: Browser | undefined;

async function openPage(): Promise<Page> {
  browser ??= await chromium.launch({ executablePath: findChromium()!, headless: true });
  return browser.newPage({ viewport: { width: WIDTH, height: 900 }, deviceScaleFactor: 1, colorScheme: "light", reducedMotion: "reduce" });
}

/** Writes the page to a temp file without its refresh (a reload mid-test would destroy the DOM under us) and opens it. */
async function show(page: Page, html: string, problems: string[]): Promise<void> {
  assert.match(html, /<meta http-equiv="refresh" content="\d+">/);
  const dir = mkdtempSync(join(tmpdir(), "status-page-"));
  const file = join(dir, "status.html");
  writeFileSync(file, html.replace(/<meta http-equiv="refresh" content="\d+">/, ""));
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("dialog", (d) => {
    problems.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  page.on("request", (r) => {
    if (!r.url().startsWith("file:") && !r.url().startsWith("data:")) problems.push(`request: ${r.url()}`);
  });
  try {
    await page.goto(pathToFileURL(file).href, { waitUntil: "load" });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function noHorizontalOverflow(page: Page): Promise<void> {
  const o = await page.evaluate(() => {
    const d = (globalThis as any).document;
    return {
      doc: d.documentElement.scrollWidth as number,
      view: d.documentElement.clientWidth as number,
      tables: ([...d.querySelectorAll(".table-wrap")] as any[])
        .filter((w) => w.scrollWidth > w.clientWidth + 1)
        .map((w) => `${w.closest("section")?.id}: ${w.scrollWidth} > ${w.clientWidth}`),
    };
  });
  assert.ok(o.doc <= o.view, `the page scrolls sideways: ${o.doc} px wide in a ${o.view} px viewport`);
  assert.deepEqual(o.tables, [], "a table scrolls sideways inside its box");
}

describe("the status page in Chromium", { skip: chromiumSkip() }, () => {
  after(async () => {
    await browser?.close();
  });

  test("the status page shows the snapshot, fits 1280 px, and its screenshot is not blank", async (t) => {
    const page = await openPage();
    const problems: string[] = [];
    await show(page, renderStatusPage(realisticSnapshot()), problems);

    // What an operator reads.
    const text = await page.locator("body").innerText();
    for (const name of ["runner-7f3a2c", "runner-7f3a21", "runner-7f3a02", "pve1/9000", "acme/infra-modules", "CT is locked (disk)", "destroy-container", "not ours", "accepting jobs"]) {
      assert.ok(text.includes(name), `the page does not show ${name}`);
    }
    assert.equal(await page.locator(".banner").count(), 0, "no draining banner when not draining");
    assert.equal(await page.locator("h1").innerText(), "pve-runners");
    const runnerRows = page.locator("table.runners tbody tr");
    assert.equal(await runnerRows.count(), 9);
    const busyBadge = page.locator("table.runners tbody tr", { hasText: "runner-7f3a21" }).locator(".badge");
    assert.equal(await busyBadge.innerText(), "busy");
    assert.ok(await busyBadge.isVisible());
    const failedBadge = page.locator("table.runners tbody tr", { hasText: "runner-7f3a02" }).locator(".badge").first();
    assert.equal(await failedBadge.innerText(), "failed");
    const bg = (e: unknown) => (globalThis as any).getComputedStyle(e).backgroundColor as string;
    const bgBusy = await busyBadge.evaluate(bg);
    const bgFailed = await failedBadge.evaluate(bg);
    assert.notEqual(bgBusy, bgFailed, "state badges are coloured by state (is the stylesheet applied?)");
    assert.notEqual(bgBusy, "rgba(0, 0, 0, 0)", "the busy badge has no background: the stylesheet did not apply");
    const failedJob = page.locator("table.jobs tbody tr", { hasText: "31000412" });
    assert.equal(await failedJob.locator(".badge").innerText(), "failure");
    assert.equal(await failedJob.locator("a").getAttribute("href"), "https://github.com/acme/api/actions/runs/880412/job/31000412");
    assert.match(text, /\b4 s ago\b/, "relative times are shown");
    assert.match(text, /\bup 2 d 5 h\b/, "uptime is shown");

    await noHorizontalOverflow(page);
    assert.deepEqual(problems, [], "the page logged errors (a CSP violation blocks its stylesheet), ran a dialog or fetched something");

    // The screenshot, measured on a page of its own.
    const png = await page.screenshot({ fullPage: true, animations: "disabled" });
    const probe = await browser!.newPage({ viewport: { width: WIDTH, height: 900 }, deviceScaleFactor: 1 });
    const stats = await pixelStats(probe, png);
    assert.equal(stats.width, WIDTH);
    const why = looksRendered(stats);
    assert.equal(why, null, `the screenshot looks blank or broken: ${why} (${JSON.stringify(stats)})`);

    // The check is strict enough to fail a blank page and a plain error page.
    await probe.setContent("<h1>Internal Server Error</h1><pre>TypeError: Cannot read properties of undefined (reading 'runners')\n    at renderStatusPage (status-page.js:1:1)</pre>");
    const errorStats = await pixelStats(probe, await probe.screenshot({ fullPage: true }));
    assert.notEqual(looksRendered(errorStats), null, `an error page passes the not-blank check: ${JSON.stringify(errorStats)}`);
    await probe.setContent("");
    const blankStats = await pixelStats(probe, await probe.screenshot({ fullPage: true }));
    assert.notEqual(looksRendered(blankStats), null, `a blank page passes the not-blank check: ${JSON.stringify(blankStats)}`);
    t.diagnostic(`pixels: page ${JSON.stringify(stats)}, error page ${JSON.stringify(errorStats)}, blank ${JSON.stringify(blankStats)}`);
    await probe.close();

    if (process.env.UPDATE_SCREENSHOT === "1") {
      writeFileSync(SCREENSHOT, png);
      t.diagnostic(`wrote ${SCREENSHOT} (${stats.width}×${stats.height}, ${stats.colors} colours, ${(stats.inkRatio * 100).toFixed(1)}% ink)`);
    } else {
      assert.ok(existsSync(SCREENSHOT), `${SCREENSHOT} is missing: run UPDATE_SCREENSHOT=1 npm test -- status-page`);
      const committed = pngSize(readFileSync(SCREENSHOT));
      assert.equal(stats.width, committed.width, "the screenshot's width changed");
      // Fonts differ a little between machines; a layout change (a section gone, rows doubled) does not hide in 12%.
      const drift = Math.abs(stats.height - committed.height) / committed.height;
      assert.ok(drift <= 0.12, `the screenshot is ${stats.height} px high, the committed one ${committed.height} px: re-check the page and run UPDATE_SCREENSHOT=1 npm test -- status-page`);
    }
    await page.close();
  });

  test("hostile text stays text, the draining banner shows, and an empty page fits too", async () => {
    const page = await openPage();
    const problems: string[] = [];
    const s = realisticSnapshot();
    s.draining = true;
    s.jobs[0] = { ...s.jobs[0], repo: `"><script>alert(1)</script>`, labels: ["<img src=x onerror=alert(1)>", "x".repeat(300)] };
    s.runners[0] = { ...s.runners[0], lastError: `<svg onload=alert(1)>${"y".repeat(400)}` };
    s.errors.unshift({ at: s.now - 1000, message: `<iframe src="javascript:alert(1)"></iframe> ${"z".repeat(2000)}` });
    await show(page, renderStatusPage(s), problems);
    assert.equal(await page.locator("script, img, svg, iframe").count(), 0, "an injected element is in the DOM");
    assert.ok((await page.locator("body").innerText()).includes("<img src=x onerror=alert(1)>"), "the hostile label is shown as text");
    const hrefs = await page.locator("a").evaluateAll((as) => as.map((a) => (a as any).href as string));
    for (const h of hrefs) assert.match(h, /^https:\/\/github\.com\//);
    assert.ok(await page.locator(".banner").isVisible(), "the draining banner is visible");
    assert.match(await page.locator(".banner").innerText(), /Draining/);
    await noHorizontalOverflow(page);
    await page.setViewportSize({ width: 800, height: 900 });
    const doc = await page.evaluate(() => {
      const e = (globalThis as any).document.documentElement;
      return (e.scrollWidth - e.clientWidth) as number;
    });
    assert.ok(doc <= 0, `at 800 px the page scrolls sideways by ${doc} px (tables may scroll inside their boxes, the page may not)`);

    const empty = await browser!.newPage({ viewport: { width: WIDTH, height: 900 }, deviceScaleFactor: 1 });
    await show(empty, renderStatusPage({ ...s, draining: false, runners: [], jobs: [], lanes: {}, sweeps: [], errors: [], counts: { queuedJobs: 0, liveRunners: 0, runnersByState: {} } }), problems);
    assert.ok((await empty.locator("body").innerText()).includes("No runners — scaled to zero."));
    await noHorizontalOverflow(empty);
    await empty.close();
    assert.deepEqual(problems, []);
    await page.close();
  });
});
