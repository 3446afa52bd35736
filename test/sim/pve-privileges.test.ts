// Token privileges as PVE evaluates them (pve-access-control src/PVE/RPCEnvironment.pm): the documented least-privilege grants are
// enough for the whole runner lifecycle as the bpg provider drives it, every one of them is needed,
// and anything outside pool ci, or root-only, is refused.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { PVE_RUNNERS_ACLS, PVE_RUNNERS_ROLE, PveSim, SIM_TEMPLATE_VMID, SIM_TOKENS, type TokenDef } from "../../sim/pve/index.js";
import { PveSimClient } from "../../sim/pve/client.js";

const SCALE = 0.01;

/** The runners grants minus one privilege. */
function without(priv: string): TokenDef {
  return {
    id: `minus@pve!${priv.replace(/\./g, "-").toLowerCase()}`,
    secret: `secret-${priv}`,
    acls: PVE_RUNNERS_ACLS().map((a) => ({ ...a, privs: a.privs.filter((p) => p !== priv) })),
  };
}

const REMOVABLE = [...PVE_RUNNERS_ROLE, "SDN.Use"];

describe("PVE simulator: privileges", () => {
  const sim = new PveSim({ timeScale: SCALE, tokens: REMOVABLE.map(without), guest: { bootMs: 60_000 } });
  let root: PveSimClient;
  let nextId = 500;

  before(async () => {
    root = new PveSimClient(await sim.start(0, "127.0.0.1"));
  });
  after(() => sim.stop());

  /**
   * One runner's life as terraform + the bpg provider + the listener drive it. Returns the first
   * refused step ("step: status reason"), or null when everything went through.
   */
  async function lifecycle(c: PveSimClient): Promise<string | null> {
    const step = async (name: string, p: Promise<{ status: number; reason: string; data: unknown }>) => {
      const r = await p;
      if (r.status !== 200) throw new Error(`${name}: ${r.status} ${r.reason}`);
      return r.data;
    };
    try {
      const newid = Number(await step("nextid", c.get("/cluster/nextid", { vmid: nextId++ })));
      const upid = String(await step("clone", c.post(c.ct(SIM_TEMPLATE_VMID, "/clone"), { newid, full: 0, hostname: `runner-p${newid}`, description: "x", pool: "ci" })));
      const exit = await c.waitTask(upid);
      if (exit !== "OK") throw new Error(`clone task: ${exit}`);
      await step("status", c.get(c.ct(newid, "/status/current")));
      await step(
        "config",
        c.put(c.ct(newid, "/config"), {
          onboot: 0,
          features: "keyctl=1,nesting=1",
          cores: 2,
          memory: 2048,
          swap: 512,
          net0: "name=eth0,bridge=vmbr1,firewall=1,ip=dhcp,tag=30",
          hostname: `runner-p${newid}`,
          description: "pve-runners ephemeral runner",
          tags: "pve-runners;pve-runners-x",
        }),
      );
      await step("read config", c.get(c.ct(newid, "/config")));
      // bpg's firewall_options: one PUT with all ten options, then a read.
      await step("firewall options", c.put(c.ct(newid, "/firewall/options"), { dhcp: 1, enable: 1, ipfilter: 0, log_level_in: "nolog", log_level_out: "nolog", macfilter: 1, ndp: 1, policy_in: "DROP", policy_out: "ACCEPT", radv: 0 }));
      await step("read firewall options", c.get(c.ct(newid, "/firewall/options")));
      const start = await c.task("POST", c.ct(newid, "/status/start")).catch((e: Error) => `start: ${e.message}`);
      if (start !== "OK") throw new Error(start);
      const stop = await c.task("POST", c.ct(newid, "/status/stop")).catch((e: Error) => `stop: ${e.message}`);
      if (stop !== "OK") throw new Error(stop);
      const del = await c.task("DELETE", c.ct(newid), { purge: 1, "destroy-unreferenced-disks": 1 }).catch((e: Error) => `destroy: ${e.message}`);
      if (del !== "OK") throw new Error(del);
      return null;
    } catch (err) {
      return (err as Error).message;
    }
  }

  test("the runners token (the documented role on /pool/ci + SDN.Use on the bridge) suffices for the whole lifecycle", async () => {
    assert.equal(await lifecycle(root.as(SIM_TOKENS.runners)), null);
    assert.ok(sim.containers().every((c) => c.vmid === SIM_TEMPLATE_VMID || c.vmid < 500), "nothing left behind");
  });

  test("every privilege of the role is needed: without it the lifecycle fails on it", async () => {
    for (const priv of REMOVABLE) {
      const failure = await lifecycle(root.as(without(priv)));
      assert.ok(failure, `without ${priv} the lifecycle should fail`);
      // Without VM.Allocate the clone's ['or', /vms/{newid}, /pool/{pool}] check fails as a whole.
      const expected = priv === "VM.Allocate" ? /: 403 Permission check failed$/ : new RegExp(`: 403 Permission check failed \\(/[^,]+, ${priv.replace(/\./g, "\\.")}\\)$`);
      assert.match(failure, expected, `without ${priv}: ${failure}`);
    }
  });

  test("outside pool ci: clone without pool= and guests not in the pool are refused", async () => {
    const runners = root.as(SIM_TOKENS.runners);
    const noPool = await runners.post(runners.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: nextId++ });
    // ['or', VM.Allocate on /vms/{newid}, on /pool/{pool}] fails as a whole: no path in the message.
    assert.deepEqual([noPool.status, noPool.reason], [403, "Permission check failed"]);
    const foreign = nextId++;
    assert.equal(await root.task("POST", root.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: foreign }), "OK");
    const cases: Array<[string, Promise<{ status: number; reason: string }>]> = [
      [`/vms/${foreign}, VM.Audit`, runners.get(runners.ct(foreign, "/config"))],
      [`/vms/${foreign}, VM.Audit`, runners.get(runners.ct(foreign, "/status/current"))],
      [`/vms/${foreign}, VM.PowerMgmt`, runners.post(runners.ct(foreign, "/status/start"))],
      [`/vms/${foreign}, VM.Allocate`, runners.delete(runners.ct(foreign))],
      [`/vms/${foreign}, VM.Config.Disk|VM.Config.CPU|VM.Config.Memory|VM.Config.Network|VM.Config.Options`, runners.put(runners.ct(foreign, "/config"), { cores: 1 })],
      [`/vms/${foreign}, VM.Clone`, runners.post(runners.ct(foreign, "/clone"), { newid: nextId++, pool: "ci" })],
    ];
    for (const [what, p] of cases) {
      const r = await p;
      assert.deepEqual([r.status, r.reason], [403, `Permission check failed (${what})`]);
    }
    const list = (await runners.get<Array<{ vmid: number }>>("/nodes/pve/lxc")).data.map((c) => c.vmid);
    assert.ok(!list.includes(foreign) && list.includes(SIM_TEMPLATE_VMID), "the list shows pool members only");
  });

  test("the auditor token reads but changes nothing", async () => {
    const auditor = root.as(SIM_TOKENS.auditor);
    assert.equal((await auditor.get(auditor.ct(SIM_TEMPLATE_VMID, "/config"))).status, 200);
    assert.equal((await auditor.get(auditor.ct(SIM_TEMPLATE_VMID, "/status/current"))).status, 200);
    const refused: Array<[string, Promise<{ status: number; reason: string }>]> = [
      ["/vms/9000, VM.Clone", auditor.post(auditor.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: nextId++, pool: "ci" })],
      ["/vms/9000, VM.PowerMgmt", auditor.post(auditor.ct(SIM_TEMPLATE_VMID, "/status/start"))],
      ["/vms/9000, VM.Allocate", auditor.delete(auditor.ct(SIM_TEMPLATE_VMID))],
    ];
    for (const [what, p] of refused) assert.equal((await p).reason, `Permission check failed (${what})`);
    assert.equal((await auditor.put(auditor.ct(SIM_TEMPLATE_VMID, "/config"), { description: "x" })).status, 403);
  });

  test("feature flags: only nesting may change without root@pam; identical features are no change", async () => {
    const runners = root.as(SIM_TOKENS.runners);
    const vmid = nextId++;
    assert.equal(await runners.task("POST", runners.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: vmid, pool: "ci" }), "OK");
    const put = (features: string, c = runners) => c.put(c.ct(vmid, "/config"), { features });
    assert.equal((await put("keyctl=1,nesting=1")).status, 200, "re-sent as the template has them");
    assert.equal((await put("nesting=1,keyctl=1")).status, 200, "order does not matter");
    assert.equal((await put("nesting=true,keyctl=1")).status, 200, "nor the spelling of booleans");
    const rootOnly = "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)";
    assert.deepEqual([(await put("nesting=1")).status, (await put("nesting=1")).reason], [403, rootOnly], "dropping keyctl is a change");
    assert.equal((await put("keyctl=1,nesting=1,fuse=0")).reason, rootOnly, "fuse=0 vs absent is a change too");
    assert.equal((await put("keyctl=1,nesting=0")).status, 200, "nesting alone may change (VM.Allocate)");
    assert.equal((await put("keyctl=1,nesting=1,fuse=1", root)).reason, rootOnly, "even root's API token is not root@pam");
    assert.equal((await runners.put(runners.ct(vmid, "/config"), { hookscript: "local:snippets/hook.sh" })).reason, "Permission check failed (changing the hookscript is only allowed for root@pam)");
  });

  test("SDN.Use is checked per bridge and VLAN, on clone and on netN changes", async () => {
    const runners = root.as(SIM_TOKENS.runners);
    const vmid = nextId++;
    assert.equal(await runners.task("POST", runners.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: vmid, pool: "ci" }), "OK");
    const other = await runners.put(runners.ct(vmid, "/config"), { net0: "name=eth0,bridge=vmbr0,tag=30" });
    assert.deepEqual([other.status, other.reason], [403, "Permission check failed (/sdn/zones/localnetwork/vmbr0/30, SDN.Use)"]);
    assert.equal((await runners.put(runners.ct(vmid, "/config"), { net0: "name=eth0,bridge=vmbr1,tag=31,ip=dhcp" })).status, 200, "any VLAN of the granted bridge");
    assert.equal((await runners.put(runners.ct(vmid, "/config"), { net0: "name=eth0,bridge=vmbr1,ip=dhcp" })).status, 200, "and the bridge untagged");
  });

  test("the control API needs the root token", async () => {
    for (const t of [SIM_TOKENS.runners, SIM_TOKENS.auditor]) {
      const r = await root.as(t).call("POST", "/_sim/nodes/pve/lxc/9000/exec", { command: "true" }, { json: true });
      assert.equal(r.status, 403);
    }
  });
});
