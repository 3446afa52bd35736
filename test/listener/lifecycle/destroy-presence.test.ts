// Destroy without a refresh once the API has shown the container is there; no terraform at all once
// it is gone; a refresh when the API cannot tell; and a container that vanishes between the check
// and the destroy (bpg's Delete then fails) does not pin the runner (issue 17).
import { describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Store } from "../../../listener/store/store.js";
import { Pipeline, type PipelineSettings } from "../../../listener/lifecycle/pipeline.js";
import { ProxmoxError } from "../../../listener/adapters/proxmox/proxmox.js";
import { containerPresence, type ContainerPresence } from "../../../listener/adapters/proxmox/container-check.js";
import { isRunnersContainer } from "../../../listener/lifecycle/ownership.js";
import type { GitHubAdapter } from "../../../listener/adapters/github/github.js";
import { testPipelineSettings } from "../../fixtures/pipeline-settings.js";

const NAME = "runner-0d35c0de";
const CTL = "pve-runners-ctl-0123456789abcdef";
const OURS = { hostname: NAME, tags: `pve-runners;${CTL};pve-runners-${NAME}`, description: `pve-runners ephemeral runner ${NAME} (label set linux, ${CTL})` };

describe("isRunnersContainer: the sweeper's marks, for one recorded runner", () => {
  test("tagged pve-runners with the runner's hostname, or (no tags yet) described as its clone", () => {
    assert.equal(isRunnersContainer(OURS, NAME), true);
    assert.equal(isRunnersContainer({ ...OURS, tags: undefined }, NAME), true, "a clone cut short before its config PUT");
    assert.equal(isRunnersContainer({ ...OURS, hostname: "runner-other001" }, NAME), false, "another runner's container at this vmid");
    assert.equal(isRunnersContainer({ hostname: NAME, tags: "someone-else" }, NAME), false, "named like ours, not marked");
    assert.equal(isRunnersContainer({ ...OURS, template: 1 }, NAME), false);
  });
});

describe("containerPresence", () => {
  const rec = { name: NAME, node: "pve", vmid: 100123 };
  const listed = { vmid: 100123, node: "pve", status: "running", type: "lxc" };
  const api = (guests: Array<Record<string, unknown>> | Error, conf: Record<string, unknown> | Error) => ({
    async clusterResources() {
      if (guests instanceof Error) throw guests;
      return guests;
    },
    async containerConfig() {
      if (conf instanceof Error) throw conf;
      return conf as Record<string, string | number>;
    },
  });
  test("present: listed at its node and vmid, and marked as this runner's", async () => {
    assert.equal((await containerPresence(api([listed], OURS), rec)).kind, "present");
  });
  test("gone: not listed (deleted; with a pool-granted token a direct read would say 403)", async () => {
    assert.equal((await containerPresence(api([{ ...listed, vmid: 100124 }], OURS), rec)).kind, "gone");
  });
  test("gone: deleted between the listing and the config read", async () => {
    const notFound = new ProxmoxError(500, "GET /nodes/pve/lxc/100123/config: 500 Configuration file 'nodes/pve/lxc/100123.conf' does not exist");
    assert.equal((await containerPresence(api([listed], notFound), rec)).kind, "gone");
  });
  test("gone: the vmid holds a guest that is not this runner's", async () => {
    assert.equal((await containerPresence(api([listed], { hostname: "db01", tags: "prod" }), rec)).kind, "gone");
  });
  test("unknown: the API fails, the node is offline or the guest is elsewhere, or nothing was recorded", async () => {
    assert.equal((await containerPresence(api(new ProxmoxError(596, "GET /cluster/resources: 596 Connection timed out"), OURS), rec)).kind, "unknown");
    assert.equal((await containerPresence(api([listed], new ProxmoxError(595, "595 No route to host")), rec)).kind, "unknown");
    assert.equal((await containerPresence(api([listed], new ProxmoxError(403, "403 Permission check failed")), rec)).kind, "unknown");
    assert.equal((await containerPresence(api([{ ...listed, status: "unknown" }], OURS), rec)).kind, "unknown");
    assert.equal((await containerPresence(api([{ ...listed, node: "pve2" }], OURS), rec)).kind, "unknown");
    assert.equal((await containerPresence(api([listed], OURS), { ...rec, vmid: null })).kind, "unknown");
  });
});

function settings(stateDir: string): PipelineSettings {
  return testPipelineSettings({ stateDir, vmidsLast: 100999, applyAttempts: 3, timeouts: { idleMs: 60_000 } });
}

