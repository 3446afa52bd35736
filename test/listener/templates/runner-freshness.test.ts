// Runner freshness: the date arithmetic of GitHub's 30-day rule (listener/templates/runner-release.ts) and the
// monitor that reads the templates' tags, asks for releases and warns (listener/templates/runner-freshness.ts).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { Writable } from "node:stream";
import {
  assessFreshness,
  compareRunnerVersions,
  DAY_MS,
  releaseOf,
  runnerVersionOfTags,
  runnerVersionTag,
  supersedingRelease,
  wholeDays,
  type RunnerRelease,
} from "../../../listener/templates/runner-release.js";
import { RunnerFreshness } from "../../../listener/templates/runner-freshness.js";
import { templateCopies } from "../../../listener/lifecycle/placement.js";
import type { ReleaseJson } from "../../../listener/adapters/github/github.js";

const at = (iso: string) => Date.parse(iso);
const rel = (version: string, published: string): RunnerRelease => ({ version, publishedAt: at(published) });

describe("runner versions and tags", () => {
  test("versions compare numerically, not as text", () => {
    assert.ok(compareRunnerVersions("2.336.0", "2.99.9") > 0);
    assert.ok(compareRunnerVersions("v2.336.0", "2.336.1") < 0);
    assert.equal(compareRunnerVersions("v2.336.0", "2.336.0"), 0);
    assert.throws(() => compareRunnerVersions("2.336", "2.336.0"), /not a runner version: 2\.336$/);
  });

  test("the tag is a valid PVE tag and is read back from PVE's ';'-joined list", () => {
    assert.equal(runnerVersionTag("v2.336.0"), "runner-2.336.0");
    assert.match(runnerVersionTag("2.336.0"), /^[a-z0-9_][a-z0-9_+.-]*$/);
    assert.equal(runnerVersionOfTags("pve-runners-template;runner-2.336.0"), "2.336.0");
    assert.equal(runnerVersionOfTags("runner-bogus;runner-2.330.1"), "2.330.1");
    assert.equal(runnerVersionOfTags("pve-runners-template"), null);
    assert.equal(runnerVersionOfTags(undefined), null);
    assert.throws(() => runnerVersionTag("latest"));
  });

  test("drafts, prereleases and odd tags are not updates GitHub offers", () => {
    assert.deepEqual(releaseOf({ tag_name: "v2.337.0", published_at: "2026-01-05T17:12:34Z", draft: false, prerelease: false }), rel("2.337.0", "2026-01-05T17:12:34Z"));
    assert.equal(releaseOf({ tag_name: "v2.337.0", published_at: "2026-01-05T17:12:34Z", prerelease: true }), null);
    assert.equal(releaseOf({ tag_name: "v2.337.0", published_at: null, draft: true }), null);
    assert.equal(releaseOf({ tag_name: "nightly", published_at: "2026-01-05T17:12:34Z" }), null);
    assert.equal(releaseOf({ tag_name: "v2.337.0", published_at: "yesterday" }), null);
  });
});

