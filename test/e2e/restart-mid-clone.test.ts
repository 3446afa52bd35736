// A listener SIGKILLed mid-clone leaves no duplicate container. The clone gate dies with it, so the
// terraform in flight fails (its next call finds no gate) while PVE finishes the clone. The runner's
// vmid was recorded before that clone, so the apply re-run after the restart targets the same vmid
// and takes the runner's own container over (the gate lets a clone adopt only a container with its
// own hostname); before, bpg picked a fresh vmid and cloned a second container with the same name,
// which the sweeper (matching names) left for the whole life of the runner. The sweeper is off here:
// nothing may be left to sweep.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { pino } from "pino";
import { startWorld } from "../../sim/world.js";
import { ListenerProcess, freePort } from "../../sim/fault-run.js";
import { Store } from "../../listener/store/store.js";
import { waitFor } from "./harness.js";

test("a listener killed mid-clone: the restarted one takes the runner's own clone over, no second container", { timeout: 180_000 }, async () => {
  const port = await freePort();
  const world = await startWorld({
    timeScale: 0.05,
    logger: pino({ level: "silent" }),
    // 2 s clones at this scale: long enough to be killed in.
    latencyMs: { cloneLinked: 40_000 },
    configPatch: (c) => {
      c.listener = { host: "127.0.0.1", port };
      c.log = { level: "info" };
    },
  });
  const listener = new ListenerProcess(world, join(world.dir, "listener.log"));
  try {
    world.github.setWebhook(`http://127.0.0.1:${port}${world.config.github.webhookPath}`, world.secrets.webhookSecret);
    await listener.start();
    const job = await world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 20_000 });
    const clone = await waitFor("a clone task running", () => world.pve.tasks().find((t) => t.type === "vzclone" && t.status === "running"), 60_000, 10);
    await listener.kill();
    const cloned = world.pve.containers().filter((c) => !c.template);
    assert.equal(cloned.length, 1, "one container, mid-clone, when the listener died");
    const [first] = cloned;
    await listener.start();

    await waitFor("the job completed", () => world.github.jobs().find((j) => j.id === job.id && j.status === "completed"), 120_000);
    const done = world.github.jobs().find((j) => j.id === job.id)!;
    assert.equal(done.conclusion, "success");
    // The runner is destroyed after its job; a duplicate would stay (the sweeper is off).
    const settledLeft = async () => world.pve.containers().filter((c) => !c.template).map((c) => `${c.name}@${c.vmid}`);
    await waitFor("no container left", async () => (await settledLeft()).length === 0, 60_000).catch(async () => assert.fail(`containers left: ${(await settledLeft()).join(", ")}`));
    await listener.stop();

    const store = new Store(join(world.config.stateDir, "pve-runners.sqlite"));
    try {
      const runners = store.runners();
      assert.equal(runners.length, 1, `one runner: ${runners.map((r) => r.name).join(", ")}`);
      assert.equal(runners[0].name, done.runnerName);
      assert.equal(runners[0].vmid, first.vmid, "the runner kept the vmid of the clone cut short");
    } finally {
      store.close();
    }
    const clones = world.pve.tasks().filter((t) => t.type === "vzclone");
    assert.deepEqual(clones.map((t) => t.upid), [clone.upid], "one clone task in all: the clone cut short was taken over, not repeated");
  } finally {
    await listener.stop();
    await world.stop();
  }
});
