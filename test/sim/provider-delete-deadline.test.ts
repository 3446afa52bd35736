// bpg's destroy deadline at time scale 1: containerDelete runs shutdown and delete under one
// context deadline of timeout_delete, asking PVE to force the stop after timeout_delete - 5 s
// (bpg proxmoxtf/resource/container/container.go; PVE's vm_shutdown/vm_stop run
// `lxc-stop --timeout T`, killing after T with forceStop). Also: every refresh of a running
// container reads its interfaces (bpg's WaitForContainerNetworkInterfaces) into ipv4/ipv6.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { synthRunnerStack } from "../../stacks/runner-stack.js";
import { runnerStackSpec } from "../fixtures/runner-stack-spec.js";
import { ProviderSimFixture } from "../fixtures/terraform/helpers.js";

// Real time; everything fast except the guest's clean shutdown, which takes 20 s.
const world = new ProviderSimFixture("pve-runners-delete-deadline-", {
  timeScale: 1,
  latencyMs: { api: 1, cloneLinked: 200, start: 200, config: 20, stop: 200, destroy: 300, shutdown: 20_000, jitter: 0 },
  guest: { bootMs: 100 },
});
const { sim } = world;

function terraform(cwd: string, ...args: string[]): Promise<{ code: number; out: string }> {
  const env = world.terraformEnv(100);
  return new Promise((resolve) => {
    execFile("terraform", args, { cwd, env, maxBuffer: 32 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

/** A started runner container with timeout_delete = `deleteTimeoutSec`; returns its stack dir and vmid. */
async function appliedRunner(name: string, deleteTimeoutSec: number): Promise<{ dir: string; vmid: number; state: Record<string, any> }> {
  const { workingDir } = synthRunnerStack(
    join(world.root, name),
    runnerStackSpec({ runnerName: name, labelSet: "s", endpoint: `${world.simUrl}/`, cores: 1, memoryMb: 512, swapMb: 0, deleteTimeoutSec }),
  );
  assert.equal((await terraform(workingDir, "init", "-input=false", "-no-color")).code, 0);
  const applied = await terraform(workingDir, "apply", "-auto-approve", "-input=false", "-no-color");
  assert.equal(applied.code, 0, applied.out);
  const show = JSON.parse((await terraform(workingDir, "show", "-json")).out);
  const values = show.values.root_module.resources[0].values as Record<string, any>;
  assert.equal(values.timeout_delete, deleteTimeoutSec);
  return { dir: workingDir, vmid: values.vm_id as number, state: values };
}

describe("provider stand-in: timeout_delete at time scale 1", { timeout: 120_000 }, () => {
  test("a container slower to shut down than timeout_delete - 5 s is stopped by force and deleted in time", async () => {
    const { dir, vmid, state } = await appliedRunner("runner-slowstop", 6);
    // The read after the start polled the container's interfaces until DHCP had answered.
    assert.match(String(state.ipv4?.eth0), /^10\.\d+\.\d+\.\d+$/, "ipv4 from GET …/interfaces");

    const destroyed = await terraform(dir, "destroy", "-auto-approve", "-input=false", "-no-color");
    assert.equal(destroyed.code, 0, destroyed.out);
    assert.equal(sim.container(vmid), undefined, "the container is gone");
    const shutdown = sim.tasks().find((t) => t.type === "vzshutdown" && t.id === String(vmid));
    assert.equal(shutdown?.exitstatus, "OK");
  });

  test("past timeout_delete, bpg's deadline error while PVE's task runs on", async () => {
    const { dir, vmid } = await appliedRunner("runner-slowdelete", 6);
    sim.setLatency({ destroy: 7_000 });
    try {
      const failed = await terraform(dir, "destroy", "-auto-approve", "-input=false", "-no-color");
      assert.notEqual(failed.code, 0);
      const error = failed.out.slice(failed.out.indexOf("Error:")).replace(/\s+/g, " ");
      assert.match(error, /timeout while waiting for task "UPID:[^"]*:vzdestroy:/, "the deadline struck in the delete, after the forced stop");
      assert.ok(sim.container(vmid), "PVE's destroy task still runs");
      await sim.settle();
      assert.equal(sim.container(vmid), undefined, "and removes the container after the deadline");
    } finally {
      sim.setLatency({ destroy: 300 });
    }
  });
});
