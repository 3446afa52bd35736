// The template stack: what it synthesizes, its provisioning chain run for real by terraform against
// a recording `pct` stand-in, and `terraform validate` of the whole stack against the provider
// stand-in (the full build on the stand-ins is test/sim/template-build.test.ts).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { synthTemplateStack, templateFingerprint, TEMPLATE_FILES, UBUNTU_2404_STANDARD, type TemplateStackSpec } from "../../stacks/template-stack.js";
import { templateSpecFromConfig } from "../../stacks/main.js";
import { installProviderMirror } from "../../sim/provider/install.js";
import { pinnedRunnerVersion } from "../../stacks/runner-pin.js";
import { runnerVersionOfTags } from "../../listener/templates/runner-release.js";

const root = resolve(import.meta.dirname, import.meta.url.endsWith(".ts") ? "../.." : "../../..");
const templateDir = join(root, "template");

const spec: TemplateStackSpec = {
  endpoint: "https://pve.example:8006/",
  node: "pve",
  vmid: 9000,
  pool: "ci",
  bridge: "vmbr1",
  vlan: 30,
  datastore: "local-lvm",
  templateDir,
};

function synth(s: TemplateStackSpec = spec): { json: any; text: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), "tpl-stack-"));
  const out = synthTemplateStack(dir, s);
  const text = readFileSync(out.file, "utf8");
  return { json: JSON.parse(text), text, dir };
}

const hasTerraform = spawnSync("terraform", ["version"], { stdio: "ignore" }).status === 0;

