// The admin commands' tables: a retirement reason (surplus, idle timeout) is not an error.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runnersTable } from "../../cli/admin.js";
import type { RunnerRow } from "../../listener/store.js";

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