describe("GitHub's 30 days", () => {
  const releases = [rel("2.336.0", "2026-01-01T00:00:00Z"), rel("2.337.0", "2026-02-10T09:30:15Z"), rel("2.336.1", "2026-02-01T12:00:00Z"), rel("2.338.0", "2026-03-01T00:00:00Z")];

  test("count from the first release newer than the runner, by publication, not from the latest", () => {
    // 2.336.1 (a patch) came out before 2.337.0 and after 2.336.0: it starts 2.336.0's clock.
    assert.deepEqual(supersedingRelease("2.336.0", releases), rel("2.336.1", "2026-02-01T12:00:00Z"));
    assert.deepEqual(supersedingRelease("2.336.1", releases), rel("2.337.0", "2026-02-10T09:30:15Z"));
    assert.equal(supersedingRelease("2.338.0", releases), null);
    assert.equal(supersedingRelease("2.339.0", releases), null, "newer than anything listed: current");
  });

  test("current: the whole window ahead, no cutoff", () => {
    const f = assessFreshness("2.338.0", releases, at("2026-06-01T00:00:00Z"));
    assert.deepEqual(f, { level: "current", supersededBy: null, behindMs: 0, cutoffAt: null, leftMs: 30 * DAY_MS });
  });

  test("the cutoff is exactly 30×24 h after published_at, to the second", () => {
    const superseded = at("2026-02-01T12:00:00Z");
    const cutoff = at("2026-03-03T12:00:00Z"); // 30 days later (February has 28)
    const f = assessFreshness("2.336.0", releases, superseded + 5 * DAY_MS);
    assert.equal(f.cutoffAt, cutoff);
    assert.equal(f.level, "behind");
    assert.equal(wholeDays(f.behindMs), 5);
    assert.equal(wholeDays(f.leftMs), 25);
    // At the cutoff instant GitHub still queues ("more than 30 days"); one second later it does not.
    assert.equal(assessFreshness("2.336.0", releases, cutoff).level, "warning");
    assert.equal(assessFreshness("2.336.0", releases, cutoff).leftMs, 0);
    assert.equal(assessFreshness("2.336.0", releases, cutoff + 1000).level, "expired");
    assert.equal(assessFreshness("2.336.0", releases, cutoff + 1000).leftMs, -1000);
  });

  test("the warning starts 14 days before the cutoff, not a second earlier", () => {
    const warnFrom = at("2026-03-03T12:00:00Z") - 14 * DAY_MS;
    assert.equal(assessFreshness("2.336.0", releases, warnFrom - 1000).level, "behind");
    assert.equal(assessFreshness("2.336.0", releases, warnFrom).level, "warning");
    assert.equal(wholeDays(assessFreshness("2.336.0", releases, warnFrom).leftMs), 14);
  });

  test("days left never overstate: 13 d 23 h 59 min 59 s is 13 days", () => {
    const cutoff = at("2026-03-03T12:00:00Z");
    const f = assessFreshness("2.336.0", releases, cutoff - 14 * DAY_MS + 1000);
    assert.equal(wholeDays(f.leftMs), 13);
    assert.equal(wholeDays(f.behindMs), 16);
  });

  test("an offset timestamp is the same instant as its UTC form (no local time zone enters)", () => {
    const utc = releaseOf({ tag_name: "v2.337.0", published_at: "2026-02-10T09:30:15Z" })!;
    const offset = releaseOf({ tag_name: "v2.337.0", published_at: "2026-02-10T11:30:15+02:00" })!;
    assert.equal(offset.publishedAt, utc.publishedAt);
    const now = at("2026-02-20T00:00:00Z");
    assert.deepEqual(assessFreshness("2.336.1", [offset], now), assessFreshness("2.336.1", [utc], now));
  });

  test("no version (no tag) is unknown, never current", () => {
    assert.equal(assessFreshness(null, releases, Date.now()).level, "unknown");
    assert.equal(assessFreshness("garbage", releases, Date.now()).level, "unknown");
  });
});

/** A logger whose lines the test reads. */
function capture() {
  const lines: Array<{ level: number; msg: string; [k: string]: unknown }> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: "debug" }, stream), lines };
}

