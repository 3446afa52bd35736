// `pve-runners demo` prints for people: each job once when queued, each runner state change as it
// happens (with why a runner went without a job), warnings as lines, never JSON.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { demoLogger, runDemo, runnerLine } from "../../cli/demo.js";
import type { RunnerRow } from "../../listener/store/store.js";

test("demo: every job served, each queued line once, runner changes as they happen, no JSON", { timeout: 240_000 }, async () => {
  const lines: string[] = [];
  const out = (l: string) => lines.push(l);
  const r = await runDemo({ jobs: 3, timeScale: 0.05, timeoutMs: 200_000, logger: demoLogger(out), out });
  assert.equal(r.ok, true, lines.join("\n"));
  assert.deepEqual(lines.filter((l) => l.trimStart().startsWith("{")), [], "no JSON log line");
  const queued = lines.filter((l) => / job \d+ queued/.test(l));
  assert.equal(queued.length, 3, `each job's queued line once:\n${queued.join("\n")}`);
  // The label sets of the demo overlap on purpose: said as a note, not as JSON.
  assert.ok(lines.some((l) => /^\s+note: label set .* has every label of /.test(l)), "the overlap warning as a note");
  const runners = [...new Set(lines.flatMap((l) => /(runner-[0-9a-f]{8}) requested/.exec(l)?.[1] ?? []))];
  assert.ok(runners.length >= 3);
  for (const name of runners) {
    const states = lines.flatMap((l) => new RegExp(`^\\s*[\\d.]+s ${name} (\\w+)`).exec(l)?.[1] ?? []);
    assert.deepEqual([states[0], states.at(-1)], ["requested", "gone"], `${name}: ${states.join(" → ")}`);
    assert.ok(states.includes("provisioning") && states.includes("booting") && states.includes("destroying"), `${name}: every change shown: ${states.join(" → ")}`);
  }
  assert.match(lines.at(-1)!, /^demo: 3 jobs, 3 served, 0 containers left, 0 runners left$/);
});

test("demo --build-template: the template is built by its stack first, then the jobs run on clones of it", { timeout: 300_000 }, async () => {
  const lines: string[] = [];
  const out = (l: string) => lines.push(l);
  const r = await runDemo({ jobs: 1, buildTemplate: true, timeScale: 0.05, timeoutMs: 200_000, logger: demoLogger(out), out });
  assert.ok(r.ok, lines.join("\n"));
  const version = /^RUNNER_VERSION="\$\{RUNNER_VERSION:-([^}]*)\}"/m.exec(readFileSync(new URL("../../../template/provision.sh", import.meta.url), "utf8"))?.[1];
  const built = lines.findIndex((l) => l === `template: built pve/9000, runner ${version}`);
  assert.ok(built >= 0, lines.join("\n"));
  assert.ok(built < lines.findIndex((l) => / job \d+ queued/.test(l)), "built before any job is queued");
  assert.equal(lines.at(-1), "demo: 1 job, 1 served, 0 containers left, 0 runners left");
});

test("a runner retired without a job says why", () => {
  const row = (state: RunnerRow["state"], lastError: string | null): RunnerRow => ({
    name: "runner-0a0b0c0d", labelSet: "linux-small", scope: "repo:acme/app", state, madeForJob: 7, jobId: null, vmid: 100001,
    githubRunnerId: 5, stackDir: null, node: "pve", template: "pve/9000", attempts: 0, lastError, createdAt: 0, stateSince: 0,
  });
  assert.equal(runnerLine(row("destroying", "surplus")), "runner-0a0b0c0d destroying (CT 100001) — not needed: its job ran on another runner and no queued job wants it");
  assert.equal(runnerLine(row("gone", "idle timeout")), "runner-0a0b0c0d gone (CT 100001) — idle for too long");
  assert.equal(runnerLine(row("failed", "apply: Permission check failed")), "runner-0a0b0c0d failed (CT 100001) — error: apply: Permission check failed");
  assert.equal(runnerLine(row("booting", null)), "runner-0a0b0c0d booting (CT 100001)");
});
