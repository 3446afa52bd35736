// A runner's destroy on the world, with the real terraform and the bpg stand-in (issue 17): without
// a refresh once the API has shown the container; no terraform at all when it was deleted out of
// band; with a refresh when the API cannot tell; and a container deleted between the check and the
// destroy (bpg's Delete then fails at its status read) does not pin the runner.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { startE2E, waitFor, settled, containersLeft, type E2E } from "./harness.js";
import { ProxmoxApi } from "../../listener/adapters/proxmox/proxmox.js";
import { SIM_NODE, SIM_TOKENS } from "../../sim/pve/index.js";

const LABELS = ["self-hosted", "linux"];

/**
 * terraform through a wrapper that appends each run's arguments to `log`. While the file `hold`
 * exists, a destroy first creates `held` and waits for `hold` to go: the test acts in between.
 */
async function wrapper(dir: string): Promise<{ binary: string; runs: () => Promise<string[]>; hold: string; held: string }> {
  const log = join(dir, "runs.log");
  const hold = join(dir, "hold");
  const held = join(dir, "held");
  const binary = join(dir, "terraform");
  await writeFile(
    binary,
    [
      "#!/bin/sh",
      `echo "$*" >> '${log}'`,
      `if [ "$1" = destroy ] && [ -e '${hold}' ]; then : > '${held}'; while [ -e '${hold}' ]; do sleep 0.02; done; fi`,
      'exec terraform "$@"',
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  const runs = async () => (await readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean);
  return { binary, runs, hold, held };
}

const rootApi = (e: E2E) =>
  new ProxmoxApi({ endpoint: e.world.pve.url + "/", token: `${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}`, logger: pino({ level: "silent" }), pollMs: 10 });

/** As an operator would: `pct stop` and `pct destroy` (the same API calls). */
async function deleteOutOfBand(e: E2E, vmid: number): Promise<void> {
  const api = rootApi(e);
  // The guest powers itself off after its job: it may stop between the status read and the stop.
  if ((await api.containerStatus(SIM_NODE, vmid)).status === "running") await api.stop(SIM_NODE, vmid).catch((err: Error) => assert.match(err.message, /not running/));
  await api.destroy(SIM_NODE, vmid);
}

async function withWorld(fn: (e: E2E, w: Awaited<ReturnType<typeof wrapper>>) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "pve-runners-destroy-e2e-"));
  const w = await wrapper(dir);
  const e = await startE2E({ configPatch: (c) => (c.terraform.binary = w.binary) });
  try {
    await fn(e, w);
  } finally {
    await e.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** A job run to completion at GitHub, its `completed` delivery held back: the runner is still busy for us. */
async function jobDoneNotYetTold(e: E2E) {
  e.world.github.holdDeliveries({ event: "workflow_job", action: "completed" });
  await e.world.github.createJob({ repo: "acme/app", labels: LABELS, durationMs: 500 });
  await waitFor("completed delivery held", () => e.world.github.heldDeliveries().length === 1, 60_000, 20);
  e.world.github.unholdDeliveries();
  // The in_progress delivery may still be on its way.
  const r = await waitFor("runner busy", () => e.service.store.runners(["busy"])[0], 60_000, 20);
  return r;
}

const destroys = (runs: string[]) => runs.filter((r) => r.startsWith("destroy "));

describe("destroying a runner's stack", { concurrency: 1, timeout: 240_000 }, () => {
  test("its container there: one terraform destroy with -refresh=false", () =>
    withWorld(async (e, w) => {
      const job = await e.world.github.createJob({ repo: "acme/app", labels: LABELS, durationMs: 500 });
      await settled(e, [job.id]);
      const d = destroys(await w.runs());
      assert.equal(d.length, 1, d.join("\n"));
      assert.match(d[0], /(^| )-refresh=false( |$)/);
      assert.deepEqual(await containersLeft(e), []);
    }));

  test("its container deleted out of band: no terraform destroy, the stack dir removed, the runner gone", () =>
    withWorld(async (e, w) => {
      const r = await jobDoneNotYetTold(e);
      await deleteOutOfBand(e, r.vmid!);
      await e.world.github.releaseDeliveries();
      await waitFor("runner gone", () => ["gone", "failed"].includes(e.service.store.getRunner(r.name)!.state), 60_000, 20);
      assert.equal(e.service.store.getRunner(r.name)!.state, "gone");
      assert.deepEqual(destroys(await w.runs()), [], "terraform never ran destroy");
      assert.equal(existsSync(r.stackDir!), false, "stack dir (and its state) removed");
    }));

  test("the API cannot tell: terraform destroy with its refresh", () =>
    withWorld(async (e, w) => {
      const r = await jobDoneNotYetTold(e);
      // pveproxy times out the listener's guest listing (596); terraform's own calls are untouched.
      e.world.pve.setFaults({ timeoutRate: 1, paths: "^/cluster/resources$" });
      await e.world.github.releaseDeliveries();
      await waitFor("runner gone", () => e.service.store.getRunner(r.name)!.state === "gone", 60_000, 20);
      const d = destroys(await w.runs());
      assert.equal(d.length, 1, d.join("\n"));
      assert.doesNotMatch(d[0], /-refresh=false/);
      assert.deepEqual(await containersLeft(e), []);
    }));

  test("its container deleted between the check and the destroy: the destroy fails, the runner still goes", () =>
    withWorld(async (e, w) => {
      const r = await jobDoneNotYetTold(e);
      await writeFile(w.hold, "");
      await e.world.github.releaseDeliveries();
      await waitFor("destroy about to run", () => existsSync(w.held), 60_000, 20);
      await deleteOutOfBand(e, r.vmid!);
      await rm(w.hold);
      await waitFor("runner gone", () => e.service.store.getRunner(r.name)!.state === "gone", 60_000, 20);
      const d = destroys(await w.runs());
      assert.equal(d.length, 1, `one destroy (it failed), no retry loop: ${d.join("\n")}`);
      assert.match(d[0], /-refresh=false/);
      assert.equal(existsSync(r.stackDir!), false);
    }));
});