describe("template stack", () => {
  test("downloads the pinned Ubuntu 24.04 CT image to local as vztmpl, checksum verified", () => {
    const { json, dir } = synth();
    try {
      const dl = json.resource.proxmox_virtual_environment_download_file.image;
      assert.equal(dl.content_type, "vztmpl");
      assert.equal(dl.datastore_id, "local");
      assert.equal(dl.node_name, "pve");
      assert.match(dl.url, /^http:\/\/download\.proxmox\.com\/images\/system\/ubuntu-24\.04-standard_24\.04-2_amd64\.tar\.zst$/);
      assert.equal(dl.checksum_algorithm, "sha512");
      assert.match(dl.checksum, /^[0-9a-f]{128}$/);
      assert.equal(dl.checksum, UBUNTU_2404_STANDARD.checksum);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("creates an unprivileged container from it with nesting+keyctl on the CI bridge/VLAN and storage", () => {
    const { json, dir } = synth();
    try {
      const ct = json.resource.proxmox_virtual_environment_container.template;
      assert.equal(ct.unprivileged, true);
      assert.deepEqual(ct.features, { nesting: true, keyctl: true });
      assert.deepEqual(ct.network_interface, [{ name: "eth0", bridge: "vmbr1", vlan_id: 30, firewall: false }]);
      assert.deepEqual(ct.disk, { datastore_id: "local-lvm", size: 16 });
      assert.deepEqual(ct.operating_system, { template_file_id: "${proxmox_virtual_environment_download_file.image.id}", type: "ubuntu" });
      assert.equal(ct.vm_id, 9000);
      assert.equal(ct.pool_id, "ci");
      assert.equal(ct.started, true);
      assert.deepEqual(ct.cpu, { cores: 2 });
      assert.deepEqual(ct.memory, { dedicated: 2048, swap: 512 });
      assert.deepEqual(ct.initialization.ip_config, [{ ipv4: { address: "dhcp" } }]);
      // Never created as a template: only `pct template` makes the base volume linked clones need.
      assert.equal(ct.template, undefined);
      // Never tagged like a runner: the sweeper and deliver-jit look for that tag.
      assert.ok(!ct.tags.includes("pve-runners"));
      assert.deepEqual(ct.lifecycle, { ignore_changes: "all", replace_triggered_by: ["terraform_data.build"] });
      assert.deepEqual(json.terraform.backend, { local: { path: "terraform.tfstate" } });
      assert.equal(json.terraform.required_providers.proxmox.source, "registry.terraform.io/bpg/proxmox");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("tags the template with the runner version provision.sh pins (and names it in the description)", () => {
    const copy = mkdtempSync(join(tmpdir(), "tpl-pin-"));
    try {
      cpSync(templateDir, copy, { recursive: true });
      const pinned = /RUNNER_VERSION="\$\{RUNNER_VERSION:-([0-9.]+)\}"/.exec(readFileSync(join(templateDir, "provision.sh"), "utf8"))![1];
      assert.equal(pinnedRunnerVersion(templateDir), pinned);
      // Another pin in the script is another tag: the stack reads the script, not a copy of the number.
      const file = join(copy, "provision.sh");
      writeFileSync(file, readFileSync(file, "utf8").replace(`RUNNER_VERSION:-${pinned}}`, "RUNNER_VERSION:-2.999.1}"));
      for (const [dirOf, want] of [[templateDir, pinned], [copy, "2.999.1"]] as const) {
        const { json, dir } = synth({ ...spec, templateDir: dirOf });
        rmSync(dir, { recursive: true, force: true });
        const ct = json.resource.proxmox_virtual_environment_container.template;
        assert.deepEqual(ct.tags, ["pve-runners-template", `runner-${want}`]);
        assert.equal(runnerVersionOfTags(ct.tags.join(";")), want);
        assert.match(ct.description, new RegExp(`GitHub Actions runner ${want.replace(/\./g, "\\.")}\\)`));
      }
      writeFileSync(file, "#!/bin/bash\nRUNNER_VERSION=latest\n");
      assert.throws(() => pinnedRunnerVersion(copy), /no RUNNER_VERSION=.* pin found/);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  test("provisions on the host in order: push the scripts, exec provision.sh, shut down, pct template", () => {
    const { json, dir } = synth();
    try {
      const p = json.resource.terraform_data.provision;
      assert.deepEqual(p.depends_on, ["proxmox_virtual_environment_container.template"]);
      assert.deepEqual(p.lifecycle.replace_triggered_by, ["proxmox_virtual_environment_container.template"]);
      const cmds: string[] = p.provisioner.map((x: any) => x["local-exec"].command);
      const at = (re: RegExp) => cmds.findIndex((c) => re.test(c));
      const pushes = cmds.filter((c) => /^pct push 9000 /.test(c));
      assert.equal(pushes.length, TEMPLATE_FILES.length);
      for (const f of TEMPLATE_FILES) {
        const c = pushes.find((x) => x.includes(`/${f.file} `));
        assert.ok(c, `${f.file} is pushed`);
        assert.equal(c, `pct push 9000 ${join(templateDir, f.file)} ${f.dest} --perms ${f.perms}`);
      }
      const lastPush = Math.max(...pushes.map((c) => cmds.indexOf(c)));
      const exec = at(/^pct exec 9000 --keep-env 0 -- bash \/root\/provision\.sh$/);
      const shutdown = at(/^pct shutdown 9000 /);
      const template = at(/^pct template 9000$/);
      assert.ok(lastPush < exec && exec < shutdown && shutdown < template, cmds.join("\n"));
      assert.equal(template, cmds.length - 1);
      // The host environment (it holds the PVE credentials) never enters the container.
      for (const c of cmds.filter((x) => / exec /.test(x))) assert.match(c, /--keep-env 0/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("holds no secret: the provider has the endpoint only, credentials come from the environment", () => {
    const { json, text, dir } = synth();
    try {
      assert.deepEqual(json.provider.proxmox, [{ endpoint: "https://pve.example:8006/" }]);
      assert.doesNotMatch(text, /api_token|PVEAPIToken|password|username|secret|BEGIN .*PRIVATE KEY/i);
      assert.doesNotMatch(text, /PROXMOX_VE_/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a changed script or setting is a new build fingerprint (which replaces the container)", () => {
    const copy = mkdtempSync(join(tmpdir(), "tpl-files-"));
    try {
      cpSync(templateDir, copy, { recursive: true });
      const s = { ...spec, templateDir: copy };
      const before = templateFingerprint(s);
      assert.equal(templateFingerprint(s), before, "stable");
      assert.equal(templateFingerprint({ ...s, endpoint: "https://other:8006/" }), before, "the endpoint does not shape the template");
      assert.notEqual(templateFingerprint({ ...s, vlan: 31 }), before);
      appendFileSync(join(copy, "runner-once.sh"), "\n# changed\n");
      assert.notEqual(templateFingerprint(s), before);
      const { json, dir } = synth(s);
      rmSync(dir, { recursive: true, force: true });
      assert.equal(json.resource.terraform_data.build.input.fingerprint, templateFingerprint(s));
      rmSync(join(copy, "provision.sh"));
      assert.throws(() => templateFingerprint(s), /cannot read .*provision\.sh/);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  test("terraform runs the provisioning chain for real against a recording pct", { skip: hasTerraform ? false : "terraform is not on PATH" }, () => {
    const { json, dir } = synth();
    try {
      // Keep what terraform can run without bpg's provider: the terraform_data resources.
      const td = json.resource.terraform_data;
      delete td.provision.depends_on;
      delete td.provision.lifecycle;
      const stack = { terraform: { backend: json.terraform.backend }, resource: { terraform_data: td } };
      const work = join(dir, "run");
      const bin = join(dir, "bin");
      for (const d of [work, bin]) spawnSync("mkdir", ["-p", d]);
      writeFileSync(join(work, "cdk.tf.json"), JSON.stringify(stack, null, 2));
      const log = join(dir, "pct.log");
      writeFileSync(
        join(bin, "pct"),
        `#!/bin/bash
printf '%s\\n' "$*" >> ${JSON.stringify(log)}
case "$1" in
  status) echo "status: stopped" ;;
  push) [ -r "$3" ] || { echo "no such file $3" >&2; exit 2; }; cp "$3" ${JSON.stringify(dir)}/pushed-"$(basename "$4")" ;;
esac
exit 0
`,
      );
      chmodSync(join(bin, "pct"), 0o755);
      const env = {
        ...process.env,
        PATH: `${bin}:${process.env.PATH}`,
        TF_IN_AUTOMATION: "1",
        TF_INPUT: "0",
        CHECKPOINT_DISABLE: "1",
        PROXMOX_VE_API_TOKEN: "root@pam!template=00000000-secret",
      };
      const init = spawnSync("terraform", ["init", "-input=false", "-no-color"], { cwd: work, env, encoding: "utf8" });
      assert.equal(init.status, 0, init.stderr + init.stdout);
      const apply = spawnSync("terraform", ["apply", "-auto-approve", "-input=false", "-no-color"], { cwd: work, env, encoding: "utf8" });
      assert.equal(apply.status, 0, apply.stderr + apply.stdout);
      const calls = readFileSync(log, "utf8").trim().split("\n");
      assert.deepEqual(calls, [
        "status 9000",
        "start 9000",
        "exec 9000 --keep-env 0 -- systemctl is-system-running --wait",
        ...TEMPLATE_FILES.map((f) => `push 9000 ${join(templateDir, f.file)} ${f.dest} --perms ${f.perms}`),
        "exec 9000 --keep-env 0 -- bash /root/provision.sh",
        "shutdown 9000 --timeout 120 --forceStop 1",
        "template 9000",
      ]);
      for (const f of TEMPLATE_FILES) assert.deepEqual(readFileSync(join(dir, `pushed-${f.dest.split("/").pop()}`)), readFileSync(join(templateDir, f.file)));
      // A second apply changes nothing: the template is built once.
      const again = spawnSync("terraform", ["apply", "-auto-approve", "-input=false", "-no-color"], { cwd: work, env, encoding: "utf8" });
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stdout, /0 added, 0 changed, 0 destroyed|No changes/);
      assert.equal(readFileSync(log, "utf8").trim().split("\n").length, calls.length);
      const state = readFileSync(join(work, "terraform.tfstate"), "utf8");
      assert.ok(!state.includes("00000000-secret"), "no credential in the state");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("terraform validate on the whole stack, bpg/proxmox from the stand-in's filesystem mirror", { skip: hasTerraform ? false : "terraform is not on PATH" }, async () => {
    const { dir } = synth();
    try {
      // sim/provider serves bpg 0.111.1's schema for every resource the stack uses (download_file,
      // the container created from an image): an attribute or block bpg does not have fails here.
      const mirror = await installProviderMirror(join(dir, "tf"));
      const work = join(dir, "stacks", "template");
      const env = { ...process.env, TF_CLI_CONFIG_FILE: mirror.cliConfigFile, TF_IN_AUTOMATION: "1", CHECKPOINT_DISABLE: "1" };
      const init = spawnSync("terraform", ["init", "-backend=false", "-input=false", "-no-color"], { cwd: work, env, encoding: "utf8" });
      assert.equal(init.status, 0, init.stderr);
      const v = spawnSync("terraform", ["validate", "-no-color"], { cwd: work, env, encoding: "utf8" });
      assert.equal(v.status, 0, v.stderr + v.stdout);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("stacks/main (the cdktf.json app)", () => {
  test("builds the template spec from the config file without reading any secret", () => {
    const s = templateSpecFromConfig(join(root, "listener", "config-example.yaml"), { PVE_RUNNERS_TEMPLATE_DISK_GB: "24" });
    assert.equal(s.vmid, 9000);
    assert.equal(s.node, "pve");
    assert.equal(s.bridge, "vmbr1");
    assert.equal(s.vlan, 30);
    assert.equal(s.pool, "ci");
    assert.equal(s.datastore, "local-lvm");
    assert.equal(s.diskGb, 24);
    assert.equal(s.imageDatastore, "local");
    assert.equal(s.templateDir, templateDir);
    assert.throws(() => templateSpecFromConfig(join(root, "listener", "config-example.yaml"), { PVE_RUNNERS_TEMPLATE_DISK_GB: "2" }), /PVE_RUNNERS_TEMPLATE_DISK_GB/);
  });

  test("`node dist/stacks/main.js` synthesizes into CDKTF_OUTDIR; a bad config exits 2 with the problems", () => {
    const out = mkdtempSync(join(tmpdir(), "tpl-main-"));
    try {
      const main = join(root, "dist", "stacks", "main.js");
      const ok = spawnSync(process.execPath, [main], {
        env: { ...process.env, PVE_RUNNERS_CONFIG: join(root, "listener", "config-example.yaml"), CDKTF_OUTDIR: out },
        encoding: "utf8",
      });
      assert.equal(ok.status, 0, ok.stderr);
      const json = JSON.parse(readFileSync(join(out, "stacks", "template", "cdk.tf.json"), "utf8"));
      assert.equal(json.resource.proxmox_virtual_environment_container.template.vm_id, 9000);
      assert.ok(existsSync(join(out, "manifest.json")));
      writeFileSync(join(out, "bad.yaml"), "proxmox: {}\n");
      const bad = spawnSync(process.execPath, [main], { env: { ...process.env, PVE_RUNNERS_CONFIG: join(out, "bad.yaml"), CDKTF_OUTDIR: out }, encoding: "utf8" });
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /is not valid:\n {2}- /);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  test("cdktf.json runs it", () => {
    const cfg = JSON.parse(readFileSync(join(root, "cdktf.json"), "utf8"));
    assert.equal(cfg.app, "node dist/stacks/main.js");
  });
});
