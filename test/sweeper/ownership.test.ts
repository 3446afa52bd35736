// The sweeper touches only what this installation made (issue 14): a registration carrying our
// controller label or an id we minted and recorded, a container carrying our controller tag (or
// description) or at the vmid we recorded for it. Another team's `runner-*` registration, and a
// `runner-*` container tagged pve-runners by another installation, are left alone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Store } from "../../listener/store/store.js";
import type { ContainerStatus, ProxmoxApi } from "../../listener/adapters/proxmox/proxmox.js";
import type { GitHubAdapter, RunnerInfo } from "../../listener/adapters/github/github.js";
import { sweep } from "../../sweeper/sweep.js";
import { sweeperDeps } from "../fixtures/sweeper-deps.js";

const OTHER = "pve-runners-ctl-ffffffffffffffff"; // another pve-runners installation on the same cluster and org

test("the sweeper removes our orphans only: foreign runner-* registrations and containers are left alone", async () => {
  const stateDir = await mkdtemp(join(tmpdir(), "sweep-own-"));
  try {
    const store = new Store(":memory:");
    const ours = `pve-runners-ctl-${store.controllerId()}`;
    // A runner of ours from before the controller id existed: known by its recorded id and vmid.
    store.insertRunner({ name: "runner-old00001", labelSet: "s", scope: "org:acme", madeForJob: 1 });
    store.setRunnerState("runner-old00001", "gone", { vmid: 100_010, githubRunnerId: 501 });
    // A runner whose clone was cut short at 100_023 and that then moved to a fresh vmid.
    store.insertRunner({ name: "runner-cut00001", labelSet: "s", scope: "org:acme", madeForJob: 2 });
    store.setRunnerState("runner-cut00001", "failed", { vmid: 100_030 });

    const regs: RunnerInfo[] = [
      { id: 900, name: "runner-xyz", status: "offline", busy: false, labels: ["self-hosted", "linux"] },
      { id: 902, name: "runner-other001", status: "online", busy: false, labels: ["self-hosted", OTHER] },
      { id: 901, name: "runner-0rphan01", status: "offline", busy: false, labels: ["self-hosted", ours] },
      { id: 501, name: "runner-old00001", status: "offline", busy: false, labels: ["self-hosted"] },
    ];
    const containers: ContainerStatus[] = [
      { vmid: 100_020, name: "runner-abc00001", status: "running", tags: "pve-runners;pve-runners-runner-abc00001" },
      { vmid: 100_021, name: "runner-abc00002", status: "running", tags: `${OTHER};pve-runners;pve-runners-runner-abc00002` },
      { vmid: 100_024, name: "runner-desc0001", status: "stopped", tags: "pve-runners-template" },
      { vmid: 100_022, name: "runner-0rphan02", status: "running", tags: `pve-runners;${ours};pve-runners-runner-0rphan02` },
      { vmid: 100_010, name: "runner-old00001", status: "running", tags: "pve-runners;pve-runners-runner-old00001" },
      { vmid: 100_023, name: "runner-cut00001", status: "stopped", tags: "pve-runners-template" },
    ];
    const descriptions: Record<number, string> = {
      // Described like a runner (as anyone can write), with no marker and no record: not ours.
      100_024: "pve-runners ephemeral runner runner-desc0001 (label set s)",
      100_023: `pve-runners ephemeral runner runner-cut00001 (label set s, ${ours})`,
    };
    const calls: string[] = [];
    const pve = {
      listContainers: async () => containers,
      containerConfig: async (_node: string, vmid: number) => ({ description: descriptions[vmid] ?? "" }),
      stop: async (_node: string, vmid: number) => void calls.push(`stop ${vmid}`),
      destroy: async (_node: string, vmid: number) => void calls.push(`destroy ${vmid}`),
    } as unknown as ProxmoxApi;
    const github = {
      listRunners: async () => regs,
      deleteRunner: async (_scope: unknown, id: number) => (calls.push(`delete registration ${id}`), "deleted"),
    } as unknown as GitHubAdapter;
    const report = await sweep(sweeperDeps({ store, github, pve, stateDir, scopes: ["org:acme"], graceMs: 0 }));
    assert.deepEqual(report.errors, []);
    assert.deepEqual(calls.filter((c) => c.startsWith("destroy")).sort(), ["destroy 100010", "destroy 100022", "destroy 100023"], JSON.stringify(report.actions));
    assert.deepEqual(calls.filter((c) => c.startsWith("delete")).sort(), ["delete registration 501", "delete registration 901"]);
    assert.equal(report.foreign, 4, "two containers tagged pve-runners and two registrations seen, not ours");
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
});

test("the controller id is made once and kept by the store", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sweep-own-"));
  try {
    const a = new Store(join(dir, "s.sqlite"));
    const id = a.controllerId();
    assert.match(id, /^[0-9a-f]{16}$/);
    a.close();
    const b = new Store(join(dir, "s.sqlite"));
    assert.equal(b.controllerId(), id, "a restart keeps it");
    b.close();
    assert.notEqual(new Store(":memory:").controllerId(), id, "another installation has its own");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
