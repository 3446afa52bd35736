// No two runners ever share a container, at time scale 1 (bpg's 5 s id window does not scale).
//
// bpg, left to pick a vmid, asks GET /cluster/nextid (which reserves nothing) and remembers the last
// id it handed out for 5 s only (v0.111.1 proxmox/cluster/id_generator.go). Here one template whose
// first clone lasts until the test lets it go (the simulator holds it): the second runner's clone
// waits in the clone gate, its vmid not yet a container, while a third runner's terraform asks for an
// id more than 5 s after the others took theirs. bpg would hand it the second runner's id; its clone
// then met "already exists", was retried and adopted the other runner's container (renamed it,
// rewrote net0), and deliver-jit refused ("CT N is not runner-…"). The listener now picks every vmid
// itself. The hold makes the order exact on any machine (a long clone latency was a guess that a busy
// CI machine lost).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { startE2E, settled, containersLeft, registrationsLeft } from "./harness.js";
import { captureLog } from "../fixtures/terraform/helpers.js";

const CLONE_MS = 2_000;
const BPG_ID_WINDOW_MS = 5_000;

test("time scale 1, one template, clones waiting > 5 s in the gate: every runner its own vmid, one clone each, every job served", { timeout: 300_000 }, async () => {
  const log = captureLog("info");
  const e = await startE2E({ timeScale: 1, logger: log.logger, pve: { latencyMs: { cloneLinked: CLONE_MS } } });
  const at = (msg: string, runner?: string) => log.lines.find((l) => l.msg === msg && (!runner || l.runner === runner))?.time as number | undefined;
  const lane = () => log.lines.filter((l) => /clone lane|runner requested/.test(String(l.msg))).map((l) => `${l.msg} ${l.runner}`).join("; ");
  e.world.pve.holdClones();
  try {
    const labels = ["self-hosted", "linux"];
    const jobs = [await e.world.github.createJob({ repo: "acme/app", labels, durationMs: 500 }), await e.world.github.createJob({ repo: "acme/app", labels, durationMs: 500 })];
    // The first clone is held: the second waits in the gate, both terraforms have taken their vmids.
    const second = await log.waitFor((l) => l.msg === "waiting for the clone lane", 150_000).catch(() => assert.fail(`the second clone never waited in the gate: ${lane()}`));
    // The third runner's terraform asks for its id past bpg's 5 s window, while the second still waits.
    await new Promise((r) => setTimeout(r, BPG_ID_WINDOW_MS + 500));
    jobs.push(await e.world.github.createJob({ repo: "acme/app", labels, durationMs: 500 }));
    const third = await log
      .waitFor((l) => l.msg === "waiting for the clone lane" && l.runner !== second.runner, 150_000)
      .catch(() => assert.fail(`the third clone never waited in the gate: ${lane()}`));
    // The premise, checked: the third clone came past the window and before the second was forwarded.
    assert.ok((third.time as number) - (second.time as number) > BPG_ID_WINDOW_MS, `the third clone came ${(third.time as number) - (second.time as number)} ms after the second: within bpg's window`);
    assert.equal(at("clone gate: clone lane entered", second.runner as string), undefined, "the second clone still waits");
    assert.ok((at("runner requested", third.runner as string) ?? 0) > (second.time as number) + BPG_ID_WINDOW_MS, "the third runner was requested past the window");
    e.world.pve.releaseClones();
    await settled(e, jobs.map((j) => j.id), 200_000);

    const done = e.world.github.jobs().filter((j) => jobs.some((x) => x.id === j.id));
    assert.deepEqual(done.map((j) => j.conclusion), ["success", "success", "success"]);
    const runners = e.service.store.runners();
    assert.equal(new Set(done.map((j) => j.runnerName)).size, 3, "three runners ran the three jobs");
    for (const j of done) assert.ok(runners.some((r) => r.name === j.runnerName), `job ${j.id} ran on a runner of ours`);
    const vmids = runners.map((r) => r.vmid);
    assert.ok(vmids.every((v) => v !== null), `every runner had a vmid: ${vmids.join(", ")}`);
    assert.equal(new Set(vmids).size, runners.length, `every runner a distinct vmid: ${runners.map((r) => `${r.name}=${r.vmid}`).join(", ")}`);
    const clones = e.world.pve.tasks().filter((t) => t.type === "vzclone");
    assert.equal(clones.length, runners.length, "as many clone tasks as runners: none adopted another's container");
    assert.ok(clones.every((t) => t.exitstatus === "OK"));
    const refusals = log.lines.filter((l) => l.msg === "JIT delivery failed" || /is not runner-/.test(String(l.err ?? "")));
    assert.deepEqual(refusals.map((l) => l.err), [], "no JIT delivery was refused");
    assert.ok(runners.every((r) => !r.lastError), `no runner recorded an error: ${runners.map((r) => r.lastError).join(" | ")}`);
    assert.deepEqual(await containersLeft(e), [], "no container left");
    assert.deepEqual(registrationsLeft(e), [], "no registration left");
    assert.deepEqual(await readdir(join(e.world.config.stateDir, "runners")).catch(() => []), [], "no stack dir left");
  } finally {
    e.world.pve.releaseClones();
    await e.stop();
  }
});
