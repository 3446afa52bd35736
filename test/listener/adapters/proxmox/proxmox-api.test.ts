// The listener's own PVE calls: starting a runner's container is idempotent without a status read
// first (PVE itself refuses to start a running CT, "CT N already running", before any task, and that
// answer counts as started), and waiting for a task rides out a few failed status polls.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { ProxmoxApi, ProxmoxError } from "../../../../listener/adapters/proxmox/proxmox.js";
import { PveSim, SIM_NODE, SIM_TEMPLATE_VMID, SIM_TOKENS } from "../../../../sim/pve/index.js";

const sim = new PveSim({ timeScale: 0.01 });
let pve: ProxmoxApi;

before(async () => {
  const url = await sim.start(0, "127.0.0.1");
  pve = new ProxmoxApi({ endpoint: url, token: `${SIM_TOKENS.runners.id}=${SIM_TOKENS.runners.secret}`, insecure: false, logger: pino({ level: "silent" }), pollMs: 5 });
});
after(() => sim.stop());

/** A runner-like clone of the template, with no interception (one at a time: "CT is locked (disk)"). */
async function cloneCt(newid: number): Promise<string> {
  return (await ProxmoxApi.prototype.request.call(pve, "POST", `/nodes/${SIM_NODE}/lxc/${SIM_TEMPLATE_VMID}/clone`, { newid, hostname: `runner-${newid}`, pool: "ci" })) as string;
}

test("ensureStarted starts a stopped container; on a running one it succeeds and starts nothing; other refusals are errors", async () => {
  await pve.waitTask(SIM_NODE, await cloneCt(150));
  const starts = () => sim.tasks().filter((t) => t.type === "vzstart").length;
  const reads: string[] = [];
  const request = pve.request.bind(pve);
  pve.request = (<T>(...args: Parameters<ProxmoxApi["request"]>) => {
    reads.push(`${args[0]} ${args[1]}`);
    return request<T>(...args);
  }) as ProxmoxApi["request"];
  try {
    await pve.ensureStarted(SIM_NODE, 150);
    assert.deepEqual(reads.filter((r) => !r.includes("/tasks/")), [`POST /nodes/${SIM_NODE}/lxc/150/status/start`], "no status read before the start");
    assert.equal((await pve.containerStatus(SIM_NODE, 150)).status, "running");
    assert.equal(starts(), 1);

    await pve.ensureStarted(SIM_NODE, 150);
    assert.equal(starts(), 1, "PVE refused the second start before making a task");
    assert.equal((await pve.containerStatus(SIM_NODE, 150)).status, "running");

    await assert.rejects(pve.ensureStarted(SIM_NODE, 151), (err: unknown) => err instanceof ProxmoxError && !/already running/.test(err.message));
  } finally {
    pve.request = ProxmoxApi.prototype.request;
  }
});

test("waitTask asks again after a failed status poll (pveproxy's 596) and gives up after 5 in a row", async () => {
  const upid1 = await cloneCt(160);
  // Status polls fail as pveproxy's timeout does: every other one, then every one.
  let polls = 0;
  let failEvery = 2;
  pve.request = (<T>(...args: Parameters<ProxmoxApi["request"]>) => {
    if (args[1].includes("/tasks/") && ++polls % failEvery === 0) return Promise.reject(new ProxmoxError(596, `GET ${args[1]}: 596 Connection timed out`));
    return ProxmoxApi.prototype.request.apply(pve, args) as Promise<T>;
  }) as ProxmoxApi["request"];
  try {
    await pve.waitTask(SIM_NODE, upid1);
    assert.ok(polls >= 2, "at least one poll failed on the way");
    assert.equal((await pve.containerConfig(SIM_NODE, 160)).hostname, "runner-160");
    const upid2 = await cloneCt(161);
    [polls, failEvery] = [0, 1];
    await assert.rejects(pve.waitTask(SIM_NODE, upid2), (err: unknown) => err instanceof ProxmoxError && err.status === 596);
    assert.equal(polls, 5, "the fifth failure in a row is the answer");
    // Anything but no answer, 502/503 or 595/596 is an answer at once.
    polls = 0;
    pve.request = (() => (polls++, Promise.reject(new ProxmoxError(403, "GET: 403 Permission check failed")))) as ProxmoxApi["request"];
    await assert.rejects(pve.waitTask(SIM_NODE, upid2), (err: unknown) => err instanceof ProxmoxError && err.status === 403);
    assert.equal(polls, 1);
  } finally {
    pve.request = ProxmoxApi.prototype.request;
  }
});
