// The listener's own PVE calls: starting a runner's container is idempotent without a status read
// first (PVE itself refuses to start a running CT, "CT N already running", before any task, and that
// answer counts as started), and waiting for a task rides out a few failed status polls.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { ProxmoxApi, ProxmoxError } from "../../listener/proxmox.js";
import { PveSim, SIM_NODE, SIM_TEMPLATE_VMID, SIM_TOKENS } from "../../sim/pve/index.js";

const sim = new PveSim({ timeScale: 0.01 });
let pve: ProxmoxApi;

before(async () => {
  const url = await sim.start(0, "127.0.0.1");
  pve = new ProxmoxApi({ endpoint: url, token: `${SIM_TOKENS.runners.id}=${SIM_TOKENS.runners.secret}`, insecure: false, logger: pino({ level: "silent" }), pollMs: 5 });
});
after(() => sim.stop());

test("ensureStarted starts a stopped container; on a running one it succeeds and starts nothing; other refusals are errors", async () => {
  const upid = await pve.request<string>("POST", `/nodes/${SIM_NODE}/lxc/${SIM_TEMPLATE_VMID}/clone`, { newid: 150, hostname: "runner-start", pool: "ci" });
  await pve.waitTask(SIM_NODE, upid);
  const starts = () => sim.tasks().filter((t) => t.type === "vzstart").length;
  const reads: string[] = [];
  const request = pve.request.bind(pve);
  pve.request = (<T>(...args: Parameters<ProxmoxApi["request"]>) => {
    reads.push(`${args[0]} ${args[1]}`);
    return request<T>(...args);
  }) as ProxmoxApi["request"];

  await pve.ensureStarted(SIM_NODE, 150);
  assert.deepEqual(reads.filter((r) => !r.includes("/tasks/")), [`POST /nodes/${SIM_NODE}/lxc/150/status/start`], "no status read before the start");
  assert.equal((await pve.containerStatus(SIM_NODE, 150)).status, "running");
  assert.equal(starts(), 1);

  await pve.ensureStarted(SIM_NODE, 150);
  assert.equal(starts(), 1, "PVE refused the second start before making a task");
  assert.equal((await pve.containerStatus(SIM_NODE, 150)).status, "running");

  await assert.rejects(pve.ensureStarted(SIM_NODE, 151), (err: unknown) => err instanceof ProxmoxError && !/already running/.test(err.message));
});

test("waitTask asks again after a failed status poll (pveproxy's 596) and gives up after 5 in a row", async () => {
  const clone = (newid: number) => pve.request<string>("POST", `/nodes/${SIM_NODE}/lxc/${SIM_TEMPLATE_VMID}/clone`, { newid, hostname: `runner-wait-${newid}`, pool: "ci" });
  try {
    // Every other status poll fails: the task is still followed to its end.
    sim.setFaults({ timeoutRate: 0.5, paths: "/tasks/" });
    await pve.waitTask(SIM_NODE, await clone(160));
    assert.equal((await pve.containerConfig(SIM_NODE, 160)).hostname, "runner-wait-160");
    // Every poll fails: the fifth failure is the answer, with PVE's reason.
    sim.setFaults({ timeoutRate: 1, paths: "/tasks/" });
    const upid = await clone(161);
    let polls = 0;
    const request = pve.request;
    pve.request = (<T>(...args: Parameters<ProxmoxApi["request"]>) => {
      if (args[1].includes("/tasks/")) polls++;
      return request.call(pve, ...args) as Promise<T>;
    }) as ProxmoxApi["request"];
    try {
      await assert.rejects(pve.waitTask(SIM_NODE, upid), (err: unknown) => err instanceof ProxmoxError && err.status === 596);
    } finally {
      pve.request = request;
    }
    assert.equal(polls, 5);
  } finally {
    sim.clearFaults();
  }
});
