// The sweeper's vmid rule: a runner-* container of ours whose vmid is not its live runner's recorded
// vmid is a duplicate (e.g. an earlier clone cut short by a restart), whatever its name says. It is
// destroyed through the Proxmox API at once; the live runner's own container and stack are not touched.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Store } from "../../listener/store/store.js";
import type { ContainerStatus, ProxmoxApi } from "../../listener/adapters/proxmox/proxmox.js";
import type { GitHubAdapter } from "../../listener/adapters/github/github.js";
import type { TerraformLike } from "../../listener/lifecycle/pipeline.js";
import { sweep } from "../../sweeper/sweep.js";
import { sweeperDeps } from "../fixtures/sweeper-deps.js";

test("a container named like a live runner at another vmid is destroyed through the API at once; the runner's own is kept", async () => {
  const stateDir = await mkdtemp(join(tmpdir(), "sweep-vmid-"));
  try {
    const store = new Store(":memory:");
    store.insertRunner({ name: "runner-aa", labelSet: "s", scope: "repo:acme/app", madeForJob: 1 });
    store.setRunnerState("runner-aa", "busy", { vmid: 100_005, stackDir: join(stateDir, "runners", "runner-aa") });
    // Its stack holds state: a destroy through the stack would take the live runner's container.
    await mkdir(join(stateDir, "runners", "runner-aa", "stacks", "runner"), { recursive: true });
    await writeFile(join(stateDir, "runners", "runner-aa", "stacks", "runner", "terraform.tfstate"), "{}");

    const ours = `pve-runners;pve-runners-ctl-${store.controllerId()};pve-runners-runner-aa`;
    const containers: ContainerStatus[] = [
      { vmid: 100_005, name: "runner-aa", status: "running", tags: ours },
      { vmid: 100_004, name: "runner-aa", status: "running", tags: ours },
      // Mid-clone (locked): never forced, whatever its vmid.
      { vmid: 100_003, name: "runner-aa", status: "stopped", lock: "create", tags: "pve-runners" },
    ];
    const calls: string[] = [];
    const pve = {
      listContainers: async () => containers,
      containerConfig: async () => ({}),
      stop: async (node: string, vmid: number) => void calls.push(`stop ${node}/${vmid}`),
      destroy: async (node: string, vmid: number) => void calls.push(`destroy ${node}/${vmid}`),
    } as unknown as ProxmoxApi;
    const terraform: TerraformLike = {
      prepare: async () => {},
      apply: async () => ({}),
      destroy: async (dir) => void calls.push(`terraform destroy ${dir}`),
      output: async () => ({}),
    };
    const github = { listRunners: async () => [], deleteRunner: async () => "deleted" } as unknown as GitHubAdapter;
    const report = await sweep(sweeperDeps({ store, github, pve, terraform, stateDir, scopes: ["repo:acme/app"], graceMs: 120_000 }));
    assert.deepEqual(
      report.actions.map((a) => (a.kind === "destroy-container" ? [a.kind, a.vmid, a.via] : [a.kind])),
      [["destroy-container", 100_004, "api"]],
    );
    assert.match(report.actions[0].reason, /not the vmid of live runner runner-aa \(100005\)/);
    assert.deepEqual(calls, ["stop pve/100004", "destroy pve/100004"], "the duplicate goes through the API; the live runner's stack is not used");
    assert.equal(store.getRunner("runner-aa")!.state, "busy", "the live runner is left as it was");
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
});
