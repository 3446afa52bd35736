// The PVE simulator's API surface: envelopes and error shapes as pveproxy sends them, auth,
// config updates and their refusals, power state errors, destroy rules, nextid, tasks and the
// lag of /cluster/resources.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { PveSim, SIM_TEMPLATE_VMID, SIM_TOKENS } from "../../sim/pve/index.js";
import { PveSimClient } from "../../sim/pve/client.js";
import { pinnedRunnerVersion } from "../../stacks/runner-pin.js";

const SCALE = 0.01;

describe("PVE simulator API", () => {
  const sim = new PveSim({ timeScale: SCALE, guest: { bootMs: 60_000 } });
  let root: PveSimClient;
  let nextId = 200;

  before(async () => {
    root = new PveSimClient(await sim.start(0, "127.0.0.1"));
  });
  after(() => sim.stop());
  beforeEach(() => sim.clearFaults());

  /** A linked clone of the template, in pool ci, lock released. */
  async function cloneCt(params: Record<string, string | number> = {}): Promise<number> {
    const newid = nextId++;
    assert.equal(await root.task("POST", root.ct(SIM_TEMPLATE_VMID, "/clone"), { newid, hostname: `runner-t${newid}`, pool: "ci", ...params }), "OK");
    return newid;
  }

  test("success envelope, version and nodes", async () => {
    const v = await root.get<{ version: string; release: string }>("/version");
    assert.equal(v.status, 200);
    assert.deepEqual(Object.keys(v.body ?? {}), ["data"]);
    assert.match(v.data.version, /^9\.\d+\.\d+$/);
    const nodes = await root.get<Array<{ node: string; status: string }>>("/nodes");
    assert.deepEqual(nodes.data.map((n) => [n.node, n.status]), [["pve", "online"]]);
  });

  test("401: no ticket / bad token, delayed (3 s scaled), status line only", async () => {
    const t0 = Date.now();
    const none = await root.call("GET", "/version", {}, { auth: null });
    assert.deepEqual([none.status, none.reason, none.body], [401, "No ticket", null]);
    const bad = await root.call("GET", "/version", {}, { auth: `PVEAPIToken=${SIM_TOKENS.runners.id}=wrong-secret` });
    assert.deepEqual([bad.status, bad.reason, bad.body], [401, "Authentication failed!", null]);
    assert.ok(Date.now() - t0 >= 2 * 3000 * SCALE * 0.9, "each failure waits the scaled 3 s");
    const spaced = await root.call("GET", "/version", {}, { auth: `PVEAPIToken ${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}` });
    assert.equal(spaced.status, 200, "the token may follow the name after a space");
  });

  test("501 for unknown methods and paths; 500 'does not exist' for an unknown vmid", async () => {
    const post = await root.post(root.ct(SIM_TEMPLATE_VMID, "/config"), { cores: 2 });
    assert.equal(post.status, 501);
    assert.equal(post.reason, `Method 'POST /nodes/pve/lxc/${SIM_TEMPLATE_VMID}/config' not implemented`);
    assert.deepEqual(post.body, { data: null, message: `Method 'POST /nodes/pve/lxc/${SIM_TEMPLATE_VMID}/config' not implemented` });
    assert.equal((await root.get("/nodes/pve/qemu")).status, 501);
    const missing = await root.get(root.ct(4242, "/config"));
    assert.equal(missing.status, 500);
    assert.equal(missing.reason, "Configuration file 'nodes/pve/lxc/4242.conf' does not exist");
    assert.deepEqual(missing.body, { data: null, message: "Configuration file 'nodes/pve/lxc/4242.conf' does not exist\n" });
    assert.equal((await root.get(root.ct(4242, "/status/current"))).status, 500);
    assert.equal((await root.delete(root.ct(4242))).reason, "Configuration file 'nodes/pve/lxc/4242.conf' does not exist");
  });

  test("400 parameter verification: every bad parameter reported, unknown ones refused", async () => {
    const r = await root.put(root.ct(SIM_TEMPLATE_VMID, "/config"), { cores: "many", ostemplate: "local:vztmpl/x.tar.zst", password: "hunter2", "lxc.apparmor.profile": "unconfined" });
    assert.equal(r.status, 400);
    assert.equal(r.reason, "Parameter verification failed.");
    assert.equal(r.body?.message, "Parameter verification failed.\n");
    assert.equal(r.body?.data, null);
    assert.deepEqual(Object.keys(r.body?.errors ?? {}).sort(), ["cores", "lxc.apparmor.profile", "ostemplate", "password"]);
    assert.equal(r.body?.errors?.cores, "type check ('integer') failed - got 'many'");
    assert.equal(r.body?.errors?.password, "property is not defined in schema and the schema does not allow additional properties");

    const net = await root.put(root.ct(SIM_TEMPLATE_VMID, "/config"), { net1: "bridge=vmbr1,tag=5000" });
    assert.equal(net.status, 400);
    assert.match(net.body?.errors?.net1 ?? "", /^invalid format - format error\n/);
    assert.match(net.body?.errors?.net1 ?? "", /net1\.tag: value must have a maximum value of 4094/);
    assert.match(net.body?.errors?.net1 ?? "", /net1\.name: property is missing and it is not optional/);
    const feat = await root.put(root.ct(SIM_TEMPLATE_VMID, "/config"), { features: "nesting=1,docker=1" });
    assert.match(feat.body?.errors?.features ?? "", /features\.docker: property is not defined in schema/);
    const clone = await root.post(root.ct(SIM_TEMPLATE_VMID, "/clone"), { hostname: "x" });
    assert.deepEqual(clone.body?.errors, { newid: "property is missing and it is not optional" });
    const ids = await root.post(root.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: 42 });
    assert.deepEqual(ids.body?.errors, { newid: "value must have a minimum value of 100" });
  });

  test("PUT config: synchronous null; netN gets a MAC and type; tags normalised; delete=", async () => {
    const vmid = await cloneCt();
    const r = await root.put(root.ct(vmid, "/config"), { cores: 4, memory: 4096, swap: 0, net0: "name=eth0,bridge=vmbr1,firewall=0,ip=dhcp,tag=30", tags: "Pve-Runners;pve-runners-x,pve-runners", onboot: 0 });
    assert.deepEqual([r.status, r.body], [200, { data: null }]);
    const conf = (await root.get<Record<string, string | number>>(root.ct(vmid, "/config"))).data;
    assert.equal(conf.cores, 4);
    assert.equal(conf.memory, 4096);
    assert.equal(conf.onboot, 0);
    assert.match(String(conf.net0), /^name=eth0,bridge=vmbr1,firewall=0,hwaddr=BC:24:11(:[0-9A-F]{2}){3},ip=dhcp,tag=30,type=veth$/);
    assert.equal(conf.tags, "pve-runners;pve-runners-x");
    assert.match(String(conf.digest), /^[0-9a-f]{40}$/);
    assert.equal((await root.put(root.ct(vmid, "/config"), { delete: "onboot,swap" })).status, 200);
    const after = (await root.get<Record<string, unknown>>(root.ct(vmid, "/config"))).data;
    assert.ok(!("onboot" in after) && !("swap" in after));
    const req = await root.put(root.ct(vmid, "/config"), { delete: "memory" });
    assert.deepEqual([req.status, req.reason], [500, "unable to delete required option 'memory'"]);
    const stale = await root.put(root.ct(vmid, "/config"), { cores: 1, digest: String(conf.digest) });
    assert.deepEqual([stale.status, stale.reason], [500, "detected modified configuration - file changed by other user? Try again."]);
  });

  test("PUT config refusals: unprivileged is read-only, locked CTs refuse, env needs the right to read it", async () => {
    const vmid = await cloneCt();
    const ro = await root.put(root.ct(vmid, "/config"), { unprivileged: 0 });
    assert.deepEqual([ro.status, ro.reason], [500, "unable to modify read-only option: 'unprivileged'"]);
    // While the template is cloned it carries lock 'disk': its config cannot change.
    const upid = (await root.post<string>(root.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: nextId++, pool: "ci" })).data;
    const locked = await root.put(root.ct(SIM_TEMPLATE_VMID, "/config"), { description: "x" });
    assert.deepEqual([locked.status, locked.reason, locked.body?.message], [500, "CT is locked (disk)", "CT is locked (disk)\n"]);
    assert.equal(await root.waitTask(upid), "OK");
    const env = await root.put(root.ct(vmid, "/config"), { env: "ACTIONS_RUNNER_INPUT_JITCONFIG=abc\0OTHER=1" });
    assert.equal(env.status, 200);
    assert.equal((await root.get<Record<string, string>>(root.ct(vmid, "/config"))).data.env, "ACTIONS_RUNNER_INPUT_JITCONFIG=abc\0OTHER=1");
    const auditor = root.as(SIM_TOKENS.auditor);
    const seen = (await auditor.get<Record<string, string>>(auditor.ct(vmid, "/config"))).data;
    assert.equal(seen.hostname, `runner-t${vmid}`, "the auditor reads the config");
    assert.ok(!("env" in seen), "but not the env option (needs VM.Config.Options)");
    assert.equal((await root.put(root.ct(vmid, "/config"), { env: "BAD KEY=1" })).status, 400);
    assert.deepEqual(sim.container(vmid)?.envKeys, ["ACTIONS_RUNNER_INPUT_JITCONFIG", "OTHER"], "in-process views show names only");
  });

  test("start/stop/shutdown: sync errors, UPIDs, in-task errors", async () => {
    const vmid = await cloneCt();
    const stop = await root.post(root.ct(vmid, "/status/stop"));
    assert.deepEqual([stop.status, stop.reason], [500, `CT ${vmid} not running`]);
    assert.equal((await root.post(root.ct(vmid, "/status/shutdown"))).reason, `CT ${vmid} not running`);
    const start = await root.post<string>(root.ct(vmid, "/status/start"));
    assert.equal(start.status, 200);
    assert.match(start.data, new RegExp(`^UPID:pve:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:vzstart:${vmid}:root@pam!sim:$`));
    assert.equal(await root.waitTask(start.data), "OK");
    const st = (await root.get<Record<string, unknown>>(root.ct(vmid, "/status/current"))).data;
    assert.equal(st.status, "running");
    assert.equal(st.vmid, vmid);
    assert.equal(typeof st.pid, "number");
    assert.deepEqual(st.ha, { managed: 0 });
    const again = await root.post(root.ct(vmid, "/status/start"));
    assert.deepEqual([again.status, again.reason], [500, `CT ${vmid} already running`]);
    assert.equal(await root.task("POST", root.ct(vmid, "/status/shutdown")), "OK");
    assert.equal((await root.get<{ status: string }>(root.ct(vmid, "/status/current"))).data.status, "stopped");
    // The template cannot start: the task fails, not the call.
    const tpl = await root.post<string>(root.ct(SIM_TEMPLATE_VMID, "/status/start"));
    assert.equal(tpl.status, 200);
    assert.equal(await root.waitTask(tpl.data), "you can't start a CT if it's a template");
    const log = await root.get<Array<{ n: number; t: string }>>(`/nodes/pve/tasks/${encodeURIComponent(tpl.data)}/log`);
    assert.deepEqual(log.data.at(-1), { n: log.body?.total, t: "TASK ERROR: you can't start a CT if it's a template" });
    const skip = await root.post(root.ct(vmid, "/status/start"), { skiplock: 1 });
    assert.deepEqual(skip.body?.errors, { skiplock: "Only root may use this option." }, "an API token is never root@pam");
  });

  test("DELETE: refused while running or locked, works after a stop; removes pool membership", async () => {
    const vmid = await cloneCt();
    assert.equal(await root.task("POST", root.ct(vmid, "/status/start")), "OK");
    const del = await root.delete(root.ct(vmid), { purge: 1 });
    assert.deepEqual([del.status, del.reason], [500, `unable to destroy CT ${vmid} - container is running`]);
    assert.equal(await root.task("POST", root.ct(vmid, "/status/stop")), "OK");
    const upid = (await root.delete<string>(root.ct(vmid), { purge: 1, "destroy-unreferenced-disks": 1 })).data;
    assert.match(upid, new RegExp(`:vzdestroy:${vmid}:`));
    assert.equal(await root.waitTask(upid), "OK");
    assert.equal((await root.get(root.ct(vmid, "/config"))).status, 500);
    const pool = (await root.get<Array<{ members: Array<{ vmid?: number }> }>>("/pools", { poolid: "ci" })).data[0];
    assert.ok(!pool.members.some((m) => m.vmid === vmid));
    // force: stops it inside the task (with a warning).
    const forced = await cloneCt();
    assert.equal(await root.task("POST", root.ct(forced, "/status/start")), "OK");
    assert.equal(await root.task("DELETE", root.ct(forced), { force: 1 }), "WARNINGS: 1");
    assert.equal(sim.container(forced), undefined);
  });

  test("destroying the template with linked clones fails in the task and keeps it", async () => {
    await cloneCt();
    const upid = (await root.delete<string>(root.ct(SIM_TEMPLATE_VMID))).data;
    assert.equal(await root.waitTask(upid), "base volume 'base-9000-disk-0' is still in use by linked clones");
    const tpl = sim.container(SIM_TEMPLATE_VMID);
    assert.equal(tpl?.template, true);
    assert.equal(tpl?.lock, null);
  });

  test("nextid: lowest free id as a string; ?vmid= asserts it is free; nothing is reserved", async () => {
    const a = await root.get<string>("/cluster/nextid");
    assert.equal(typeof a.data, "string");
    assert.equal(a.data, "100");
    assert.equal((await root.get<string>("/cluster/nextid")).data, "100", "asking again gives the same id");
    assert.equal((await root.get<string>("/cluster/nextid", { vmid: 150 })).data, "150");
    const taken = await root.get("/cluster/nextid", { vmid: SIM_TEMPLATE_VMID });
    assert.deepEqual([taken.status, taken.body?.errors], [400, { vmid: `VM ${SIM_TEMPLATE_VMID} already exists` }]);
  });

  test("tasks: real UPID format, owner/token split, 400 for a bad UPID", async () => {
    const runners = root.as(SIM_TOKENS.runners);
    const upid = (await runners.post<string>(runners.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: nextId++, pool: "ci" })).data;
    assert.match(upid, /^UPID:pve:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:vzclone:9000:pve-runners@pve!listener:$/);
    const running = (await runners.get<Record<string, unknown>>(`/nodes/pve/tasks/${encodeURIComponent(upid)}/status`)).data;
    assert.deepEqual([running.status, running.type, running.id, running.user, running.tokenid, running.exitstatus], ["running", "vzclone", "9000", "pve-runners@pve", "listener", undefined]);
    assert.equal(await runners.waitTask(upid), "OK");
    const other = await root.as(SIM_TOKENS.auditor).get(`/nodes/pve/tasks/${encodeURIComponent(upid)}/status`);
    assert.deepEqual([other.status, other.reason], [403, "Permission check failed (/nodes/pve, Sys.Audit)"]);
    const bad = await root.get("/nodes/pve/tasks/not-a-upid/status");
    assert.deepEqual([bad.status, bad.body?.errors], [400, { upid: "unable to parse worker upid" }]);
    const unknown = await root.get(`/nodes/pve/tasks/${encodeURIComponent("UPID:pve:00000001:00000002:00000003:vzstart:1:root@pam:")}/status`);
    assert.deepEqual(unknown.body?.errors, { upid: "no such task" });
  });

  test("/cluster/resources lags behind status/current until pvestatd samples", async () => {
    sim.setLatency({ statsInterval: 60_000 }); // no sample during this test unless we ask for one
    try {
      const vmid = await cloneCt();
      const entry = async () => (await root.get<Array<Record<string, unknown>>>("/cluster/resources", { type: "vm" })).data.find((e) => e.vmid === vmid);
      const fresh = await entry();
      assert.deepEqual(fresh, { id: `lxc/${vmid}`, vmid, node: "pve", type: "lxc", status: "unknown", tags: `pve-runners-template;runner-${pinnedRunnerVersion()}`, pool: "ci" });
      sim.sampleStats();
      assert.equal((await entry())?.status, "stopped");
      assert.equal(await root.task("POST", root.ct(vmid, "/status/start")), "OK");
      assert.equal((await root.get<{ status: string }>(root.ct(vmid, "/status/current"))).data.status, "running");
      assert.equal((await entry())?.status, "stopped", "still the old sample");
      sim.sampleStats();
      assert.equal((await entry())?.status, "running");
      assert.equal((await entry())?.name, `runner-t${vmid}`);
      await root.task("POST", root.ct(vmid, "/status/stop"));
    } finally {
      sim.setLatency({ statsInterval: 10_000 });
    }
    // Only guests with VM.Audit are listed: one outside pool ci is invisible to the runners token.
    const outside = nextId++;
    assert.equal(await root.task("POST", root.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: outside }), "OK");
    const vmids = async (c: PveSimClient) => (await c.get<Array<{ vmid?: number }>>("/cluster/resources", { type: "vm" })).data.map((e) => e.vmid);
    assert.ok(!(await vmids(root.as(SIM_TOKENS.runners))).includes(outside));
    assert.ok((await vmids(root.as(SIM_TOKENS.auditor))).includes(outside));
    assert.ok((await vmids(root.as(SIM_TOKENS.runners))).includes(SIM_TEMPLATE_VMID));
  });

  test("storage and pools as seen by the least-privilege token", async () => {
    const runners = root.as(SIM_TOKENS.runners);
    const st = (await runners.get<Array<{ storage: string; content: string }>>("/nodes/pve/storage")).data;
    assert.deepEqual(st.map((s) => s.storage), ["local-lvm"], "only storages it may allocate on");
    assert.deepEqual((await root.get<Array<{ storage: string }>>("/nodes/pve/storage", { content: "vztmpl" })).data.map((s) => s.storage), ["local"]);
    assert.deepEqual((await runners.get("/pools")).data, [], "no Pool.Audit: the list is empty");
    const members = (await runners.get<Array<{ poolid: string; members: Array<{ id: string }> }>>("/pools", { poolid: "ci" })).data[0];
    assert.equal(members.poolid, "ci");
    assert.ok(members.members.some((m) => m.id === "lxc/9000") && members.members.some((m) => m.id === "storage/pve/local-lvm"));
    const direct = await runners.get("/pools/ci");
    assert.deepEqual([direct.status, direct.reason], [403, "Permission check failed (/pool/ci, Pool.Audit)"]);
    assert.equal((await root.get<{ members: unknown[] }>("/pools/ci")).data.members.length > 1, true);
  });

  test("JSON bodies work like form bodies; a wrong node is a hostname lookup error", async () => {
    const vmid = await cloneCt();
    const r = await root.call("PUT", root.ct(vmid, "/config"), { cores: 3, onboot: true }, { json: true });
    assert.equal(r.status, 200);
    const conf = (await root.get<Record<string, number>>(root.ct(vmid, "/config"))).data;
    assert.deepEqual([conf.cores, conf.onboot], [3, 1]);
    const wrong = await root.get(`/nodes/pve2/lxc/${vmid}/config`);
    assert.deepEqual([wrong.status, wrong.reason], [500, "hostname lookup 'pve2' failed - failed to get address info for: pve2: Name or service not known"]);
  });
});
