// sweeper.grace covers what we have no record of too. PVE and GitHub tell no creation time, so a
// container or registration of ours with no record gets its age from the first sweep that saw it
// (kept in the store, so a restart does not reset it): a container mid-creation by a listener that
// just restarted survives; one still there after the grace is an orphan and goes.
import { afterEach, beforeEach, describe, mock, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Store } from "../../listener/store/store.js";
import type { ContainerStatus, ProxmoxApi } from "../../listener/adapters/proxmox/proxmox.js";
import type { GitHubAdapter, RunnerInfo } from "../../listener/adapters/github/github.js";
import { sweep, type SweepReport } from "../../sweeper/sweep.js";
import { sweeperDeps } from "../fixtures/sweeper-deps.js";

const GRACE = 120_000;
const T0 = Date.UTC(2026, 10, 30, 12, 0, 0);

interface World {
  containers: Array<ContainerStatus & { node?: string }>;
  regs: RunnerInfo[];
  down: Set<string>;
  calls: string[];
}

function deps(store: Store, stateDir: string, w: World) {
  const pve = {
    listContainers: async (node: string) => {
      if (w.down.has(node)) throw new Error("595 No route to host");
      return w.containers.filter((c) => (c.node ?? "pve") === node);
    },
    containerConfig: async () => ({}),
    stop: async (node: string, vmid: number) => void w.calls.push(`stop ${node}/${vmid}`),
    destroy: async (node: string, vmid: number) => {
      w.calls.push(`destroy ${node}/${vmid}`);
      w.containers = w.containers.filter((c) => c.vmid !== vmid);
    },
  } as unknown as ProxmoxApi;
  const github = {
    listRunners: async () => w.regs,
    deleteRunner: async (_scope: unknown, id: number) => {
      w.calls.push(`delete registration ${id}`);
      w.regs = w.regs.filter((g) => g.id !== id);
      return "deleted";
    },
  } as unknown as GitHubAdapter;
  return sweeperDeps({ store, github, pve, stateDir, scopes: ["org:acme"], graceMs: GRACE, nodes: ["pve", "pve2"] });
}

const destroyed = (r: SweepReport) => r.actions.filter((a) => a.kind === "destroy-container").map((a) => ("vmid" in a ? a.vmid : 0));
const deleted = (r: SweepReport) => r.actions.filter((a) => a.kind === "delete-registration").map((a) => ("id" in a ? a.id : 0));

describe("sweeper.grace for containers and registrations of ours with no record", () => {
  let stateDir: string;
  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), "sweep-grace-"));
    mock.timers.enable({ apis: ["Date"], now: T0 });
  });
  afterEach(async () => {
    mock.timers.reset();
    await rm(stateDir, { recursive: true, force: true });
  });

  test("a container with no record is left alone until the grace has passed since the first sweep saw it, across a restart", async () => {
    const file = join(stateDir, "state.sqlite");
    let store = new Store(file);
    const tags = `pve-runners;pve-runners-ctl-${store.controllerId()};pve-runners-runner-new00001`;
    const w: World = { containers: [{ vmid: 100_100, name: "runner-new00001", status: "running", tags }], regs: [], down: new Set(), calls: [] };

    // 3 s old (what the first sweep after a listener restart sees): left alone.
    assert.deepEqual(destroyed(await sweep(deps(store, stateDir, w))), []);
    mock.timers.tick(GRACE - 1_000);
    // A restart in between: the sighting is in the store, not in memory.
    store.close();
    store = new Store(file);
    assert.deepEqual(destroyed(await sweep(deps(store, stateDir, w))), [], "still younger than the grace since first seen");
    mock.timers.tick(2_000);
    assert.deepEqual(destroyed(await sweep(deps(store, stateDir, w))), [100_100], "older than the grace: an orphan");
    assert.deepEqual(w.calls, ["stop pve/100100", "destroy pve/100100"]);
    store.close();
  });

  test("a dry run reports the same: a young unrecorded container is not proposed for destruction", async () => {
    const store = new Store(":memory:");
    const tags = `pve-runners;pve-runners-ctl-${store.controllerId()}`;
    const w: World = { containers: [{ vmid: 100_101, name: "runner-new00002", status: "stopped", tags }], regs: [], down: new Set(), calls: [] };
    const r = await sweep(deps(store, stateDir, w), { dryRun: true });
    assert.deepEqual(r.actions, []);
    assert.deepEqual(w.calls, []);
  });

  test("a container that went away is forgotten: one that appears later under that vmid gets its own grace", async () => {
    const store = new Store(":memory:");
    const tags = `pve-runners;pve-runners-ctl-${store.controllerId()}`;
    const w: World = { containers: [{ vmid: 100_102, name: "runner-a0000001", status: "running", tags }], regs: [], down: new Set(), calls: [] };
    await sweep(deps(store, stateDir, w));
    mock.timers.tick(GRACE / 2);
    w.containers = [];
    await sweep(deps(store, stateDir, w));
    mock.timers.tick(GRACE / 2 + 1_000);
    w.containers = [{ vmid: 100_102, name: "runner-a0000001", status: "running", tags }];
    assert.deepEqual(destroyed(await sweep(deps(store, stateDir, w))), [], "seen again just now: young");
  });

  test("a node that does not answer keeps its containers' sightings", async () => {
    const store = new Store(":memory:");
    const tags = `pve-runners;pve-runners-ctl-${store.controllerId()}`;
    const w: World = { containers: [{ vmid: 100_103, name: "runner-b0000001", status: "running", tags, node: "pve2" }], regs: [], down: new Set(), calls: [] };
    await sweep(deps(store, stateDir, w));
    mock.timers.tick(GRACE / 2);
    w.down.add("pve2");
    const during = await sweep(deps(store, stateDir, w));
    assert.equal(during.errors.length, 1);
    mock.timers.tick(GRACE / 2 + 1_000);
    w.down.clear();
    assert.deepEqual(destroyed(await sweep(deps(store, stateDir, w))), [100_103], "first seen more than the grace ago");
  });

  test("a registration carrying our label with no record gets the same grace", async () => {
    const store = new Store(":memory:");
    const label = `pve-runners-ctl-${store.controllerId()}`;
    const w: World = { containers: [], regs: [{ id: 77, name: "runner-c0000001", status: "offline", busy: false, labels: ["self-hosted", label] }], down: new Set(), calls: [] };
    assert.deepEqual(deleted(await sweep(deps(store, stateDir, w))), []);
    mock.timers.tick(GRACE + 1_000);
    assert.deepEqual(deleted(await sweep(deps(store, stateDir, w))), [77]);
    assert.deepEqual(w.calls, ["delete registration 77"]);
  });

  test("a record that left its live states long ago is no reason to wait: its container goes at once", async () => {
    const store = new Store(":memory:");
    store.insertRunner({ name: "runner-d0000001", labelSet: "s", scope: "org:acme", madeForJob: 1 });
    store.setRunnerState("runner-d0000001", "failed", { vmid: 100_104 });
    mock.timers.tick(GRACE + 1_000);
    const tags = `pve-runners;pve-runners-ctl-${store.controllerId()}`;
    const w: World = { containers: [{ vmid: 100_104, name: "runner-d0000001", status: "stopped", tags }], regs: [], down: new Set(), calls: [] };
    assert.deepEqual(destroyed(await sweep(deps(store, stateDir, w))), [100_104]);
  });
});
