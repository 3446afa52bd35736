import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deleteTimeoutFor, synthRunnerStack, type RunnerStackSpec } from "../../stacks/runner-stack.js";
import { runnerStackSpec } from "../fixtures/runner-stack-spec.js";

const spec = runnerStackSpec({ labelSet: "linux-x64", vmid: 100_042 });

test("runner stack clones the template as a linked clone onto the CI VLAN with relative state", () => {
  const dir = mkdtempSync(join(tmpdir(), "stack-"));
  try {
    const out = synthRunnerStack(dir, spec);
    const json = JSON.parse(readFileSync(out.file, "utf8"));
    assert.deepEqual(json.terraform.backend, { local: { path: "terraform.tfstate" } });
    assert.equal(json.terraform.required_providers.proxmox.source, "registry.terraform.io/bpg/proxmox");
    const ct = json.resource.proxmox_virtual_environment_container.runner;
    assert.deepEqual(ct.clone, { vm_id: 9000, node_name: "pve", full: false });
    // The listener's vmid: bpg never picks one (GET /cluster/nextid reserves nothing).
    assert.equal(ct.vm_id, 100_042);
    assert.equal(ct.unprivileged, true);
    assert.equal(ct.pool_id, "ci");
    assert.deepEqual(ct.network_interface, [{ name: "eth0", bridge: "vmbr1", vlan_id: 30, firewall: true }]);
    assert.equal(ct.initialization.hostname, "runner-abc123");
    // The controller tag marks it as this installation's: the sweeper destroys no container without it.
    assert.deepEqual(ct.tags, ["pve-runners", "pve-runners-ctl-0123456789abcdef", "pve-runners-runner-abc123"]);
    assert.match(ct.description, /^pve-runners ephemeral runner runner-abc123 \(.*pve-runners-ctl-0123456789abcdef\)$/);
    assert.deepEqual(ct.cpu, { cores: 2 });
    assert.deepEqual(ct.memory, { dedicated: 2048, swap: 512 });
    // The token never appears in the stack: it reaches terraform through the environment.
    assert.deepEqual(json.provider.proxmox, [{ endpoint: "https://pve.example:8006/" }]);
    assert.doesNotMatch(readFileSync(out.file, "utf8"), /api_token|PVEAPIToken|secret/i);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a full clone names its datastore; a linked clone never does (PVE refuses it)", () => {
  const dir = mkdtempSync(join(tmpdir(), "stack-"));
  try {
    const full = JSON.parse(readFileSync(synthRunnerStack(join(dir, "a"), { ...spec, linkedClone: false, datastore: "local-lvm" }).file, "utf8"));
    assert.deepEqual(full.resource.proxmox_virtual_environment_container.runner.clone, { vm_id: 9000, node_name: "pve", full: true, datastore_id: "local-lvm" });
    const linked = JSON.parse(readFileSync(synthRunnerStack(join(dir, "b"), { ...spec, datastore: "local-lvm" }).file, "utf8"));
    assert.equal(linked.resource.proxmox_virtual_environment_container.runner.clone.datastore_id, undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("timeout_delete: bpg's 60 s default replaced by the listener's destroy budget minus a margin", () => {
  const dir = mkdtempSync(join(tmpdir(), "stack-"));
  try {
    const ct = (s: RunnerStackSpec, d: string) => JSON.parse(readFileSync(synthRunnerStack(join(dir, d), s).file, "utf8")).resource.proxmox_virtual_environment_container.runner;
    // The config's default timeouts.destroy (300 s) when the spec names none.
    assert.equal(ct(spec, "default").timeout_delete, 270);
    assert.equal(ct({ ...spec, deleteTimeoutSec: deleteTimeoutFor(120) }, "world").timeout_delete, 90);
    // Always short of the listener's own timeout, so bpg reports its deadline first.
    for (const destroySec of [4, 10, 60, 300, 3600]) {
      const t = deleteTimeoutFor(destroySec);
      assert.ok(t >= 1 && t < destroySec, `${destroySec} → ${t}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the runner's NIC is behind PVE's firewall, with the guest baseline set on the container it made", () => {
  const dir = mkdtempSync(join(tmpdir(), "stack-"));
  try {
    const json = JSON.parse(readFileSync(synthRunnerStack(dir, spec).file, "utf8"));
    assert.equal(json.resource.proxmox_virtual_environment_container.runner.network_interface[0].firewall, true);
    const { "//": _meta, ...fw } = json.resource.proxmox_virtual_environment_firewall_options.runner_firewall;
    assert.deepEqual(fw, {
      node_name: "pve",
      // A reference: terraform orders it after the container and targets the vmid it got.
      container_id: "${proxmox_virtual_environment_container.runner.vm_id}",
      enabled: true,
      macfilter: true,
      ipfilter: false,
      dhcp: true,
      ndp: true,
      radv: false,
      input_policy: "DROP",
      output_policy: "ACCEPT",
    });
    assert.equal(JSON.parse(readFileSync(synthRunnerStack(join(dir, "ipf"), { ...spec, ipfilter: true }).file, "utf8")).resource.proxmox_virtual_environment_firewall_options.runner_firewall.ipfilter, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
