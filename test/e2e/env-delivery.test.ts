// Env delivery (PVE 9.1's `env` CT option) never lets the JIT config reach terraform state: bpg reads
// `env` into environment_variables on every refresh, so the listener removes it right after the
// start, and again before a destroy (a listener that died between start and removal left it set).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SIM_NODE, SIM_TOKENS } from "../../sim/pve/index.js";
import { settled, startE2E, waitFor, type E2E } from "./harness.js";

const root = `PVEAPIToken=${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}`;
const ctConfig = async (e: E2E, vmid: number) => {
  const res = await fetch(`${e.world.pve.url}/api2/json/nodes/${SIM_NODE}/lxc/${vmid}/config`, { headers: { authorization: root } });
  return ((await res.json()) as { data: Record<string, unknown> }).data;
};
const putConfig = async (e: E2E, vmid: number, params: Record<string, string>) => {
  const res = await fetch(`${e.world.pve.url}/api2/json/nodes/${SIM_NODE}/lxc/${vmid}/config`, {
    method: "PUT",
    headers: { authorization: root, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(params).toString(),
  });
  assert.equal(res.status, 200, await res.text());
};
/** What the secrets scans look for: a JIT config is a long base64 blob. */
const JIT_LIKE = /[A-Za-z0-9+/]{400,}={0,2}/;

describe("env delivery keeps the JIT config out of terraform state", { timeout: 180_000 }, () => {
  test("removed from the CT config after start; one left behind is removed before destroy's refresh", async () => {
    const e = await startE2E({ configPatch: (c) => (c.delivery = { mode: "env" }) });
    try {
      const job = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 100_000 });
      const r = await waitFor("runner busy", () => e.service.store.runners(["busy"])[0], 60_000, 20);
      // The guest took the config from init's environment at start; the CT config no longer holds it.
      assert.ok(!("env" in (await ctConfig(e, r.vmid!))), "env removed from the CT config once the container started");

      // A listener that died between start and removal: the option is still set at destroy time.
      const leftBehind = "A".repeat(600);
      await putConfig(e, r.vmid!, { env: `ACTIONS_RUNNER_INPUT_JITCONFIG=${leftBehind}` });
      // Every destroy fails after its refresh, so the refreshed state stays on disk between attempts.
      const failures = 100;
      e.world.pve.setFaults({ next: { op: "destroy", count: failures } });
      const taken = () => failures - (((e.world.pve.faults().next as Record<string, { remaining: number }>).destroy?.remaining) ?? 0);
      // Two taken: the first destroy has ended and written its state.
      await waitFor("a failed destroy", () => taken() >= 2, 90_000, 20);
      const statePath = join(r.stackDir!, "stacks", "runner", "terraform.tfstate");
      const state = readFileSync(statePath, "utf8");
      const resource = (JSON.parse(state) as { resources: Array<{ type: string; instances: Array<{ attributes: Record<string, unknown> }> }> }).resources.find(
        (x) => x.type === "proxmox_virtual_environment_container",
      );
      assert.ok(resource, "the failed destroy left the container in state");
      assert.equal(resource.instances[0].attributes.environment_variables, null, "no env read back into state");
      assert.doesNotMatch(state, JIT_LIKE, "no JIT config in terraform state");
      assert.ok(!("env" in (await ctConfig(e, r.vmid!))), "env removed before destroy");

      e.world.pve.clearFaults();
      await settled(e, [job.id]);
    } finally {
      await e.stop();
    }
  });
});
