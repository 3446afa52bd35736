// The guest firewall as pve-firewall serves it: per-guest options and rules need VM.Config.Network
// on the guest (a runner's token has it on its own runners, nothing else), security groups and the
// cluster's options need Sys.Modify on / (root's setup only); a clone starts with a copy of its
// source's <vmid>.fw and a destroyed guest's file is removed.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { PveSim, SIM_TEMPLATE_VMID, SIM_TOKENS } from "../../sim/pve/index.js";
import { PveSimClient } from "../../sim/pve/client.js";

describe("PVE simulator: firewall", () => {
  const sim = new PveSim({ timeScale: 0.01, guest: { bootMs: 60_000 } });
  let root: PveSimClient;
  let runners: PveSimClient;

  before(async () => {
    root = new PveSimClient(await sim.start(0, "127.0.0.1"));
    runners = root.as(SIM_TOKENS.runners);
  });
  after(() => sim.stop());

  test("security groups and the cluster firewall are root's: the runners token gets 403 (Sys.Modify on /)", async () => {
    const refused = [
      await runners.post("/cluster/firewall/groups", { group: "evil" }),
      await runners.post("/cluster/firewall/groups/pve-runners", { type: "out", action: "ACCEPT", enable: 1 }),
      await runners.put("/cluster/firewall/options", { enable: 0 }),
    ];
    for (const r of refused) assert.deepEqual([r.status, r.reason], [403, "Permission check failed (/, Sys.Modify)"]);
    assert.equal((await runners.get("/cluster/firewall/groups/pve-runners")).reason, "Permission check failed (/, Sys.Audit)");
    assert.equal((await root.post("/cluster/firewall/groups", { group: "pve-runners", comment: "CI egress" })).status, 200);
    assert.equal((await root.post("/cluster/firewall/groups", { group: "pve-runners" })).body?.errors?.group, "Security group 'pve-runners' already exists");
    assert.equal((await root.post("/cluster/firewall/groups/pve-runners", { type: "out", action: "DROP", dest: "10.0.0.0/8", enable: 1 })).status, 200);
    assert.equal((await root.post("/cluster/firewall/groups/pve-runners", { type: "group", action: "other" })).body?.errors?.type, "invalid rule type 'group' for rule_env 'group'");
    const rules = (await root.get<Array<Record<string, unknown>>>("/cluster/firewall/groups/pve-runners")).data;
    assert.deepEqual(rules, [{ pos: 0, type: "out", action: "DROP", dest: "10.0.0.0/8", enable: 1 }]);
  });

  test("a clone starts with its template's firewall file; the runners token sets its own runner's options and nobody else's", async () => {
    // What the setup does once, as root: the template's options and its reference to the group.
    assert.equal((await root.put(root.ct(SIM_TEMPLATE_VMID, "/firewall/options"), { enable: 1, policy_in: "DROP" })).status, 200);
    assert.equal((await root.post(root.ct(SIM_TEMPLATE_VMID, "/firewall/rules"), { type: "group", action: "pve-runners", iface: "net0", enable: 1 })).status, 200);
    const vmid = 610;
    assert.equal(await runners.task("POST", runners.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: vmid, pool: "ci", full: 0 }), "OK");
    assert.deepEqual(sim.firewall(vmid), { options: { enable: "1", policy_in: "DROP" }, rules: [{ type: "group", action: "pve-runners", iface: "net0", enable: "1" }] });

    const opts = { dhcp: 1, enable: 1, ipfilter: 0, log_level_in: "nolog", log_level_out: "nolog", macfilter: 1, ndp: 1, policy_in: "DROP", policy_out: "ACCEPT", radv: 0 };
    assert.equal((await runners.put(runners.ct(vmid, "/firewall/options"), opts)).status, 200);
    const read = (await runners.get<Record<string, unknown>>(runners.ct(vmid, "/firewall/options"))).data;
    assert.equal(read.enable, 1);
    assert.equal(read.macfilter, 1);
    assert.equal(read.policy_in, "DROP");
    assert.match(String(read.digest), /^[0-9a-f]{40}$/);
    assert.equal((await runners.put(runners.ct(vmid, "/firewall/options"), { policy_in: "OPEN" })).body?.errors?.policy_in, "value 'OPEN' does not have a value in the enumeration 'ACCEPT, REJECT, DROP'");
    assert.equal((await runners.put(runners.ct(vmid, "/firewall/options"), { enable: 0, digest: "0".repeat(40) })).status, 500, "a stale digest is refused");

    // A guest outside the pool: the runners token may neither read nor change its firewall.
    const foreign = 611;
    assert.equal(await root.task("POST", root.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: foreign, full: 0 }), "OK");
    assert.equal((await runners.put(runners.ct(foreign, "/firewall/options"), { enable: 0 })).reason, `Permission check failed (/vms/${foreign}, VM.Config.Network)`);
    assert.equal((await runners.post(runners.ct(foreign, "/firewall/rules"), { type: "in", action: "ACCEPT", enable: 1 })).reason, `Permission check failed (/vms/${foreign}, VM.Config.Network)`);
    assert.equal((await runners.get(runners.ct(foreign, "/firewall/options"))).reason, `Permission check failed (/vms/${foreign}, VM.Audit)`);

    // Destroying the guest removes its firewall file (remove_vmfw_conf).
    assert.equal(await runners.task("DELETE", runners.ct(vmid), { purge: 1 }), "OK");
    assert.equal(sim.firewall(vmid), null);
  });
});
