// What a hostile workflow inside a runner container is given: an unprivileged container on the CI
// bridge/VLAN only, no host mounts or devices, and no way to the admin API through the webhook port.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { synthRunnerStack } from "../../stacks/runner-stack.js";
import { runnerStackSpec } from "../fixtures/runner-stack-spec.js";
import { startE2E } from "../e2e/harness.js";

test("the runner container: unprivileged, one NIC on the CI bridge and VLAN, no mounts, devices or hooks", () => {
  const dir = mkdtempSync(join(tmpdir(), "guest-"));
  try {
    const { file } = synthRunnerStack(dir, runnerStackSpec({ runnerName: "runner-abc", labelSet: "s", endpoint: "https://pve:8006/", swapMb: 0 }));
    const ct = JSON.parse(readFileSync(file, "utf8")).resource.proxmox_virtual_environment_container.runner;
    assert.equal(ct.unprivileged, true);
    assert.deepEqual(ct.network_interface, [{ name: "eth0", bridge: "vmbr1", vlan_id: 30, firewall: true }], "behind PVE's guest firewall");
    assert.deepEqual(ct.features, { nesting: true, keyctl: true }, "no fuse, no mknod, no mount types");
    for (const k of ["mount_point", "device_passthrough", "hook_script_file_id", "idmap", "environment_variables"]) assert.equal(ct[k], undefined, k);
    assert.equal(ct.pool_id, "ci", "in the pool the token's role is limited to");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the webhook port serves the webhook and /healthz only: no status page, metrics or admin API", async () => {
  const e = await startE2E();
  try {
    for (const path of ["/", "/metrics", "/api/status", "/api/drain"]) {
      const res = await fetch(e.service.url + path, { method: path === "/api/drain" ? "POST" : "GET" });
      assert.equal(res.status, 404, `${path} on the webhook port`);
    }
    assert.equal(e.service.pipeline.isDraining(), false);
    assert.equal(new URL(e.service.adminUrl!).hostname, "127.0.0.1", "the admin listener is on loopback");
  } finally {
    await e.stop();
  }
});
