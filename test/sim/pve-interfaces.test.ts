// GET /nodes/{node}/lxc/{vmid}/interfaces as PVE answers it (pve-container src/PVE/API2/LXC.pm `ip`,
// PVE::LXC::get_interfaces): VM.Audit, null for a container that does not run, `ip a` entries once
// it does. bpg calls it on every refresh of a running container.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { PveSim, SIM_TEMPLATE_VMID, type TokenDef } from "../../sim/pve/index.js";
import { PveSimClient } from "../../sim/pve/client.js";

const NOBODY: TokenDef = { id: "nobody@pve!none", secret: "0a1b2c3d-0000-4000-8000-000000000000", acls: [] };

interface Iface {
  name: string;
  hwaddr: string;
  "hardware-address": string;
  inet?: string;
  inet6?: string;
  "ip-addresses": Array<{ "ip-address-type": string; "ip-address": string; prefix: number }>;
}

describe("PVE simulator: container interfaces", () => {
  const sim = new PveSim({ timeScale: 0.01, tokens: [NOBODY], guest: { bootMs: 20_000 } });
  let root: PveSimClient;
  before(async () => {
    root = new PveSimClient(await sim.start(0, "127.0.0.1"));
  });
  after(() => sim.stop());

  test("VM.Audit needed; null while stopped; lo and eth0 while running, the DHCP address once booted", async () => {
    const vmid = 300;
    assert.equal(await root.task("POST", root.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: vmid, hostname: "runner-if", pool: "ci" }), "OK");

    const denied = await root.as(NOBODY).get(root.ct(vmid, "/interfaces"));
    assert.equal(denied.status, 403);
    assert.equal(denied.reason, `Permission check failed (/vms/${vmid}, VM.Audit)`);

    const stopped = await root.get(root.ct(vmid, "/interfaces"));
    assert.equal(stopped.status, 200);
    assert.deepEqual(stopped.body, { data: null });

    assert.equal(await root.task("POST", root.ct(vmid, "/status/start")), "OK");
    const mac = /hwaddr=([0-9A-F:]+)/i.exec(String(sim.container(vmid)!.config.net0))![1].toLowerCase();
    const booting = (await root.get<Iface[]>(root.ct(vmid, "/interfaces"))).data;
    assert.deepEqual(booting.map((i) => i.name), ["lo", "eth0"]);
    const lo = booting[0];
    assert.deepEqual(lo["ip-addresses"], [
      { "ip-address-type": "inet", "ip-address": "127.0.0.1", prefix: 8 },
      { "ip-address-type": "inet6", "ip-address": "::1", prefix: 128 },
    ]);
    assert.equal(lo.inet, "127.0.0.1/8");
    const eth0 = booting[1];
    assert.equal(eth0["hardware-address"], mac);
    assert.equal(eth0.hwaddr, mac);
    assert.deepEqual(eth0["ip-addresses"].map((a) => a["ip-address-type"]), ["inet6"], "only the link-local address before DHCP");
    assert.match(eth0["ip-addresses"][0]["ip-address"], /^fe80::/);

    // After the guest's boot (20 s simulated) DHCP has given it an address.
    await new Promise((r) => setTimeout(r, 20_000 * 0.01 + 100));
    const up = (await root.get<Iface[]>(root.ct(vmid, "/interfaces"))).data[1];
    const v4 = up["ip-addresses"].find((a) => a["ip-address-type"] === "inet");
    assert.ok(v4, "an IPv4 address after boot");
    assert.equal(up.inet, `${v4["ip-address"]}/${v4.prefix}`);
  });
});