describe("the monitor", () => {
  const copies = templateCopies({ node: "pve", templates: [{ node: "pve", vmid: 9000 }, { node: "pve2", vmid: 9001 }, { node: "pve2", vmid: 9002 }] });
  const json = (version: string, published: string, extra: Partial<Record<string, unknown>> = {}): ReleaseJson => ({ tag_name: `v${version}`, published_at: published, draft: false, prerelease: false, ...extra });

  function monitor(o: { tags: Record<string, string | Error>; latest: () => ReleaseJson | Error; pages: ReleaseJson[][]; now: () => number }) {
    const { logger, lines } = capture();
    const asked = { latest: 0, pages: [] as number[] };
    const m = new RunnerFreshness({
      templates: () => copies,
      templateConfig: async (node, vmid) => {
        const t = o.tags[`${node}/${vmid}`];
        if (t instanceof Error) throw t;
        return { tags: t };
      },
      latestRelease: async () => {
        asked.latest++;
        const r = o.latest();
        if (r instanceof Error) throw r;
        return r;
      },
      releasesPage: async (page) => {
        asked.pages.push(page);
        return o.pages[page - 1] ?? [];
      },
      logger,
      now: o.now,
    });
    return { m, lines, asked };
  }

  test("per template copy: its own version, age and days left; lists pages back to the oldest one", async () => {
    let now = at("2026-03-01T06:00:00Z");
    // 100 releases on page 1 (newest first) so the list must go on to page 2 for 2.300.0's successor.
    const page1 = Array.from({ length: 100 }, (_, i) => json(`2.${340 - i}.0`, new Date(at("2026-02-25T00:00:00Z") - i * DAY_MS).toISOString()));
    const page2 = [json("2.240.1", "2025-10-01T00:00:00Z", { prerelease: true }), json("2.240.0", "2025-09-01T00:00:00Z")];
    const { m, asked } = monitor({
      tags: { "pve/9000": "pve-runners-template;runner-2.340.0", "pve2/9001": "pve-runners-template;runner-2.330.0", "pve2/9002": "pve-runners-template;runner-2.240.0" },
      latest: () => page1[0],
      pages: [page1, page2],
      now: () => now,
    });
    await m.tick();
    assert.deepEqual(asked.pages, [1, 2]);
    const s = m.snapshot();
    assert.deepEqual(s.latest, { version: "2.340.0", publishedAt: at("2026-02-25T00:00:00Z") });
    const by = Object.fromEntries(s.templates.map((t) => [t.template, t]));
    assert.equal(by["pve/9000"].level, "current");
    assert.equal(by["pve/9000"].leftDays, 30);
    // 2.331.0 came out 9 days before 2.340.0: 2026-02-16, 13 d 6 h before now.
    assert.equal(by["pve2/9001"].supersededBy?.version, "2.331.0");
    assert.deepEqual([by["pve2/9001"].level, by["pve2/9001"].behindDays, by["pve2/9001"].leftDays], ["behind", 13, 16]);
    // 2.241.0 is the oldest on page 1 (2025-11-18); the prerelease 2.240.1 does not count.
    assert.equal(by["pve2/9002"].supersededBy?.version, "2.241.0");
    assert.equal(by["pve2/9002"].level, "expired");
    // Days go on between checks: the snapshot is computed at its own time.
    now += 3 * DAY_MS;
    assert.equal(m.snapshot().templates.find((t) => t.template === "pve2/9001")?.leftDays, 13);
    assert.equal(m.snapshot().templates.find((t) => t.template === "pve2/9001")?.level, "warning");
  });

  test("warns once a day per template (not per tick), errors past the cutoff, and says which template", async () => {
    let now = at("2026-03-01T00:00:00Z");
    const { m, lines, asked } = monitor({
      tags: { "pve/9000": "runner-2.336.0", "pve2/9001": "runner-2.337.0", "pve2/9002": "runner-2.337.0" },
      latest: () => json("2.337.0", "2026-02-20T00:00:00Z"),
      pages: [[json("2.337.0", "2026-02-20T00:00:00Z"), json("2.336.0", "2026-01-01T00:00:00Z")]],
      now: () => now,
    });
    const warnings = () => lines.filter((l) => l.level === 40 && /days left before GitHub stops queueing/.test(l.msg));
    const errors = () => lines.filter((l) => l.level === 50);
    await m.tick(); // 9 days behind: 21 left, no warning yet
    assert.equal(warnings().length, 0);
    now = at("2026-03-07T00:00:00Z"); // 15 d behind, 15 left
    await m.tick();
    assert.equal(warnings().length, 0);
    now = at("2026-03-08T00:00:00Z"); // 14 left: warn
    const asks = asked.latest;
    await m.tick();
    await m.tick();
    now += 3_600_000;
    await m.tick();
    assert.equal(asked.latest - asks, 1, "GitHub is asked once a day, not per tick");
    assert.equal(warnings().length, 1, "once, however many ticks that day");
    assert.equal(warnings()[0].template, "pve/9000");
    assert.equal(warnings()[0].daysLeft, 14);
    assert.match(warnings()[0].msg, /template pve\/9000's runner 2\.336\.0 has 14 days left .*2\.337\.0 came out 16 days ago/);
    now = at("2026-03-09T00:00:00Z");
    await m.tick();
    assert.equal(warnings().length, 2, "again the next day");
    now = at("2026-03-22T00:00:01Z"); // past the cutoff (2026-03-22T00:00:00Z)
    await m.tick();
    assert.equal(errors().length, 1, "an error as soon as it is past, whatever day the warning was");
    assert.match(errors()[0].msg, /more than 30 days behind .*GitHub no longer queues jobs to it/);
    await m.tick();
    assert.equal(errors().length, 1);
  });

  test("a failed release check: no throw, one clear line, the last answer kept, tried again later", async () => {
    let now = at("2026-03-01T00:00:00Z");
    let fail: Error | null = null;
    const { m, lines, asked } = monitor({
      tags: { "pve/9000": "runner-2.336.0", "pve2/9001": "runner-2.336.0", "pve2/9002": "runner-2.336.0" },
      latest: () => fail ?? json("2.337.0", "2026-02-20T00:00:00Z"),
      pages: [[json("2.337.0", "2026-02-20T00:00:00Z")]],
      now: () => now,
    });
    await m.tick();
    const good = m.snapshot();
    fail = Object.assign(new Error("Service Unavailable\u001b[2J\r\nforged line"), { status: 503 });
    now += DAY_MS;
    await m.tick();
    now += 3_600_000; // the retry after an hour
    await m.tick();
    assert.equal(asked.latest, 3);
    const failed = lines.filter((l) => /could not ask GitHub for the latest actions\/runner release/.test(l.msg));
    assert.equal(failed.length, 1, "logged once, not per attempt");
    assert.equal(failed[0].err, "Service Unavailable [2J forged line (HTTP 503)", "one line, no control characters");
    assert.match(failed[0].msg, /keeping the answer from 2026-03-01T00:00:00\.000Z/);
    const s = m.snapshot();
    assert.deepEqual(s.latest, good.latest);
    assert.equal(s.checkedAt, good.checkedAt);
    assert.equal(s.lastError, "Service Unavailable [2J forged line (HTTP 503)");
    assert.equal(s.templates[0].supersededBy?.version, "2.337.0", "still judged by the last answer");
    fail = null;
    now += 3_600_000;
    await m.tick();
    assert.equal(m.snapshot().lastError, null);
    assert.ok(lines.some((l) => /answers the actions\/runner release check again/.test(l.msg)));
  });

  test("a template without the tag, or whose node cannot be read, is unknown (its last version kept), said once", async () => {
    const now = at("2026-03-01T00:00:00Z");
    const tags: Record<string, string | Error> = { "pve/9000": "pve-runners-template", "pve2/9001": "runner-2.336.0", "pve2/9002": "runner-2.336.0" };
    const { m, lines } = monitor({ tags, latest: () => json("2.336.0", "2026-02-20T00:00:00Z"), pages: [], now: () => now });
    await m.tick();
    tags["pve2/9001"] = new Error("GET /nodes/pve2/lxc/9001/config: 595 no route to host");
    await m.tick();
    await m.tick();
    const by = Object.fromEntries(m.snapshot().templates.map((t) => [t.template, t]));
    assert.deepEqual([by["pve/9000"].version, by["pve/9000"].level], [null, "unknown"]);
    assert.deepEqual([by["pve2/9001"].version, by["pve2/9001"].level], ["2.336.0", "current"]);
    assert.match(by["pve2/9001"].readError ?? "", /no route to host/);
    assert.equal(lines.filter((l) => /has no runner-<version> tag/.test(l.msg)).length, 1);
    assert.equal(lines.filter((l) => /could not read template pve2\/9001/.test(l.msg)).length, 1);
  });
});
