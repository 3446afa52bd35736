// The PVE simulator as a cluster: templates on several nodes, VMIDs unique cluster-wide, clones
// that stay on their template's node (PVE refuses `target` with local storage), per-template clone
// locks, per-node stats from pvestatd's samples, nodes going offline (595 from pveproxy, "offline"
// in /nodes and /cluster/resources, tasks standing still, quorum) — and the pct and provider
// stand-ins, the latter through real terraform, on a second node.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SIM_TOKENS, DEFAULT_LATENCY, type SimContainer } from "../../sim/pve/index.js";
import { pveSimFixture } from "../fixtures/pve-sim.js";
import { pinnedRunnerVersion } from "../../stacks/runner-pin.js";
import { installPctShim } from "../../sim/pct/install.js";
import { synthRunnerStack } from "../../stacks/runner-stack.js";
import { runnerStackSpec } from "../fixtures/runner-stack-spec.js";
import { ProviderSimFixture } from "../fixtures/terraform/helpers.js";

const SCALE = 0.01;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

type Row = Record<string, unknown>;

describe("PVE simulator: cluster", () => {
  const pve = pveSimFixture(
    {
      timeScale: SCALE,
      seed: 3,
      guest: { bootMs: 600_000 },
      nodes: [{ name: "pve" }, { name: "pve2", cpus: 8, memoryBytes: 64 * GiB }, { name: "pve3" }],
      templates: [
        { node: "pve", vmid: 9000 },
        { node: "pve2", vmid: 9001 },
        { node: "pve2", vmid: 9002, runnerVersion: "2.330.0" },
      ],
    },
    (sim) => {
      for (const n of sim.nodes()) sim.setNodeOnline(n.name, true);
    },
  );
  const { sim } = pve;
  let nextId = 400;

  const clone = (node: string, template: number, params: Record<string, string | number | boolean> = {}, c = pve.runners) =>
    c.post<string>(`/nodes/${node}/lxc/${template}/clone`, { newid: nextId++, pool: "ci", ...params });

  /** A finished linked clone of `template` on `node`, in pool ci. */
  async function cloned(node: string, template: number, params: Record<string, string | number> = {}): Promise<number> {
    const newid = nextId;
    const r = await clone(node, template, { hostname: `runner-c${newid}`, ...params });
    assert.equal(r.status, 200, r.reason);
    assert.equal(await pve.runners.on(node).waitTask(r.data), "OK");
    return newid;
  }

  const resources = async (type?: string, c = pve.root) => (await c.get<Row[]>("/cluster/resources", type ? { type } : {})).data;

  test("every template is a copy of the runner template on its node, with the node's own storage", async () => {
    const byId = new Map(sim.containers().map((c) => [c.vmid, c] as [number, SimContainer]));
    const t0 = byId.get(9000)!;
    for (const [vmid, node] of [[9000, "pve"], [9001, "pve2"], [9002, "pve2"]] as const) {
      const t = byId.get(vmid)!;
      assert.equal(t.node, node);
      assert.equal(t.template, true);
      assert.equal(t.pool, "ci");
      // Tagged with the runner it was built with: the pinned one unless the spec names another.
      assert.deepEqual(t.tags, ["pve-runners-template", `runner-${vmid === 9002 ? "2.330.0" : pinnedRunnerVersion()}`]);
      assert.equal(t.config.rootfs, `local-lvm:base-${vmid}-disk-0,size=8G`);
      for (const k of ["features", "hostname", "memory", "cores", "swap", "unprivileged", "ostype", "arch", "description"]) assert.equal(t.config[k], t0.config[k], `${vmid} ${k}`);
      assert.equal(t.config.net0.replace(/hwaddr=[^,]+/, ""), t0.config.net0.replace(/hwaddr=[^,]+/, ""));
    }
    assert.deepEqual((await pve.runners.get<Row[]>("/nodes/pve2/lxc")).data.map((c) => c.vmid), [9001, 9002], "each node lists its own containers");
    assert.deepEqual((await pve.runners.get<Row[]>("/nodes/pve3/lxc")).data, []);
    // A vmid of another node: that node's config file does not exist here.
    const other = await pve.runners.get("/nodes/pve/lxc/9001/config");
    assert.deepEqual([other.status, other.reason], [500, "Configuration file 'nodes/pve/lxc/9001.conf' does not exist"]);
    const otherClone = await clone("pve", 9001);
    assert.deepEqual([otherClone.status, otherClone.reason], [500, "Configuration file 'nodes/pve/lxc/9001.conf' does not exist"]);
    const vms = await resources("vm");
    assert.deepEqual(vms.filter((e) => [9000, 9001, 9002].includes(e.vmid as number)).map((e) => [e.vmid, e.node, e.pool]), [[9000, "pve", "ci"], [9001, "pve2", "ci"], [9002, "pve2", "ci"]]);
    assert.equal((await resources("vm", pve.runners)).find((e) => e.vmid === 9001)?.pool, undefined, "the pool only with Pool.Audit on it");
    assert.deepEqual((await pve.root.get<Row[]>("/nodes/pve2/storage", { storage: "local-lvm" })).data.length, 1);
    // GET /nodes lists every node; stats need Sys.Audit on /nodes/<node>.
    const nodes = (await pve.root.get<Row[]>("/nodes")).data;
    assert.deepEqual(nodes.map((n) => [n.node, n.status, n.maxcpu, n.maxmem]), [["pve", "online", 16, 128 * GiB], ["pve2", "online", 8, 64 * GiB], ["pve3", "online", 16, 128 * GiB]]);
    assert.equal(new Set(nodes.map((n) => n.ssl_fingerprint)).size, 3);
    const plain = (await pve.runners.get<Row[]>("/nodes")).data;
    assert.deepEqual(plain.map((n) => Object.keys(n).sort()), Array(3).fill(["id", "level", "node", "ssl_fingerprint", "status", "type"]));
  });

  test("parallel clones of two templates both run, also on one node; a second clone of one template is refused at once", async () => {
    sim.setLatency({ cloneLinked: 60_000 });
    try {
      const [a, b, c] = await Promise.all([clone("pve2", 9001), clone("pve2", 9002), clone("pve", 9000)]);
      assert.deepEqual([a.status, b.status, c.status], [200, 200, 200]);
      assert.match(a.data, /^UPID:pve2:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:vzclone:9001:pve-runners@pve!listener:$/);
      assert.match(c.data, /^UPID:pve:/);
      const again = await clone("pve2", 9001);
      assert.deepEqual([again.status, again.reason], [500, "CT is locked (disk)"]);
      assert.deepEqual(sim.containers().filter((x) => [9000, 9001, 9002].includes(x.vmid)).map((x) => x.lock), ["disk", "disk", "disk"]);
      // Tasks live on their node: another node does not know the UPID.
      const elsewhere = await pve.runners.get(`/nodes/pve/tasks/${encodeURIComponent(a.data)}/status`);
      assert.deepEqual([elsewhere.status, elsewhere.body?.errors], [400, { upid: "no such task" }]);
      assert.deepEqual(await Promise.all([pve.runners.on("pve2").waitTask(a.data), pve.runners.on("pve2").waitTask(b.data), pve.runners.on("pve").waitTask(c.data)]), ["OK", "OK", "OK"]);
    } finally {
      sim.setLatency({ cloneLinked: 5_000 });
    }
    const created = sim.containers().filter((x) => x.vmid >= nextId - 4 && x.vmid < nextId);
    assert.deepEqual(created.map((x) => [x.node, x.config.rootfs.split(",")[0].replace(/\/vm-\d+-disk-0$/, "")]), [
      ["pve2", "local-lvm:base-9001-disk-0"],
      ["pve2", "local-lvm:base-9002-disk-0"],
      ["pve", "local-lvm:base-9000-disk-0"],
    ]);
    assert.deepEqual(
      (await pve.root.get<Row[]>("/nodes/pve2/tasks", { typefilter: "vzclone" })).data.map((t) => t.node),
      Array(2).fill("pve2"),
      "each node lists its own tasks",
    );
  });

  test("VMIDs are unique cluster-wide: a clone onto an id used on another node fails, nextid skips it", async () => {
    const onPve2 = await cloned("pve2", 9001);
    const r = await clone("pve", 9000, { newid: onPve2 });
    assert.deepEqual([r.status, r.reason], [500, `CT ${onPve2} already exists on node 'pve2'`]);
    assert.equal(sim.container(9000)?.lock, null, "the source lock is released");
    const taken = await pve.runners.get("/cluster/nextid", { vmid: 9002 });
    assert.deepEqual([taken.status, taken.body?.errors], [400, { vmid: "VM 9002 already exists" }]);
    const ids = new Set(sim.containers().map((c) => c.vmid));
    const next = Number((await pve.runners.get<string>("/cluster/nextid")).data);
    assert.ok(!ids.has(next));
    for (let i = 100; i < next; i++) assert.ok(ids.has(i), `${i} is below nextid and taken`);
  });

  test("clone `target`: another node is refused with local storage (linked or full); the own node or localhost is fine", async () => {
    const linked = await clone("pve", 9000, { target: "pve2" });
    assert.deepEqual([linked.status, linked.reason, linked.body?.message], [500, "can't clone CT to node 'pve2' (CT uses local storage)", "can't clone CT to node 'pve2' (CT uses local storage)\n"]);
    assert.equal(sim.container(nextId - 1), undefined, "no target config left behind");
    assert.equal(sim.container(9000)?.lock, null, "the template is unlocked again");
    const full = await clone("pve", 9000, { target: "pve2", full: 1 });
    assert.deepEqual([full.status, full.reason], [500, "can't clone CT to node 'pve2' (CT uses local storage)"]);
    const withStorage = await clone("pve", 9000, { target: "pve2", full: 1, storage: "local-lvm" });
    assert.deepEqual([withStorage.status, withStorage.reason], [500, "can't clone to non-shared storage 'local-lvm'"]);
    const nowhere = await clone("pve", 9000, { target: "pve9" });
    assert.deepEqual([nowhere.status, nowhere.reason], [500, "no such cluster node 'pve9'"]);
    for (const target of ["pve2", "localhost"]) {
      const same = await clone("pve2", 9001, { target });
      assert.equal(same.status, 200, same.reason);
      assert.equal(await pve.runners.on("pve2").waitTask(same.data), "OK");
      assert.equal(sim.container(nextId - 1)?.node, "pve2");
    }
  });

  test("per-node stats: GET /nodes and /cluster/resources?type=node follow each node's running containers, after pvestatd's lag", async () => {
    sim.setLatency({ statsInterval: 3_600_000, rrdExpire: 36_000_000 }); // samples only when asked
    try {
      sim.sampleStats();
      const nodeRow = async (name: string) => (await resources("node")).find((n) => n.node === name)!;
      const before2 = await nodeRow("pve2");
      const before1 = await nodeRow("pve");
      assert.deepEqual([before2.type, before2.id, before2.status, before2.maxcpu, before2.maxmem], ["node", "node/pve2", "online", 8, 64 * GiB]);
      assert.equal(before2.ssl_fingerprint, undefined, "not part of /cluster/resources");
      const big = await cloned("pve2", 9001);
      assert.equal((await pve.root.put(pve.root.on("pve2").ct(big, "/config"), { memory: 8192, cores: 4 })).status, 200);
      assert.equal(await pve.root.on("pve2").task("POST", pve.root.on("pve2").ct(big, "/status/start")), "OK");
      assert.equal((await nodeRow("pve2")).mem, before2.mem, "still the old sample");
      sim.sampleStats();
      const after2 = await nodeRow("pve2");
      assert.equal((after2.mem as number) - (before2.mem as number), 8192 * MiB, "a running container weighs its configured memory");
      assert.ok((after2.cpu as number) > (before2.cpu as number));
      assert.equal((await nodeRow("pve")).mem, before1.mem, "other nodes are not affected");
      const listed = (await pve.root.get<Row[]>("/nodes")).data.find((n) => n.node === "pve2")!;
      assert.deepEqual([listed.mem, listed.maxmem, listed.maxcpu], [after2.mem, 64 * GiB, 8]);
      const vm = (await resources("vm")).find((e) => e.vmid === big)!;
      assert.deepEqual([vm.node, vm.status, vm.maxmem], ["pve2", "running", 8192 * MiB]);
      assert.equal(await pve.root.on("pve2").task("POST", pve.root.on("pve2").ct(big, "/status/stop")), "OK");
      sim.sampleStats();
      assert.equal((await nodeRow("pve2")).mem, before2.mem);
    } finally {
      sim.setLatency({ statsInterval: DEFAULT_LATENCY.statsInterval, rrdExpire: DEFAULT_LATENCY.rrdExpire });
    }
  });

  test("an offline node: 595 No route to host for its API, 'offline' in /nodes and /cluster/resources, its guests 'unknown' once its RRD data expires", async () => {
    const vmid = await cloned("pve2", 9001);
    sim.sampleStats();
    sim.setNodeOnline("pve2", false);
    const t0 = Date.now();
    const r = await pve.runners.get("/nodes/pve2/lxc");
    assert.deepEqual([r.status, r.reason, r.body], [595, "No route to host", null]);
    assert.ok(Date.now() - t0 >= 3_000 * SCALE * 0.9, "after the ARP timeout");
    for (const [method, path] of [["GET", `/nodes/pve2/lxc/${vmid}/status/current`], ["POST", `/nodes/pve2/lxc/${vmid}/status/start`], ["POST", "/nodes/pve2/lxc/9001/clone"], ["GET", "/nodes/pve2/tasks"], ["GET", "/nodes/pve2/storage"]] as const) {
      assert.equal((await pve.root.call(method, path)).status, 595, `${method} ${path} (even without its required parameters: they are checked on the node)`);
    }
    assert.equal((await pve.root.call("GET", "/nodes/pve2/lxc", {}, { auth: "PVEAPIToken=nobody@pve!x=y" })).status, 401, "authentication comes first");
    assert.equal((await pve.runners.get("/nodes/pve2/qemu")).status, 501, "an unknown method is not proxied");
    assert.equal((await pve.root.as(SIM_TOKENS.auditor).put(`/nodes/pve2/lxc/${vmid}/config`, { cores: 1 })).status, 403, "permissions are checked before proxying");

    const row = async (type: string, match: (e: Row) => boolean) => (await resources(type)).find(match)!;
    const node = await row("node", (n) => n.node === "pve2");
    assert.equal(node.status, "offline");
    for (const k of ["cpu", "mem", "uptime", "disk"]) assert.equal(node[k], undefined, `no ${k} while offline`);
    assert.deepEqual([node.maxcpu, node.maxmem], [8, 64 * GiB], "the max values live as long as the RRD entry");
    assert.equal((await row("vm", (e) => e.vmid === vmid)).status, "stopped", "the last sample, until it expires");
    assert.equal((await pve.root.get<Row[]>("/nodes")).data.find((n) => n.node === "pve2")?.status, "offline");
    assert.equal((await row("node", (n) => n.node === "pve")).status, "online");

    sim.setLatency({ rrdExpire: 20_000 });
    try {
      await new Promise((res) => setTimeout(res, 30_000 * SCALE));
      const vm = await row("vm", (e) => e.vmid === vmid);
      assert.deepEqual(vm, { id: `lxc/${vmid}`, vmid, node: "pve2", type: "lxc", status: "unknown", tags: `pve-runners-template;runner-${pinnedRunnerVersion()}`, pool: "ci" });
      assert.deepEqual(await row("node", (n) => n.node === "pve2"), { id: "node/pve2", node: "pve2", type: "node", status: "offline" });
      const st = await row("storage", (s) => s.id === "storage/pve2/local-lvm");
      assert.deepEqual([st.status, st.disk], ["unknown", undefined]);
      assert.equal((await row("node", (n) => n.node === "pve")).status, "online", "online nodes keep reporting");
    } finally {
      sim.setLatency({ rrdExpire: DEFAULT_LATENCY.rrdExpire });
    }
    sim.setNodeOnline("pve2", true);
    assert.equal((await pve.runners.get("/nodes/pve2/lxc")).status, 200);
  });

  test("an offline node's tasks stand still and resume when it is back", async () => {
    const newid = nextId;
    sim.setLatency({ cloneLinked: 20_000, jitter: 0 });
    const r = await clone("pve2", 9002);
    sim.setLatency({ cloneLinked: DEFAULT_LATENCY.cloneLinked, jitter: DEFAULT_LATENCY.jitter });
    assert.equal(r.status, 200);
    sim.setNodeOnline("pve2", false);
    await new Promise((res) => setTimeout(res, 60_000 * SCALE)); // 3× the clone's latency
    assert.equal(sim.tasks().find((t) => t.upid === r.data)?.status, "running");
    assert.equal(sim.container(newid)?.lock, "create");
    assert.equal(sim.container(9002)?.lock, "disk");
    sim.setNodeOnline("pve2", true);
    assert.equal(await pve.runners.on("pve2").waitTask(r.data), "OK");
    assert.equal(sim.container(newid)?.lock, null);
    assert.equal(sim.container(newid)?.node, "pve2");
  });

  test("quorum: with half the nodes or more offline, clone, start and config writes fail on the nodes still up", async () => {
    const vmid = await cloned("pve", 9000);
    sim.setNodeOnline("pve2", false);
    assert.equal((await pve.runners.put(pve.runners.ct(vmid, "/config"), { cores: 1 })).status, 200, "one of three offline: still quorate");
    sim.setNodeOnline("pve3", false);
    const c = await clone("pve", 9000);
    assert.deepEqual([c.status, c.reason], [500, "cluster not ready - no quorum?"]);
    assert.equal(sim.container(9000)?.lock, null);
    const s = await pve.runners.post(pve.runners.ct(vmid, "/status/start"));
    assert.deepEqual([s.status, s.reason], [500, "cluster not ready - no quorum?"]);
    const w = await pve.runners.put(pve.runners.ct(vmid, "/config"), { cores: 2 });
    assert.equal(w.status, 500);
    assert.match(w.reason, new RegExp(`^unable to open file '/etc/pve/nodes/pve/lxc/${vmid}\\.conf\\.tmp\\.\\d+' - Permission denied$`));
    assert.equal((await pve.runners.get(pve.runners.ct(vmid, "/config"))).status, 200, "reading works without quorum");
    assert.equal((await pve.root.get<{ quorate: boolean }>("/_sim/state")).data.quorate, false);
    sim.setNodeOnline("pve3", true);
    assert.equal(await pve.runners.task("POST", pve.runners.ct(vmid, "/status/start")), "OK");
    assert.equal(await pve.runners.task("POST", pve.runners.ct(vmid, "/status/stop")), "OK");
  });

  test("control API: node online state over HTTP, root token only", async () => {
    const down = await pve.root.call("POST", "/_sim/nodes/pve3/online", { online: false } as never, { json: true });
    assert.equal(down.status, 200);
    assert.deepEqual((down.data as Array<{ name: string; online: boolean }>).map((n) => [n.name, n.online]), [["pve", true], ["pve2", true], ["pve3", false]]);
    assert.equal((await pve.root.get("/nodes/pve3/lxc")).status, 595);
    assert.equal((await pve.runners.call("POST", "/_sim/nodes/pve3/online", { online: true } as never, { json: true })).status, 403);
    const unknown = await pve.root.call("POST", "/_sim/nodes/pve9/online", { online: true } as never, { json: true });
    assert.deepEqual([unknown.status, unknown.reason], [400, "no such cluster node 'pve9'"]);
    assert.equal((await pve.root.call("POST", "/_sim/nodes/pve3/online", { online: "yes" } as never, { json: true })).status, 400);
    assert.equal((await pve.root.call("POST", "/_sim/nodes/pve3/online", { online: true } as never, { json: true })).status, 200);
    assert.deepEqual((await pve.root.get<Array<{ online: boolean }>>("/_sim/nodes")).data.map((n) => n.online), [true, true, true]);
  });

  test("the least-privilege token runs a runner's whole life on a second node", async () => {
    const c = pve.runners.on("pve2");
    const newid = Number((await c.get<string>("/cluster/nextid")).data);
    const upid = (await c.post<string>(c.ct(9001, "/clone"), { newid, full: 0, hostname: `runner-q${newid}`, pool: "ci" })).data;
    assert.equal(await c.waitTask(upid), "OK");
    assert.equal((await c.get<Row>(c.ct(newid, "/status/current"))).data.status, "stopped");
    const put = await c.put(c.ct(newid, "/config"), { onboot: 0, features: "keyctl=1,nesting=1", cores: 2, memory: 2048, swap: 512, net0: "name=eth0,bridge=vmbr1,firewall=0,ip=dhcp,tag=30", tags: "pve-runners;pve-runners-q" });
    assert.equal(put.status, 200, put.reason);
    assert.equal(await c.task("POST", c.ct(newid, "/status/start")), "OK");
    assert.equal((await c.get<Row[]>("/nodes/pve2/lxc")).data.find((x) => x.vmid === newid)?.status, "running");
    assert.equal(await c.task("POST", c.ct(newid, "/status/shutdown"), { forceStop: 1, timeout: 10 }), "OK");
    assert.equal(await c.task("DELETE", c.ct(newid)), "OK");
    assert.equal(sim.container(newid), undefined);
    // Others' tasks on that node need Sys.Audit on /nodes/pve2, which the token does not have.
    const rootTask = (await pve.root.post<string>(pve.root.on("pve2").ct(9002, "/clone"), { newid: nextId++ })).data;
    const peek = await c.get(`/nodes/pve2/tasks/${encodeURIComponent(rootTask)}/status`);
    assert.deepEqual([peek.status, peek.reason], [403, "Permission check failed (/nodes/pve2, Sys.Audit)"]);
    assert.equal(await pve.root.on("pve2").waitTask(rootTask), "OK");
  });

  test("exec and powerOff act on a node's own containers; the pct shim sees only its node's", async () => {
    const vmid = await cloned("pve2", 9001);
    assert.equal(await pve.root.on("pve2").task("POST", pve.root.on("pve2").ct(vmid, "/status/start")), "OK");
    assert.deepEqual(await sim.exec(vmid, ["true"], "", "pve"), { exitcode: 255, stdout: "", stderr: `Configuration file 'nodes/pve/lxc/${vmid}.conf' does not exist\n` });
    assert.equal((await sim.exec(vmid, ["true"], "", "pve2")).exitcode, 0);
    assert.equal((await sim.exec(vmid, ["true"])).exitcode, 0, "default: the container's own node");

    const dir = await mkdtemp(join(tmpdir(), "pve-cluster-pct-"));
    try {
      const token = `${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}`;
      const pct = async (node: string, ...args: string[]) => {
        const bin = await installPctShim(join(dir, node), { url: sim.url, token, node });
        return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
          const child = execFile(bin, args, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
          child.stdin?.end();
        });
      };
      const here = await pct("pve2", "exec", String(vmid), "--", "/bin/sh", "-c", "echo hello");
      assert.deepEqual([here.code, here.stdout], [0, "hello\n"]);
      assert.match((await pct("pve2", "config", String(vmid))).stdout, new RegExp(`^hostname: runner-c${vmid}$`, "m"));
      const there = await pct("pve", "exec", String(vmid), "--", "true");
      assert.deepEqual([there.code, there.stderr], [255, `Configuration file 'nodes/pve/lxc/${vmid}.conf' does not exist\n`]);
      assert.equal((await pct("pve", "config", String(vmid))).code, 255);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    assert.throws(() => sim.powerOff(vmid, "pve"), /Configuration file 'nodes\/pve\/lxc\/\d+\.conf' does not exist/);
    sim.powerOff(vmid, "pve2");
    assert.equal(sim.container(vmid)?.status, "stopped");
    assert.equal(sim.container(vmid)?.node, "pve2");
  });
});

