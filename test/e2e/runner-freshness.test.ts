// Runner freshness end to end: the listener reads the template's runner-<version> tag from the PVE
// simulator and asks the fake GitHub for actions/runner's releases; a newer release shows on the
// status page, in `pve-runners status`, in /metrics and as one warning; GitHub failing the check
// costs a log line, never a job.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { pino } from "pino";
import { settled, startE2E, waitFor } from "./harness.js";
import { pinnedRunnerVersion } from "../../stacks/runner-pin.js";
import { statusText } from "../../cli/admin.js";
import type { StatusSnapshot } from "../../listener/http/status.js";

const DAY = 86_400_000;

// GitHub's timestamps are whole seconds and do not scale: the same at time scale 1 (without the job).
async function scenario(timeScale: number, serveAJob: boolean): Promise<void> {
  const lines: Array<Record<string, any>> = [];
  const logger = pino(
    { level: "info" },
    new Writable({
      write(chunk, _e, cb) {
        for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
        cb();
      },
    }),
  );
  const pinned = pinnedRunnerVersion();
  const e = await startE2E({ timeScale, logger, pve: { templates: [{ node: "pve", vmid: 9000 }] } });
  try {
    const auth = { authorization: `Bearer ${e.world.secrets.adminToken!}` };
    const status = async () => (await (await fetch(`${e.service.adminUrl}/api/status`, { headers: auth })).json()) as StatusSnapshot;
    const ours = () => lines.filter((l) => l.part === "runner-freshness");

    // At start: the template's tag read, GitHub asked, the runner current.
    const first = await waitFor("the first release check", async () => ((await status()).runnerFreshness?.checkedAt ? status() : null));
    assert.deepEqual(first.runnerFreshness?.latest?.version, pinned);
    assert.deepEqual(
      first.runnerFreshness?.templates.map((t) => [t.template, t.version, t.level, t.leftDays]),
      [["pve/9000", pinned, "current", 30]],
    );

    // GitHub publishes a newer runner, 20 days ago: 9 whole days (and some hours) are left.
    const published = Math.floor((Date.now() - 20 * DAY) / 1000) * 1000;
    e.world.github.setRunnerReleases([
      { version: pinned, publishedAt: published - 40 * DAY },
      { version: "2.999.0", publishedAt: published },
      { version: "2.999.1", publishedAt: Date.now() - DAY, prerelease: true },
    ]);
    await e.service.checkRunnerFreshness();
    const s = await status();
    const t = s.runnerFreshness!.templates[0];
    assert.deepEqual([t.template, t.version, t.level, t.supersededBy?.version, t.behindDays, t.leftDays], ["pve/9000", pinned, "warning", "2.999.0", 20, 9]);
    assert.equal(t.cutoffAt, published + 30 * DAY);
    assert.equal(s.runnerFreshness!.latest?.version, "2.999.0", "the prerelease is not the latest");

    const page = await (await fetch(`${e.service.adminUrl}/`, { headers: auth })).text();
    assert.match(page, /<section id="templates">.*latest actions\/runner 2\.999\.0/s);
    assert.match(page, new RegExp(`<td class="mono">pve/9000</td><td class="mono">${pinned.replace(/\./g, "\\.")}</td>.*2\\.999\\.0.*20 d ago.*9 d left`));
    assert.match(page, /Rebuild the template\./);

    const cli = statusText(s);
    assert.match(cli, /runner releases: latest 2\.999\.0/);
    assert.match(cli, new RegExp(`pve/9000\\s+${pinned.replace(/\./g, "\\.")}\\s+2\\.999\\.0 20d ago\\s+\\d{4}-\\d\\d-\\d\\d\\s+9 !`));

    const metrics = await (await fetch(`${e.service.adminUrl}/metrics`, { headers: auth })).text();
    const sample = (name: string) => Number(new RegExp(`^${name}\\{template="pve/9000"\\} (\\S+)$`, "m").exec(metrics)?.[1]);
    assert.ok(Math.abs(sample("pve_runners_template_runner_behind_seconds") - 20 * 86_400) < 120, metrics);
    assert.ok(Math.abs(sample("pve_runners_template_runner_cutoff_seconds") - 10 * 86_400) < 120);
    assert.match(metrics, new RegExp(`^pve_runners_template_runner_info\\{template="pve/9000",version="${pinned.replace(/\./g, "\\.")}",latest="2\\.999\\.0"\\} 1$`, "m"));

    const warnings = () => ours().filter((l) => l.level === 40 && /days left before GitHub stops queueing jobs/.test(l.msg));
    assert.equal(warnings().length, 1);
    assert.deepEqual([warnings()[0].template, warnings()[0].daysLeft, warnings()[0].supersededBy], ["pve/9000", 9, "2.999.0"]);
    await e.service.checkRunnerFreshness();
    assert.equal(warnings().length, 1, "not again the same day");

    // GitHub fails the check: one clear line, the last answer kept, jobs served as ever.
    e.world.github.setFaults({ paths: "^/repos/actions/runner/releases", rate: 1, statuses: [503] });
    await e.service.checkRunnerFreshness();
    await e.service.checkRunnerFreshness();
    const failed = ours().filter((l) => /could not ask GitHub for the latest actions\/runner release/.test(l.msg));
    assert.equal(failed.length, 1, "logged once");
    assert.equal(failed[0].level, 40);
    assert.match(failed[0].err, /503/);
    const after = await status();
    assert.equal(after.runnerFreshness?.latest?.version, "2.999.0");
    assert.match(after.runnerFreshness?.lastError ?? "", /503/);
    assert.equal(after.runnerFreshness?.templates[0].level, "warning");
    assert.match(statusText(after), /last check failed: .*503/);
    if (!serveAJob) return;
    const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 200 });
    await settled(e, [job.id]);
    assert.equal(e.world.github.jobs().find((j) => j.id === job.id)?.conclusion, "success");
  } finally {
    await e.stop();
  }
}

test("a newer runner release: template age and days left on the status page, in status, in /metrics, one warning; GitHub failing: one line, no crash", { timeout: 120_000 }, () => scenario(0.02, true));
test("the same at time scale 1", { timeout: 120_000 }, () => scenario(1, false));
