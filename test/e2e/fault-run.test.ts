// The fault run (sim/fault-run.ts) as a test: the real listener process SIGKILLed and restarted
// while webhooks are dropped and duplicated, PVE fails operations and GitHub answers 5xx/429.
// Faults stay on to the end; the sweeper and recovery must still settle everything.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FAULT_RUN_DEFAULTS, runFaultRun } from "../../sim/fault-run.js";

test("under faults and SIGKILLs every job is served and nothing is left", { timeout: 600_000 }, async () => {
  const lines: string[] = [];
  const r = await runFaultRun({ ...FAULT_RUN_DEFAULTS, jobs: 12, kills: 3, timeoutMs: 420_000, out: (l) => lines.push(l) });
  // The figures, for the CI log.
  process.stdout.write(lines.filter((l) => !/s \d+\/\d+ jobs completed/.test(l)).join("\n") + "\n");
  assert.equal(r.kills, 3, "the listener was killed");
  assert.ok(r.deliveriesDropped > 0 && r.deliveriesDuplicated > 0, "webhook faults happened");
  assert.ok(r.pveTasksFailed > 0, "PVE faults happened");
  assert.equal(r.served, r.jobs, "every job ran to success on a runner of ours");
  assert.equal(r.containersLeft, 0);
  assert.equal(r.registrationsLeft, 0);
  assert.equal(r.stackDirsLeft, 0);
});
