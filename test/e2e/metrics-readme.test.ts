// Every series the README lists under /metrics appears once its event has happened: the list is
// read from the README itself, so a documented series that is never exported (or a renamed one)
// fails here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { settled, startE2E } from "./harness.js";

const readme = readFileSync(fileURLToPath(new URL("../../../README.md", import.meta.url)), "utf8");

/** The README's /metrics bullet: series names and the phase list. */
function documented(): { series: string[]; phases: string[] } {
  const start = readme.indexOf("- **`/metrics`**");
  assert.ok(start >= 0, "the README has a /metrics bullet");
  const bullet = readme.slice(start, readme.indexOf("\n- **", start + 1));
  const series = [...new Set([...bullet.matchAll(/`(pve_runners_[a-z_]+)/g)].map((m) => m[1]))];
  // From "life (" to the next series name: the phases, with notes in parentheses between them.
  const phaseList = /and a job's life \((.*?)`pve_runners_/s.exec(bullet)?.[1] ?? "";
  const phases = [...phaseList.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]);
  return { series, phases };
}

test("every /metrics series and phase the README lists is exported once its event happened", { timeout: 180_000 }, async () => {
  const { series, phases } = documented();
  assert.ok(series.length >= 10 && phases.length >= 9, `parsed ${series.length} series, ${phases.length} phases`);
  const e = await startE2E();
  try {
    const auth = { authorization: `Bearer ${e.world.secrets.adminToken!}` };
    const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 500 });
    await settled(e, [job.id]);
    // A sweeper action: a stack dir nobody owns.
    mkdirSync(join(e.world.config.stateDir, "runners", "runner-0e0e0e0e", "stacks", "runner"), { recursive: true });
    const sweep = await fetch(`${e.service.adminUrl}/api/sweep`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: "{}" });
    assert.equal(sweep.status, 200);
    const text = await (await fetch(`${e.service.adminUrl}/metrics`, { headers: auth })).text();
    const samples = text.split("\n").filter((l) => l && !l.startsWith("#"));
    for (const name of series) assert.ok(samples.some((l) => l.startsWith(name)), `${name} has a sample`);
    for (const phase of phases) assert.ok(samples.some((l) => l.startsWith(`pve_runners_phase_seconds_count{phase="${phase}"}`)), `phase ${phase} observed`);
  } finally {
    await e.stop();
  }
});
