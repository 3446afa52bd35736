// No two runners ever share a container, at time scale 1 (bpg's 5 s id window does not scale).
//
// bpg, left to pick a vmid, asks GET /cluster/nextid (which reserves nothing) and remembers the last
// id it handed out for 5 s only (v0.111.1 proxmox/cluster/id_generator.go). Here one template, whose
// first clone takes 16 s: the second runner's clone waits that long in the clone gate, its vmid not
// yet a container, while a third runner's terraform asks for an id more than 5 s after the others
// took theirs (later clones take 2 s, to keep the test short). bpg would hand it the second runner's
// id; its clone then met "already exists", was retried and adopted the other runner's container
// (renamed it, rewrote net0), and deliver-jit refused ("CT N is not runner-…"). The listener now
// picks every vmid itself.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { startE2E, settled, containersLeft, registrationsLeft } from "./harness.js";
import { captureLog } from "../fixtures/terraform/helpers.js";

/** Long enough to cover, after the 5 s window, a terraform's start on a busy machine. */
const FIRST_CLONE_MS = 20_000;
const LATER_CLONE_MS = 2_000;
const BPG_ID_WINDOW_MS = 5_000;

test("time scale 1, one template, clones waiting > 5 s in the gate: every runner its own vmid, one clone each, every job served", { timeout: 240_000 }, async () => {
  const log = captureLog("info");
  const e = await startE2E({ timeScale: 1, logger: log.logger, pve: { latencyMs: { cloneLinked: FIRST_CLONE_MS } } });
  const at = (msg: string, runner?: string) => log.lines.find((l) => l.msg === msg && (!runner || l.runner === runner))?.time as number | undefined;
  try {
    const labels = ["self-hosted", "linux"];
    const jobs = [await e.world.github.createJob({ repo: "acme/app", labels, durationMs: 500 }), await e.world.github.createJob({ repo: "acme/app", labels, durationMs: 500 })];
    // The second clone waits in the gate: both terraforms have taken their vmids.
    const second = await log.waitFor((l) => l.msg === "waiting for the clone lane", 120_000).catch(() => assert.fail("the second clone never waited in the gate"));
    e.world.pve.setLatency({ cloneLinked: LATER_CLONE_MS });
    // The third runner's terraform must ask for its id past bpg's 5 s window, while the second clone
    // still waits. From a job to its clone took the second runner `lead` ms on this machine; the
    // third job comes so that its id is asked for ~5.5 s after the second's, sooner on a busy machine.
    const lead = (second.time as number) - at("runner requested", second.runner as string)!;
    await new Promise((r) => setTimeout(r, Math.max(500, BPG_ID_WINDOW_MS + 500 - lead / 2)));
    jobs.push(await e.world.github.createJob({ repo: "acme/app", labels, durationMs: 500 }));
    const third = await log
      .waitFor((l) => l.msg === "waiting for the clone lane" && l.runner !== second.runner, 120_000)
      .catch(() => assert.fail(`the third clone never waited in the gate: ${log.lines.filter((l) => /clone lane|runner requested/.test(String(l.msg))).map((l) => `${l.msg} ${l.runner}`).join("; ")}`));
    // The premise, checked: the third clone came past the window and before the second was forwarded.
    const secondForwarded = at("clone gate: clone lane entered", second.runner as string);
    assert.ok((third.time as number) - (second.time as number) > BPG_ID_WINDOW_MS, `the third clone came ${(third.time as number) - (second.time as number)} ms after the second: within bpg's window`);
    assert.ok(secondForwarded === undefined || secondForwarded > (third.time as number), "the third clone came while the second still waited");
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
    await e.stop();
  }
});
