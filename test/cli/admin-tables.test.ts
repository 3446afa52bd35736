// The admin commands' tables: a retirement reason (surplus, idle timeout) is not an error.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runnersTable, templatesTable } from "../../cli/admin.js";
import type { StatusSnapshot } from "../../listener/http/status.js";
import type { RunnerRow } from "../../listener/store/store.js";

const row = (name: string, lastError: string | null, state: RunnerRow["state"] = "gone"): RunnerRow => ({
  name, labelSet: "default", scope: "repo:acme/app", state, madeForJob: null, jobId: null, vmid: 100001, githubRunnerId: null,
  stackDir: null, node: "pve", template: "pve/9000", attempts: lastError && lastError !== "surplus" ? 3 : 0, lastError, createdAt: 0, stateSince: 0,
});

test("runners table: surplus and idle timeout go in RETIRED, failures in ERROR", () => {
  const lines = runnersTable({ now: 1000 }, [row("runner-a", "surplus"), row("runner-b", "idle timeout"), row("runner-c", "Permission check failed", "failed"), row("runner-d", null)]).trimEnd().split("\n");
  const header = lines[0].split(/\s{2,}/);
  assert.deepEqual(header.slice(-2), ["RETIRED", "ERROR"]);
  const cells = (name: string) => lines.find((l) => l.startsWith(name))!.split(/\s{2,}/);
  assert.deepEqual(cells("runner-a").slice(-1), ["surplus"], "surplus: RETIRED, no ERROR");
  assert.deepEqual(cells("runner-b").slice(-1), ["idle timeout"]);
  assert.deepEqual(cells("runner-c").slice(-2), ["-", "Permission check failed"]);
  assert.deepEqual(cells("runner-d").slice(-1), ["-"]);
});

test("templates table: runner, what superseded it and when, the cutoff date, days left (PAST once past); no section when freshness is off", () => {
  const DAY = 86_400_000;
  const now = Date.UTC(2026, 2, 25, 12);
  const base = { template: "pve/9000", version: "2.336.0", readError: null, behindMs: 0, leftMs: 0 };
  const s = {
    now,
    runnerFreshness: {
      latest: { version: "2.338.0", publishedAt: Date.UTC(2026, 2, 20) },
      checkedAt: now - 7200_000,
      lastError: null,
      templates: [
        { ...base, level: "expired", supersededBy: { version: "2.337.0", publishedAt: Date.UTC(2026, 1, 20) }, behindDays: 33, leftDays: -3, leftMs: -3.5 * DAY, cutoffAt: Date.UTC(2026, 2, 22) },
        { ...base, template: "pve2/9001", version: "2.337.0", level: "warning", supersededBy: { version: "2.338.0", publishedAt: Date.UTC(2026, 2, 10) }, behindDays: 15, leftDays: 14, leftMs: 14.5 * DAY, cutoffAt: Date.UTC(2026, 3, 9) },
        { ...base, template: "pve2/9002", version: null, readError: "timeout", level: "unknown", supersededBy: null, behindDays: 0, leftDays: 30, cutoffAt: null },
      ],
    },
  } as unknown as StatusSnapshot;
  const lines = templatesTable(s).trimEnd().split("\n");
  assert.equal(lines[0], "runner releases: latest 2.338.0 (2026-03-20), asked 2h ago");
  const cells = (name: string) => lines.find((l) => l.startsWith(name))!.split(/\s{2,}/);
  assert.deepEqual(lines[1].split(/\s{2,}/), ["TEMPLATE", "RUNNER", "SUPERSEDED BY", "CUTOFF", "DAYS LEFT"]);
  assert.deepEqual(cells("pve/9000"), ["pve/9000", "2.336.0", "2.337.0 33d ago", "2026-03-22", "PAST (3d ago)"]);
  assert.deepEqual(cells("pve2/9001"), ["pve2/9001", "2.337.0", "2.338.0 15d ago", "2026-04-09", "14 !"]);
  assert.deepEqual(cells("pve2/9002"), ["pve2/9002", "unknown (unreadable)", "-", "-", "-"]);
  assert.equal(templatesTable({ ...s, runnerFreshness: null }), "");
});