describe("PVE simulator: cluster through terraform and the provider stand-in", () => {
  const world = new ProviderSimFixture("pve-cluster-tf-", { timeScale: 0.02, nodes: [{ name: "pve" }, { name: "pve2" }], templates: [{ node: "pve", vmid: 9000 }, { node: "pve2", vmid: 9001 }] });
  const { sim } = world;

  function terraform(cwd: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const env = { ...world.terraformEnv(50), TF_INPUT: "0" };
    return new Promise((resolve) => {
      execFile("terraform", args, { cwd, env, maxBuffer: 32 << 20 }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    });
  }

  async function stack(name: string, node: string, templateVmid: number, templateNode?: string): Promise<string> {
    const { workingDir } = synthRunnerStack(join(world.root, name), runnerStackSpec({ runnerName: name, endpoint: `${world.simUrl}/`, node, templateNode, templateVmid }));
    const init = await terraform(workingDir, "init", "-input=false", "-no-color");
    assert.equal(init.code, 0, init.stderr);
    return workingDir;
  }

  test("a runner on the second node: cloned from that node's template, started, read, destroyed there", async () => {
    const wd = await stack("runner-n2", "pve2", 9001);
    const applied = await terraform(wd, "apply", "-auto-approve", "-input=false", "-no-color");
    assert.equal(applied.code, 0, applied.stdout + applied.stderr);
    const ct = sim.containers().find((c) => c.name === "runner-n2");
    assert.ok(ct);
    assert.deepEqual([ct.node, ct.status, ct.pool], ["pve2", "running", "ci"]);
    assert.match(ct.config.rootfs, /^local-lvm:base-9001-disk-0\/vm-\d+-disk-0,/);
    assert.ok(sim.tasks().filter((t) => t.id === String(ct.vmid) || t.id === "9001").every((t) => t.node === "pve2"));
    const plan = await terraform(wd, "plan", "-detailed-exitcode", "-input=false", "-no-color");
    assert.equal(plan.code, 0, plan.stdout + plan.stderr);
    const destroyed = await terraform(wd, "destroy", "-auto-approve", "-input=false", "-no-color");
    assert.equal(destroyed.code, 0, destroyed.stdout + destroyed.stderr);
    assert.equal(sim.container(ct.vmid), undefined);
  });

  test("node_name ≠ clone.node_name: bpg sends `target`, PVE refuses it (local storage), retried as a 5xx", async () => {
    const wd = await stack("runner-x2", "pve2", 9000, "pve");
    const applied = await terraform(wd, "apply", "-auto-approve", "-input=false", "-no-color");
    assert.equal(applied.code, 1);
    const out = (applied.stdout + applied.stderr).replace(/\s*\n(?!#)/g, " ");
    assert.match(out, /Error: Container clone/);
    assert.match(out, /#1: error cloning container: received an HTTP 500 response - Reason: can't clone CT to node 'pve2' \(CT uses local storage\)/);
    assert.match(out, /#3: error cloning container/);
    assert.equal(sim.containers().find((c) => c.name === "runner-x2"), undefined);
    assert.equal(sim.container(9000)?.lock, null);
  });
});