describe("pipeline: how a runner's stack is destroyed", () => {
  /** A runner in `destroying` with a stack dir holding a state file, driven by a pipeline with fakes. */
  async function setUp(ctx: TestContext, presence: Array<ContainerPresence | Error>, destroyFails = 0) {
    const stateDir = await mkdtemp(join(tmpdir(), "pve-runners-destroy-"));
    const store = new Store(":memory:");
    const destroys: Array<{ refresh?: boolean }> = [];
    const checks: ContainerPresence["kind"][] = [];
    let failures = destroyFails;
    const terraform = {
      async prepare() {},
      async apply(): Promise<unknown> {
        return {};
      },
      async destroy(_dir: string, c: { refresh?: boolean }) {
        destroys.push({ refresh: c.refresh });
        if (failures-- > 0) throw new Error(`Error: error retrieving container status: received an HTTP 500 response - Reason: Configuration file 'nodes/pve/lxc/100123.conf' does not exist`);
      },
      async output() {
        return {};
      },
    };
    let i = 0;
    const containerPresence = async () => {
      const p = presence[Math.min(i++, presence.length - 1)];
      if (p instanceof Error) throw p;
      checks.push(p.kind);
      return p;
    };
    const github = { async deleteRunner() { return "deleted" as const; } };
    const pipeline = new Pipeline({
      store, terraform, containerPresence, containerExists: async () => true, github: github as unknown as GitHubAdapter,
      delivery: { startsContainer: false } as never, settings: settings(stateDir), logger: pino({ level: "silent" }),
    });
    pipeline.setDraining(true);
    const stackDir = join(stateDir, "runners", NAME);
    await mkdir(join(stackDir, "stacks", "runner"), { recursive: true });
    await writeFile(join(stackDir, "stacks", "runner", "terraform.tfstate"), "{}");
    store.insertRunner({ name: NAME, labelSet: "linux", scope: "repo:acme/app", madeForJob: null });
    store.assignVmid(NAME, 100123);
    store.setPlacement(NAME, "pve", "pve/9000");
    store.setRunnerState(NAME, "destroying", { stackDir, githubRunnerId: 7 });
    ctx.after(async () => {
      await pipeline.stop();
      store.close();
      await rm(stateDir, { recursive: true, force: true });
    });
    pipeline.nudge(NAME);
    await pipeline.idle();
    return { destroys, checks, state: store.getRunner(NAME)!.state, stackLeft: existsSync(stackDir) };
  }

  test("container present: terraform destroy -refresh=false", async (ctx) => {
    const t = await setUp(ctx, [{ kind: "present" }]);
    assert.deepEqual(t.destroys, [{ refresh: false }]);
    assert.equal(t.state, "gone");
    assert.equal(t.stackLeft, false);
  });

  test("container deleted out of band: no terraform at all, the stack dir removed as after a destroy, the runner gone", async (ctx) => {
    const t = await setUp(ctx, [{ kind: "gone", why: "no guest with vmid 100123 on the cluster" }]);
    assert.deepEqual(t.destroys, []);
    assert.equal(t.state, "gone");
    assert.equal(t.stackLeft, false);
  });

  test("the API cannot tell (or the check throws): destroy with a refresh, as before", async (ctx) => {
    const a = await setUp(ctx, [{ kind: "unknown", why: "596 Connection timed out" }]);
    assert.deepEqual(a.destroys, [{ refresh: true }]);
    assert.equal(a.state, "gone");
    const b = await setUp(ctx, [new Error("boom")]);
    assert.deepEqual(b.destroys, [{ refresh: true }]);
  });

  test("the container vanishes between the check and the destroy: the failed destroy is followed by a check, and the runner goes", async (ctx) => {
    const t = await setUp(ctx, [{ kind: "present" }, { kind: "gone", why: "no guest with vmid 100123 on the cluster" }], 1_000);
    assert.deepEqual(t.destroys, [{ refresh: false }], "one destroy, not a retry loop");
    assert.deepEqual(t.checks, ["present", "gone"]);
    assert.equal(t.state, "gone");
    assert.equal(t.stackLeft, false);
  });

  test("a destroy that fails while the container is there is retried, without a refresh while it is there", async (ctx) => {
    const t = await setUp(ctx, [{ kind: "present" }], 2);
    assert.deepEqual(t.destroys, [{ refresh: false }, { refresh: false }, { refresh: false }]);
    assert.equal(t.state, "gone");
  });
});
