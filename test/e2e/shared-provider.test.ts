// terraform.sharedProvider: every terraform run attaches to one provider process (TF_REATTACH_PROVIDERS)
// instead of starting bpg's provider 4-5 times. Concurrent applies and destroys share it; a provider
// that dies mid-burst is started again and no job is left without a runner, no container behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startE2E, settled, containersLeft, registrationsLeft, waitFor, type E2E } from "./harness.js";

interface CpuLine {
  pid: number;
  tag: string;
}

async function providerExits(file: string): Promise<CpuLine[]> {
  if (!existsSync(file)) return [];
  return (await readFile(file, "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l) as CpuLine);
}

async function burst(e: E2E, n: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push((await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 500 })).id);
  return ids;
}

async function withWorld(shared: boolean, body: (e: E2E, cpuLog: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "pve-runners-shared-provider-"));
  const cpuLog = join(dir, "provider-cpu.jsonl");
  const e = await startE2E({
    configPatch: (c) => {
      c.terraform = { ...c.terraform, sharedProvider: shared };
    },
    // Every provider process writes one line at exit: how many started, and which.
    overrides: { terraformEnv: { PVE_SIM_PROVIDER_POLL_MS: "50", PVE_SIM_PROVIDER_CPU_LOG: cpuLog } },
  });
  try {
    await body(e, cpuLog);
  } finally {
    await e.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

test("a burst of 6 jobs runs on one shared provider process: no provider start per terraform run", async () => {
  await withWorld(true, async (e, cpuLog) => {
    // Started with the listener, right after its terraform init: the first job does not wait for it.
    await e.service.terraformInitialised;
    const pid = await e.service.sharedProviderPid();
    assert.ok(pid, "the shared provider runs before any job came");
    const ids = await burst(e, 6);
    // Its socket lives in a dir only the listener's user can enter.
    const dir = join(e.world.config.stateDir, "provider");
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    await settled(e, ids, 180_000);
    for (const id of ids) assert.equal(e.world.github.jobs().find((j) => j.id === id)?.conclusion, "success");
    // Every clone the gate saw let its lane's next apply start (else each would wait out 10 s).
    assert.ok(e.service.terraformSlots().reachedLane >= ids.length, `the gate reported ${e.service.terraformSlots().reachedLane} arrivals for ${ids.length} clones`);
    assert.deepEqual(e.service.terraformSlots().approaching, {});
    assert.deepEqual(await containersLeft(e), []);
    assert.deepEqual(registrationsLeft(e), []);
    // 6 applies and 6 destroys went by and no provider process has exited: terraform started none.
    assert.deepEqual(await providerExits(cpuLog), []);
    assert.equal(await e.service.sharedProviderPid(), pid);
    await e.service.stop();
    // At the listener's stop the one provider stops too.
    const exits = await providerExits(cpuLog);
    assert.deepEqual(exits.map((x) => x.pid), [pid]);
  });
});

test("without it, every terraform run starts its own providers (the baseline the option removes)", async () => {
  await withWorld(false, async (e, cpuLog) => {
    const ids = await burst(e, 1);
    await settled(e, ids, 120_000);
    assert.equal(await e.service.sharedProviderPid(), undefined);
    // apply and destroy each start the provider several times (bench/run-cost.ts counts them).
    assert.ok((await providerExits(cpuLog)).length >= 2);
  });
});

test("a shared provider killed mid-burst is started again; every job is still served and nothing is left", async () => {
  await withWorld(true, async (e) => {
    const ids = await burst(e, 4);
    const first = await waitFor("the shared provider", () => e.service.sharedProviderPid());
    // Kill it while applies are attached to it (some runner is being provisioned).
    await waitFor("an apply in flight", () => e.service.store.runners(["provisioning"]).length > 0, 60_000, 20);
    process.kill(first, "SIGKILL");
    await settled(e, ids, 240_000);
    for (const id of ids) assert.equal(e.world.github.jobs().find((j) => j.id === id)?.conclusion, "success");
    assert.deepEqual(await containersLeft(e), []);
    assert.deepEqual(registrationsLeft(e), []);
    const second = await e.service.sharedProviderPid();
    assert.ok(second !== undefined && second !== first, `a new provider runs (${first} → ${second})`);
  });
});
