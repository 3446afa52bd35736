// The fault run (sim/fault-run.ts) as a test: the real listener process SIGKILLed and restarted
// while webhooks are dropped and duplicated, PVE fails operations and GitHub answers 5xx/429.
// Faults stay on to the end; the sweeper and recovery must still settle everything.
import { test } from "node:test";
import assert from "node:assert/strict";
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FAULT_RUN_DEFAULTS, runFaultRun } from "../../sim/fault-run.js";

test("under faults and SIGKILLs every job is served and nothing is left", { timeout: 600_000 }, async () => {
  const lines: string[] = [];
  const leaks: string[] = [];
  let scanned = 0;
  const r = await runFaultRun({
    ...FAULT_RUN_DEFAULTS,
    jobs: 12,
    kills: 3,
    timeoutMs: 420_000,
    out: (l) => lines.push(l),
    // Every file the run left (listener log, SQLite store, terraform's shared dir) against every secret.
    inspect: async ({ dir, secrets }) => {
      const files: string[] = [];
      const walk = (d: string) => {
        for (const n of readdirSync(d)) {
          const p = join(d, n);
          const st = lstatSync(p);
          if (st.isDirectory()) walk(p);
          else if (st.isFile() && st.size < 50_000_000 && !p.includes(`${join(dir, "credentials")}`) && !p.includes("/providers/")) files.push(p);
        }
      };
      walk(dir);
      const needles = [secrets.pveApiToken.split("=")[1], secrets.webhookSecret, secrets.githubAppPrivateKey.split("\n")[1]];
      for (const f of files) {
        const text = readFileSync(f, "latin1");
        scanned += text.length;
        for (const n of needles) if (text.includes(n)) leaks.push(`${f}: ${n.slice(0, 6)}…`);
        if (/ghs_[A-Za-z0-9]{20,}/.test(text)) leaks.push(`${f}: installation token`);
        if (/[A-Za-z0-9+/]{400,}={0,2}/.test(text)) leaks.push(`${f}: a JIT-config-like blob`);
      }
    },
  });
  lines.push(`fault-run secrets scan: ${(scanned / 1024 / 1024).toFixed(1)} MiB scanned, ${leaks.length} hits`);
  // The figures, for the CI log.
  process.stdout.write(lines.filter((l) => !/s \d+\/\d+ jobs completed/.test(l)).join("\n") + "\n");
  assert.equal(r.kills, 3, "the listener was killed");
  assert.ok(r.deliveriesDropped > 0 && r.deliveriesDuplicated > 0, "webhook faults happened");
  assert.ok(r.pveTasksFailed > 0, "PVE faults happened");
  assert.equal(r.served, r.jobs, "every job ran to success on a runner of ours");
  assert.equal(r.containersLeft, 0);
  assert.equal(r.registrationsLeft, 0);
  assert.equal(r.stackDirsLeft, 0);
  assert.deepEqual(leaks, [], "no secret in anything the run left");
});
