// The template's build, for real on the stand-ins: `pve-runners template deploy` synthesizes the
// template stack and applies it with the real terraform, the provider stand-in from the filesystem
// mirror (download_file, a container created from the image) logging in as root@pam with a
// password, and the `pct` stand-in running the provisioners (push, exec provision.sh, shutdown,
// template) against the PVE simulator. Then a runner is cloned from the result. Also: PVE refuses
// keyctl to a token, root@pam's included; the pinned checksums match what the stand-ins serve, and
// a wrong one fails the build.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SIMULATOR_PVE_ENV } from "../../listener/app/config.js";
import { PveSim, SIM_ROOT_PASSWORD, SIM_TOKENS, TEMPLATE_BUILD_MARKER, UPSTREAM_FILES } from "../../sim/pve/index.js";
import { installPctShim } from "../../sim/pct/install.js";
import { installProviderMirror, type ProviderMirror } from "../../sim/provider/install.js";
import { synthTemplateStack, UBUNTU_2404_STANDARD, type TemplateStackSpec } from "../../stacks/template-stack.js";
import { pinnedRunnerVersion } from "../../stacks/runner-pin.js";

const repo = fileURLToPath(new URL("../../../", import.meta.url));
const cli = join(repo, "dist", "cli", "main.js");
const templateDir = join(repo, "template");
const hasTerraform = spawnSync("terraform", ["version"], { stdio: "ignore" }).status === 0;
const ROOT_TOKEN = `${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}`;
const RUNNERS_TOKEN = `${SIM_TOKENS.runners.id}=${SIM_TOKENS.runners.secret}`;

let dir: string;
let sim: PveSim;
let url: string;
let mirror: ProviderMirror;
let pctDir: string;

/** The provision script's pinned default of NAME. */
const pinned = (script: string, name: string) => new RegExp(`^${name}="\\$\\{${name}:-([^}]*)\\}"`, "m").exec(script)?.[1];

