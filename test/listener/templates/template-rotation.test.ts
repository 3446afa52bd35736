// Template rotation against a fake PVE: replacements survive a reopened store, chain, keep runners
// on their node; a replaced template is destroyed only once no runner (of any live state) is on it,
// and only after PVE shows it is still one of our templates.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Store } from "../../../listener/store/store.js";
import { templateCopies } from "../../../listener/lifecycle/placement.js";
import { TemplateRefused, TemplateRotation, type TemplatePve } from "../../../listener/templates/template-rotation.js";

interface FakeCt { node: string; vmid: number; template: boolean; tags: string; pool: string | null; groups?: string[] }

function fakePve(cts: FakeCt[]): TemplatePve & { destroyed: number[] } {
  const destroyed: number[] = [];
  const row = (c: FakeCt) => ({ vmid: c.vmid, node: c.node, type: "lxc", template: c.template ? 1 : 0 });
  return {
    destroyed,
    containerConfig: async (node, vmid) => {
      const c = cts.find((x) => x.vmid === vmid && x.node === node);
      if (!c) throw new Error(`CT ${vmid} does not exist on ${node}`);
      return { template: c.template ? 1 : 0, tags: c.tags };
    },
    clusterResources: async () => cts.map(row),
    poolMembers: async (pool) => cts.filter((c) => c.pool === pool).map(row),
    vmidFree: async (vmid) => !cts.some((c) => c.vmid === vmid),
    firewallRules: async (node, vmid) => (cts.find((c) => c.vmid === vmid && c.node === node)?.groups ?? []).map((g, pos) => ({ pos, type: "group", action: g, iface: "net0", enable: 1 })),
    destroy: async (node, vmid) => {
      const i = cts.findIndex((c) => c.vmid === vmid && c.node === node);
      cts.splice(i, 1);
      destroyed.push(vmid);
    },
  };
}

const ours = (node: string, vmid: number): FakeCt => ({ node, vmid, template: true, tags: "pve-runners-template", pool: "ci" });
const proxmox = { node: "pve", templates: [{ node: "pve", vmid: 9000 }, { node: "pve2", vmid: 9010 }] };

function rotation(store: Store, pve: TemplatePve) {
  return new TemplateRotation({ store, pve, configured: () => templateCopies(proxmox), pool: "ci", runnerVmids: () => ({ first: 100_000, last: 199_999 }), logger: pino({ level: "silent" }) });
}

describe("TemplateRotation", () => {
  test("a replacement is kept across a reopened store and chains; the copy keeps its node", async () => {
    const dir = await mkdtemp(join(tmpdir(), "rotation-"));
    try {
      const file = join(dir, "s.sqlite");
      const pve = fakePve([ours("pve", 9000), ours("pve2", 9010), ours("pve2", 9011), ours("pve2", 9012)]);
      let store = new Store(file);
      await rotation(store, pve).replace("pve2/9010", 9011);
      store.close();
      store = new Store(file);
      const r = rotation(store, pve);
      assert.deepEqual(r.effective().map((c) => [c.node, c.key]), [["pve", "pve/9000"], ["pve2", "pve2/9011"]]);
      await assert.rejects(r.replace("pve2/9010", 9012), /not an active template copy/, "the replaced one is no longer active");
      await r.replace("pve2/9011", 9012);
      assert.deepEqual(r.effective().map((c) => c.key), ["pve/9000", "pve2/9012"]);
      assert.equal(await r.suggestVmid("pve2/9012"), 9013);
      store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("the old template goes only when no runner of any live state is on it, and not if it is no longer ours", async () => {
    const store = new Store(":memory:");
    const cts = [ours("pve", 9000), ours("pve2", 9010), ours("pve2", 9011)];
    const pve = fakePve(cts);
    const r = rotation(store, pve);
    for (const [name, state] of [["warm-1", "warm"], ["busy-1", "busy"]] as const) {
      store.insertRunner({ name, labelSet: "s", scope: "", madeForJob: null });
      store.setPlacement(name, "pve2", "pve2/9010");
      store.setRunnerState(name, state);
    }
    await r.replace("pve2/9010", 9011);
    assert.deepEqual(await r.retireUnused(), []);
    store.setRunnerState("busy-1", "gone");
    assert.deepEqual(await r.retireUnused(), [], "a warm member still depends on it");
    store.setRunnerState("warm-1", "destroying");
    assert.deepEqual(await r.retireUnused(), []);
    store.setRunnerState("warm-1", "gone");
    assert.deepEqual(await r.retireUnused(), ["pve2/9010"]);
    assert.deepEqual(pve.destroyed, [9010]);
    assert.ok(store.templateReplacements()[0].destroyedAt !== null);

    // A replaced template that meanwhile lost our tag (someone else's now) is left alone.
    cts.push(ours("pve", 9001));
    await r.replace("pve/9000", 9001);
    cts.find((c) => c.vmid === 9000)!.tags = "";
    assert.deepEqual(await r.retireUnused(), []);
    assert.deepEqual(pve.destroyed, [9010]);
  });

  test("refusals name what is wrong and record nothing", async () => {
    const store = new Store(":memory:");
    const pve = fakePve([{ ...ours("pve", 9000), groups: ["pve-runners"] }, ours("pve2", 9010), { ...ours("pve", 9001), template: false }, { ...ours("pve", 9002), pool: null }, ours("pve", 9003), ours("pve", 9004)]);
    const r = rotation(store, pve);
    store.insertRunner({ name: "r", labelSet: "s", scope: "", madeForJob: null });
    for (const [from, vmid, why] of [
      ["pve/9000", 9001, /is not a template/],
      ["pve/9000", 9002, /does not exist in pool ci/],
      ["pve/9000", 9010, /already recorded/],
      ["pve2/9010", 9003, /is on pve, not on pve2/],
      ["pve/9000", 150_000, /runners' range/],
      ["pve/9000", 12.5, /integer/],
      ["pve/9000", 9004, /lacks the firewall security group\(s\) pve-runners net0 of pve\/9000: run pveum-setup --firewall --template-vmid 9004/],
    ] as const) {
      await assert.rejects(r.replace(from, vmid), (err: Error) => err instanceof TemplateRefused && why.test(err.message), `${from} -> ${vmid}`);
    }
    assert.deepEqual(store.templateReplacements(), []);
  });
});
