// Placement: which template copy (clone lane) and node a runner goes to.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { Placement, nodeLoads, templateCopies, type NodeLoad, type TemplateCopy } from "../../../listener/lifecycle/placement.js";
import type { RunnerRow, RunnerState } from "../../../listener/store/store.js";

const GiB = 1024 ** 3;
const copies: TemplateCopy[] = templateCopies({ node: "pve1", templates: [{ node: "pve1", vmid: 9000 }, { node: "pve1", vmid: 9001 }, { node: "pve2", vmid: 9002 }, { node: "pve2", vmid: 9003 }] });
const memory: Record<string, number> = { small: 2048, big: 16384 };

function placement(limits: Record<string, { maxRunners?: number; minFreeMemoryMb: number }> = {}, readNodes: () => Promise<NodeLoad[]> = async () => []) {
  return new Placement({ templates: copies, limits, readNodes, memoryOf: (s) => memory[s], logger: pino({ level: "silent" }) });
}
let n = 0;
function runner(over: Partial<RunnerRow> & { state: RunnerState }): RunnerRow {
  n++;
  return { name: `runner-${n}`, labelSet: "small", scope: "repo:acme/app", madeForJob: n, jobId: null, vmid: null, githubRunnerId: null, stackDir: null, node: null, template: null, attempts: 0, lastError: null, createdAt: Date.now(), stateSince: Date.now(), ...over };
}
const load = (node: string, freeGiB: number, over: Partial<NodeLoad> = {}): NodeLoad => ({ node, online: true, maxmem: 64 * GiB, mem: (64 - freeGiB) * GiB, maxcpu: 16, cpu: 0.1, ...over });
const pick = (p: Placement, live: RunnerRow[], loads: NodeLoad[] | null, labelSet = "small") => {
  const r = p.choose({ name: "runner-new", labelSet }, live, loads ? new Map(loads.map((l) => [l.node, l])) : null);
  return "copy" in r ? r.copy.key : `wait: ${r.wait}`;
};

describe("placement", () => {
  test("a burst spreads evenly over every lane: each placement sees the ones before it", () => {
    const p = placement();
    const live: RunnerRow[] = [];
    const loads = [load("pve1", 60), load("pve2", 60)];
    for (let i = 0; i < 20; i++) {
      const key = pick(p, live, loads);
      const [node] = key.split("/");
      live.push(runner({ state: "provisioning", node, template: key }));
    }
    const perLane = copies.map((c) => live.filter((r) => r.template === c.key).length);
    assert.deepEqual(perLane, [5, 5, 5, 5]);
  });

  test("a clone that is done frees its lane: only provisioning runners count as ahead", () => {
    const p = placement();
    const live = [runner({ state: "booting", node: "pve1", template: "pve1/9000" }), ...copies.slice(1).map((c) => runner({ state: "provisioning", node: c.node, template: c.key }))];
    assert.equal(pick(p, live, [load("pve1", 60), load("pve2", 60)]), "pve1/9000");
  });

  test("equal lanes: the node with more free memory wins, then the idler CPU", () => {
    const p = placement();
    assert.equal(pick(p, [], [load("pve1", 10), load("pve2", 40)]), "pve2/9002");
    assert.equal(pick(p, [], [load("pve1", 40, { cpu: 0.9 }), load("pve2", 40, { cpu: 0.2 })]), "pve2/9002");
  });

  test("an offline node, a node at its cap and a node without the memory are skipped, with the reasons when none is left", () => {
    const live = [runner({ state: "busy", node: "pve1", template: "pve1/9000" }), runner({ state: "busy", node: "pve1", template: "pve1/9001" })];
    const capped = placement({ pve1: { maxRunners: 2, minFreeMemoryMb: 1024 } });
    assert.match(pick(capped, live, [load("pve1", 60), load("pve2", 60, { online: false, maxmem: undefined, mem: undefined })]), /^wait: .*pve1: at its cap of 2 runners.*pve2: offline/);
    assert.equal(pick(capped, live, [load("pve1", 60), load("pve2", 60)]).split("/")[0], "pve2");
    // 16 GiB runners: pve2 has 12 GiB free, pve1 has 40.
    assert.equal(pick(placement(), [], [load("pve1", 40), load("pve2", 12)], "big").split("/")[0], "pve1");
    assert.match(pick(placement(), [], [load("pve1", 16), load("pve2", 12)], "big"), /^wait: pve1: 16384 MiB free, needs 16384 \+ 1024 headroom/);
  });

  test("runners placed but not yet in PVE's lagging sample count against the node's free memory", () => {
    const p = placement();
    // pve2 shows 20 GiB free, but 5 small runners (10 GiB) are being cloned there and the sample does not know.
    const live = Array.from({ length: 5 }, () => runner({ state: "provisioning", node: "pve2", template: "pve2/9002" }));
    assert.equal(pick(p, live, [load("pve1", 14), load("pve2", 20)], "small").split("/")[0], "pve1");
  });

  test("without node stats (no Sys.Audit) or when they cannot be read, lanes and caps still place", async () => {
    const failing = placement({}, async () => {
      throw new Error("403 Permission check failed");
    });
    assert.equal(await failing.loads(), null);
    assert.equal(pick(failing, [], null), "pve1/9000");
    const blind = nodeLoads([{ type: "node", node: "pve1", status: "online" }, { type: "node", node: "pve2", status: "offline" }, { type: "storage", node: "pve1" }]);
    assert.deepEqual(blind.map((l) => [l.node, l.online, l.maxmem]), [["pve1", true, undefined], ["pve2", false, undefined]]);
    assert.equal(pick(placement(), [], blind).split("/")[0], "pve1");
  });

  test("a node the cluster does not list is not used", () => {
    assert.equal(pick(placement(), [], [load("pve2", 60)]).split("/")[0], "pve2");
  });

  test("readings are reused for a while and re-read after invalidate()", async () => {
    let reads = 0;
    const p = placement({}, async () => {
      reads++;
      return [load("pve1", 60)];
    });
    await Promise.all([p.loads(), p.loads()]);
    await p.loads();
    assert.equal(reads, 1);
    p.invalidate();
    await p.loads();
    assert.equal(reads, 2);
  });

  test("the single-template shorthand is one copy; a template on another node clones onto `node`", () => {
    assert.deepEqual(templateCopies({ node: "pve", templateVmid: 9000 }), [{ node: "pve", vmid: 9000, sourceNode: "pve", key: "pve/9000" }]);
    assert.deepEqual(templateCopies({ node: "pve", templateVmid: 9000, templateNode: "nas" }), [{ node: "pve", vmid: 9000, sourceNode: "nas", key: "nas/9000" }]);
  });
});