async function api<T = unknown>(method: string, path: string, body?: Record<string, unknown>, token = ROOT_TOKEN): Promise<{ status: number; data: T; message?: string }> {
  const res = await fetch(`${url}/api2/json/${path}`, {
    method,
    headers: { authorization: `PVEAPIToken=${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = (await res.json().catch(() => ({}))) as { data: T; message?: string };
  return { status: res.status, data: json.data, message: json.message ?? res.statusText };
}

async function waitTask(node: string, upid: string): Promise<{ exitstatus: string; log: string[] }> {
  for (;;) {
    const st = await api<{ status: string; exitstatus: string }>("GET", `nodes/${node}/tasks/${encodeURIComponent(upid)}/status`);
    if (st.data.status === "stopped") {
      const log = await api<Array<{ t: string }>>("GET", `nodes/${node}/tasks/${encodeURIComponent(upid)}/log?limit=500`);
      return { exitstatus: st.data.exitstatus, log: log.data.map((l) => l.t) };
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env, maxBuffer: 32 << 20 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

const baseEnv = (): NodeJS.ProcessEnv => ({
  PATH: `${pctDir}:${process.env.PATH}`,
  HOME: process.env.HOME,
  TMPDIR: dir,
  PVE_SIM_PROVIDER_POLL_MS: "20",
});

describe("template build on the stand-ins", { skip: hasTerraform ? false : "terraform is not on PATH" }, () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pve-runners-tplbuild-"));
    // No runner template yet: the build makes it.
    sim = new PveSim({ timeScale: 0.02, templates: [] });
    url = await sim.start(0, "127.0.0.1");
    mirror = await installProviderMirror(join(dir, "tf"));
    pctDir = join(dir, "bin");
    await installPctShim(pctDir, { url: url, token: ROOT_TOKEN, node: "pve" });
  });
  after(async () => {
    await sim?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("pve-runners template deploy builds the template (root@pam password), and a runner clones from it", async () => {
    const config = join(dir, "config.yaml");
    const yaml = readFileSync(join(repo, "listener", "config-example.yaml"), "utf8")
      .replace("endpoint: https://127.0.0.1:8006/", `endpoint: ${url}`)
      .replace("  binary: terraform ", `  cliConfigFile: ${mirror.cliConfigFile}\n  binary: terraform `);
    writeFileSync(config, yaml, { mode: 0o600 });
    const work = join(dir, "template-work");
    const r = await run(process.execPath, [cli, "template", "deploy", "--config", config, "--dir", work], dir, {
      ...baseEnv(),
      [SIMULATOR_PVE_ENV]: url,
      PROXMOX_VE_USERNAME: "root@pam",
      PROXMOX_VE_PASSWORD: SIM_ROOT_PASSWORD,
    });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /template ready/);
    assert.ok(!(r.stdout + r.stderr).includes(SIM_ROOT_PASSWORD), "the password is in no log line");

    const ct = sim.container(9000);
    assert.ok(ct, "container 9000 exists");
    assert.equal(ct.template, true);
    assert.equal(ct.status, "stopped");
    assert.equal(ct.pool, "ci");
    // The runner version it baked in, as a tag the listener reads (runner freshness).
    assert.deepEqual(ct.tags, ["pve-runners-template", `runner-${pinnedRunnerVersion()}`]);
    assert.equal(ct.config.features, "keyctl=1,nesting=1");
    assert.equal(ct.config.unprivileged, "1");
    assert.equal(ct.config.ostype, "ubuntu");
    // `pct template` made the root volume a base volume: what linked clones need.
    assert.match(ct.config.rootfs, /^local-lvm:base-9000-disk-0,size=16G$/);
    assert.match(ct.config.net0, /bridge=vmbr1/);
    assert.match(ct.config.net0, /tag=30/);
    // The provisioners pushed every file with its mode, and provision.sh passed its checks.
    const files = Object.fromEntries(ct.files.map((f) => [f.path, f.mode]));
    assert.deepEqual(
      { p: files["/root/provision.sh"], d: files["/root/docker-storage-driver.sh"], r: files["/root/runner-once.sh"], s: files["/root/pve-runner.service"] },
      { p: "0700", d: "0700", r: "0700", s: "0600" },
    );
    const version = pinned(readFileSync(join(templateDir, "provision.sh"), "utf8"), "RUNNER_VERSION");
    assert.ok(ct.files.some((f) => f.path === TEMPLATE_BUILD_MARKER), "provision.sh ran to its end");
    // The image was downloaded (sha512 checked) to local.
    const content = await api<Array<{ volid: string; size: number }>>("GET", "nodes/pve/storage/local/content");
    assert.deepEqual(content.data.map((c) => c.volid), [`local:vztmpl/${UBUNTU_2404_STANDARD.fileName}`]);
    const tasks = sim.tasks();
    const types = tasks.map((t) => `${t.type}:${t.user}`).reverse();
    assert.deepEqual(types.slice(0, 2), ["download:root@pam", "vzcreate:root@pam"]);
    assert.ok(tasks.find((t) => t.type === "download")!.log.includes("OK, checksum verified"));

    // The runners' least-privilege token clones a runner from it, linked.
    const clone = await api<string>("POST", "nodes/pve/lxc/9000/clone", { newid: 100001, pool: "ci", full: 0, hostname: "runner-0000abcd" }, RUNNERS_TOKEN);
    assert.equal(clone.status, 200, clone.message);
    assert.equal((await waitTask("pve", clone.data)).exitstatus, "OK");
    assert.equal(sim.container(100001)!.config.rootfs, "local-lvm:base-9000-disk-0/vm-100001-disk-0,size=16G");

    // Applying again changes nothing: the template is built once.
    const again = await run("terraform", ["plan", "-detailed-exitcode", "-no-color"], join(work, "stacks", "template"), {
      ...baseEnv(),
      TF_CLI_CONFIG_FILE: mirror.cliConfigFile,
      PROXMOX_VE_USERNAME: "root@pam",
      PROXMOX_VE_PASSWORD: SIM_ROOT_PASSWORD,
    });
    assert.equal(again.code, 0, again.stderr + again.stdout);
    const state = readFileSync(join(work, "stacks", "template", "terraform.tfstate"), "utf8");
    assert.ok(!state.includes(SIM_ROOT_PASSWORD), "no password in the state");
    assert.match(state, new RegExp(`"size": ${UPSTREAM_FILES[0].size}`));
    assert.ok(version, "provision.sh pins a runner version");
  });

  test("an API token, even root@pam's, is refused keyctl with PVE's message; nothing is left", async () => {
    // The first test left the image in `local`. This stack would find it unmanaged, delete it and
    // download it again, and bpg does not wait for the delete's task (storage/content.go
    // DeleteDatastoreFile): the new download may still meet the old file. Not what this test is
    // about, so the image goes first, and the test waits until it is no longer listed.
    const gone = await api<string>("DELETE", `nodes/pve/storage/local/content/${encodeURIComponent(`local:vztmpl/${UBUNTU_2404_STANDARD.fileName}`)}`);
    assert.equal(gone.status, 200, gone.message);
    for (let listed = true; listed; ) {
      listed = (await api<Array<{ volid: string }>>("GET", "nodes/pve/storage/local/content")).data.length > 0;
      if (listed) await new Promise((r) => setTimeout(r, 20));
    }
    const spec: TemplateStackSpec = { endpoint: url, node: "pve", vmid: 9001, pool: "ci", bridge: "vmbr1", vlan: 30, datastore: "local-lvm", imageDatastore: "local", templateDir };
    const { workingDir } = synthTemplateStack(join(dir, "token-run"), spec);
    const env = { ...baseEnv(), TF_CLI_CONFIG_FILE: mirror.cliConfigFile, TF_IN_AUTOMATION: "1", CHECKPOINT_DISABLE: "1", PROXMOX_VE_API_TOKEN: ROOT_TOKEN };
    assert.equal((await run("terraform", ["init", "-input=false", "-no-color"], workingDir, env)).code, 0);
    const r = await run("terraform", ["apply", "-auto-approve", "-input=false", "-no-color"], workingDir, env);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr.replace(/[\s│]+/g, " "), /Permission check failed \(changing feature flags \(except nesting\) is only allowed for root@pam\)/);
    assert.equal(sim.container(9001), undefined, "no container was created");
  });
});

describe("pinned checksums against what the stand-ins serve", () => {
  test("the image's sha512 (template stack) and the runner's sha256 (provision.sh) are the fixtures' digests", () => {
    const image = UPSTREAM_FILES.find((f) => f.url === UBUNTU_2404_STANDARD.url);
    assert.ok(image, `the simulator serves ${UBUNTU_2404_STANDARD.url}`);
    assert.equal(UBUNTU_2404_STANDARD.checksumAlgorithm, "sha512");
    assert.equal(UBUNTU_2404_STANDARD.checksum, image.digests?.sha512);
    const script = readFileSync(join(templateDir, "provision.sh"), "utf8");
    const version = pinned(script, "RUNNER_VERSION");
    for (const [arch, name] of [["x64", "RUNNER_SHA256_X64"], ["arm64", "RUNNER_SHA256_ARM64"]] as const) {
      const f = UPSTREAM_FILES.find((x) => x.url === `https://github.com/actions/runner/releases/download/v${version}/actions-runner-linux-${arch}-${version}.tar.gz`);
      assert.ok(f, `the simulator serves the ${arch} runner ${version}`);
      assert.equal(pinned(script, name), f.digests?.sha256, `${name} in provision.sh`);
    }
  });

  describe("a pin that does not match fails the build", () => {
    let s: PveSim;
    let base: string;
    const fixtureUrl = "http://fixtures.example/images/tiny-ct_1.0_amd64.tar.zst";
    const bytes = Buffer.from("a tiny CT image\n");
    before(async () => {
      s = new PveSim({ timeScale: 0.02, templates: [], downloads: [{ url: fixtureUrl, content: bytes }] });
      base = await s.start(0, "127.0.0.1");
    });
    after(() => s.stop());
    const call = async <T>(method: string, path: string, body?: Record<string, unknown>) => {
      const res = await fetch(`${base}/api2/json/${path}`, { method, headers: { authorization: `PVEAPIToken=${ROOT_TOKEN}`, "content-type": "application/json" }, body: body && JSON.stringify(body) });
      return ((await res.json()) as { data: T }).data;
    };
    const task = async (upid: string) => {
      await s.settle();
      return s.tasks().find((t) => t.upid === upid)!;
    };

    test("download-url: PVE's checksum mismatch fails the task and stores nothing; the right sum stores the file", async () => {
      const sha256 = (await import("node:crypto")).createHash("sha256").update(bytes).digest("hex");
      const wrong = await task(await call<string>("POST", "nodes/pve/storage/local/download-url", { url: fixtureUrl, content: "vztmpl", filename: "tiny.tar.zst", checksum: "0".repeat(64), "checksum-algorithm": "sha256" }));
      assert.equal(wrong.exitstatus, `checksum mismatch: got '${sha256}' != expect '${"0".repeat(64)}'`);
      assert.deepEqual(await call("GET", "nodes/pve/storage/local/content"), []);
      const image = await task(await call<string>("POST", "nodes/pve/storage/local/download-url", { url: UBUNTU_2404_STANDARD.url, content: "vztmpl", filename: "u.tar.zst", checksum: UBUNTU_2404_STANDARD.checksum.replace(/^./, "0"), "checksum-algorithm": "sha512" }));
      assert.match(image.exitstatus ?? "", /^checksum mismatch: got '45c2978e/);
      const right = await task(await call<string>("POST", "nodes/pve/storage/local/download-url", { url: fixtureUrl, content: "vztmpl", filename: "tiny.tar.zst", checksum: sha256, "checksum-algorithm": "sha256" }));
      assert.equal(right.exitstatus, "OK");
      assert.deepEqual((await call<Array<{ volid: string; size: number }>>("GET", "nodes/pve/storage/local/content")).map((c) => [c.volid, c.size]), [["local:vztmpl/tiny.tar.zst", bytes.length]]);
    });

    test("provision.sh with a runner sha256 that is not the release's: exec fails, nothing recorded", async () => {
      const upid = await call<string>("POST", "nodes/pve/lxc", { vmid: 9100, ostemplate: "local:vztmpl/tiny.tar.zst", rootfs: "local-lvm:4", start: 1, unprivileged: 1, ostype: "ubuntu" });
      assert.equal((await task(upid)).exitstatus, "OK");
      const tpl = mkdtempSync(join(tmpdir(), "pve-runners-tplcopy-"));
      try {
        cpSync(templateDir, tpl, { recursive: true });
        const script = readFileSync(join(tpl, "provision.sh"), "utf8");
        const sha = pinned(script, "RUNNER_SHA256_X64");
        for (const f of ["docker-storage-driver.sh", "runner-once.sh", "pve-runner.service"]) s.push(9100, `/root/${f}`, readFileSync(join(tpl, f), "utf8"), 0o700);
        s.push(9100, "/root/provision.sh", script.replace(sha!, "f".repeat(64)), 0o700);
        const bad = await s.exec(9100, ["bash", "/root/provision.sh"]);
        assert.equal(bad.exitcode, 1);
        assert.match(bad.stderr, /checksum mismatch for actions-runner-linux-x64-[\d.]+\.tar\.gz: not extracting/);
        assert.ok(!s.container(9100)!.files.some((f) => f.path === TEMPLATE_BUILD_MARKER));
        // The pinned one passes.
        s.push(9100, "/root/provision.sh", script, 0o700);
        const good = await s.exec(9100, ["bash", "/root/provision.sh"]);
        assert.equal(good.exitcode, 0, good.stderr);
        assert.equal((await s.exec(9100, ["cat", TEMPLATE_BUILD_MARKER])).stdout, `runner ${pinned(script, "RUNNER_VERSION")}\n`);
      } finally {
        rmSync(tpl, { recursive: true, force: true });
      }
    });
  });
});
