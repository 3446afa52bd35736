// The PVE simulator's calls of a template build, one by one: root@pam's ticket login with its CSRF
// token, download-url, POST /lxc from the image (keyctl is root@pam's alone), and POST …/template
// (refused while running, base volume after).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { PveSim, SIM_ROOT_PASSWORD, SIM_TOKENS } from "../../sim/pve/index.js";
import { PveSimClient } from "../../sim/pve/client.js";

const IMAGE = "http://fixtures.example/tiny_1.0_amd64.tar.gz";
let sim: PveSim;
let url: string;
let root: PveSimClient;

describe("PVE simulator: the template build's calls", () => {
  before(async () => {
    sim = new PveSim({ timeScale: 0.01, templates: [], downloads: [{ url: IMAGE, content: Buffer.from("image") }], latencyMs: { authFailure: 10 } });
    url = await sim.start(0, "127.0.0.1");
    root = new PveSimClient(url);
    assert.equal(await root.task("POST", "/nodes/pve/storage/local/download-url", { url: IMAGE, content: "vztmpl", filename: "tiny.tar.gz" }), "OK");
  });
  after(() => sim.stop());

  test("download-url refuses to override an existing file; a missing URL fails its task", async () => {
    const again = await root.post("/nodes/pve/storage/local/download-url", { url: IMAGE, content: "vztmpl", filename: "tiny.tar.gz" });
    assert.equal(again.status, 500);
    assert.equal(again.body?.message, "refusing to override existing file '/var/lib/vz/template/cache/tiny.tar.gz'\n");
    assert.equal(await root.task("POST", "/nodes/pve/storage/local/download-url", { url: "http://fixtures.example/nope.tar.gz", content: "vztmpl", filename: "nope.tar.gz" }), "download failed: 404 Not Found");
    const runners = root.as(SIM_TOKENS.runners);
    assert.equal((await runners.post("/nodes/pve/storage/local/download-url", { url: IMAGE, content: "vztmpl", filename: "x.tar.gz" })).reason, "Permission check failed (/storage/local, Datastore.AllocateTemplate)");
  });

  test("root@pam logs in with its password; writes need the CSRF token; the ticket may set keyctl", async () => {
    const login = (password: string) => fetch(`${url}/api2/json/access/ticket`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ username: "root@pam", password }) });
    const bad = await login("wrong");
    assert.equal(bad.status, 401);
    assert.equal(bad.statusText, "authentication failure");
    const ok = (await (await login(SIM_ROOT_PASSWORD)).json()) as { data: { username: string; ticket: string; CSRFPreventionToken: string } };
    assert.equal(ok.data.username, "root@pam");
    assert.match(ok.data.ticket, /^PVE:root@pam:[0-9A-F]{8}::/);
    const cookie = `PVEAuthCookie=${encodeURIComponent(ok.data.ticket)}`;
    const create = (headers: Record<string, string>) =>
      fetch(`${url}/api2/json/nodes/pve/lxc`, {
        method: "POST",
        headers: { cookie, "content-type": "application/x-www-form-urlencoded", ...headers },
        body: new URLSearchParams({ vmid: "9000", ostemplate: "local:vztmpl/tiny.tar.gz", rootfs: "volume=local-lvm:8", features: "keyctl=1,nesting=1", unprivileged: "1", pool: "ci", start: "1" }),
      });
    const noCsrf = await create({});
    assert.equal(noCsrf.status, 401);
    assert.equal(noCsrf.statusText, "Permission denied - invalid csrf token");
    assert.equal((await fetch(`${url}/api2/json/nodes/pve/lxc`, { headers: { cookie } })).status, 200, "a GET needs no CSRF token");
    const created = await create({ CSRFPreventionToken: ok.data.CSRFPreventionToken });
    assert.equal(created.status, 200);
    const upid = ((await created.json()) as { data: string }).data;
    assert.match(upid, /:vzcreate:9000:root@pam:$/);
    assert.equal(await root.waitTask(upid), "OK");
    const ct = sim.container(9000)!;
    assert.equal(ct.status, "running");
    assert.equal(ct.config.features, "keyctl=1,nesting=1");
    assert.equal(ct.config.rootfs, "local-lvm:vm-9000-disk-0,size=8G");
    assert.equal(ct.pool, "ci");
  });

  test("a token, even root@pam's, is refused keyctl; nesting alone needs only VM.Allocate", async () => {
    const body = { vmid: 9001, ostemplate: "local:vztmpl/tiny.tar.gz", rootfs: "local-lvm:4", pool: "ci" };
    const r = await root.post("/nodes/pve/lxc", { ...body, features: "keyctl=1,nesting=1" });
    assert.equal(r.status, 403);
    assert.equal(r.reason, "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)");
    assert.equal(sim.container(9001), undefined);
    assert.equal(await root.task("POST", "/nodes/pve/lxc", { ...body, features: "nesting=1" }), "OK");
    const missing = await root.task("POST", "/nodes/pve/lxc", { vmid: 9002, ostemplate: "local:vztmpl/gone.tar.gz" });
    assert.equal(missing, "unable to create CT 9002 - volume 'local:vztmpl/gone.tar.gz' does not exist");
    assert.equal(sim.container(9002), undefined, "a failed create leaves nothing");
  });

  test("…/template: refused while running, then the root volume becomes the base volume; not twice", async () => {
    const running = await root.post(root.ct(9000, "/template"));
    assert.equal(running.status, 500);
    assert.equal(running.body?.message, "you can't convert a CT to template if the CT is running\n");
    assert.equal(await root.task("POST", root.ct(9000, "/status/shutdown"), { timeout: 60 }), "OK");
    const r = await root.post(root.ct(9000, "/template"));
    assert.equal(r.status, 200);
    assert.equal(r.data, null);
    const ct = sim.container(9000)!;
    assert.equal(ct.template, true);
    assert.equal(ct.config.rootfs, "local-lvm:base-9000-disk-0,size=8G");
    assert.equal((await root.post(root.ct(9000, "/template"))).body?.message, "you can't convert a template to a template\n");
    // The runners' token clones it linked, as the listener will.
    assert.equal(await root.as(SIM_TOKENS.runners).task("POST", root.ct(9000, "/clone"), { newid: 100000, pool: "ci" }), "OK");
    assert.equal(sim.container(100000)!.config.rootfs, "local-lvm:base-9000-disk-0/vm-100000-disk-0,size=8G");
  });
});
