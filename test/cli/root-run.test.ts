// Root never runs code the listener's user can plant (issue 14): a provider planted in a
// .terraform owned by another user (uid 65534 here, as the pve-runners user would) is never
// started by a root-run `template deploy` or `sweep`; each refuses with one line.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { createServer } from "node:http";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { lstat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AddressInfo } from "node:net";
import { installProviderMirror } from "../../sim/provider/install.js";
import { assertRootOwned, realFs, type FsView } from "../../listener/adapters/terraform/trusted-path.js";

const repo = fileURLToPath(new URL("../../../", import.meta.url));
const cli = join(repo, "dist", "cli", "main.js");
const asRoot = process.geteuid?.() === 0;
const hasTerraform = spawnSync("terraform", ["version"], { stdio: "ignore" }).status === 0;
const needs = !asRoot ? "needs root (chown to another uid)" : !hasTerraform ? "needs terraform" : false;

let dir: string;
let marker: string;
let config: string;
let env: NodeJS.ProcessEnv;
let attackerRc: string;
let closedPort: number;

/** Plants what a compromised listener could: a stack dir with its own .terraform (init from the attacker's mirror), owned by uid 65534. */
function plant(stackParent: string, stackName: string): void {
  const work = join(stackParent, "stacks", stackName);
  mkdirSync(work, { recursive: true });
  const provider = { source: "registry.terraform.io/bpg/proxmox", version: "0.111.1" };
  writeFileSync(join(work, "cdk.tf.json"), JSON.stringify({ terraform: { required_providers: { proxmox: provider }, backend: { local: { path: "terraform.tfstate" } } }, provider: { proxmox: [{}] } }));
  const init = spawnSync("terraform", ["init", "-input=false", "-no-color"], { cwd: work, encoding: "utf8", env: { ...env, TF_CLI_CONFIG_FILE: attackerRc } });
  assert.equal(init.status, 0, init.stderr);
  writeFileSync(join(work, "terraform.tfstate"), JSON.stringify({ version: 4, terraform_version: "1.5.0", serial: 1, lineage: "x", outputs: {}, resources: [] }));
  spawnSync("chown", ["-R", "65534:65534", stackParent]);
}

function runCli(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args, "--config", config], { env: { ...env, ...extraEnv } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

describe("root-run commands never run a planted provider", { skip: needs }, () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pve-runners-rootrun-"));
    marker = join(dir, "planted-provider-ran");
    // The trusted provider (root's mirror) and the attacker's: same address, a script that leaves a mark.
    const trusted = await installProviderMirror(join(dir, "mirror"));
    const attacker = await installProviderMirror(join(dir, "attacker"));
    writeFileSync(attacker.executable, `#!/bin/sh\nid -u >> ${marker}\nexit 1\n`);
    attackerRc = attacker.cliConfigFile;
    const creds = join(dir, "credentials");
    mkdirSync(creds, { mode: 0o700 });
    writeFileSync(join(creds, "github-app.pem"), generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }));
    writeFileSync(join(creds, "webhook-secret"), "0123456789abcdef0123");
    writeFileSync(join(creds, "pve-token"), "pve-runners@pve!listener=00000000-0000-0000-0000-000000000000");
    writeFileSync(join(creds, "admin-token"), "admin-token-for-the-root-run-test-0123456789");
    // A port nothing listens on (fetch refuses port 9 itself as a "bad port").
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    closedPort = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    config = join(dir, "config.yaml");
    const yaml = readFileSync(join(repo, "listener", "config-example.yaml"), "utf8")
      .replace("endpoint: https://127.0.0.1:8006/", "endpoint: https://127.0.0.1:9/")
      .replace("baseUrl: https://api.github.com", "baseUrl: http://127.0.0.1:9")
      .replace("port: 8791", `port: ${closedPort}`)
      .replace("stateDir: /var/lib/pve-runners", `stateDir: ${join(dir, "state")}`)
      .replace(/binary: terraform .*/, `binary: terraform\n  cliConfigFile: ${trusted.cliConfigFile}`);
    writeFileSync(config, yaml);
    env = { PATH: process.env.PATH, HOME: dir, CREDENTIALS_DIRECTORY: creds, PROXMOX_VE_USERNAME: "root@pam", PROXMOX_VE_PASSWORD: "root-password" };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("template deploy in a dir another user owns: one line, exit 1, nothing run", async () => {
    const tpl = join(dir, "template");
    plant(tpl, "template");
    rmSync(marker, { force: true });
    const r = await runCli(["template", "deploy", "--dir", tpl]);
    assert.ok(!existsSync(marker), `the planted provider ran, as uid ${existsSync(marker) && readFileSync(marker, "utf8").trim()}`);
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^pve-runners template deploy: refusing to run as root: ${tpl} is owned by uid 65534, not root`));
  });

  test("sweep as root asks the running listener, never runs terraform in its stack dirs", async () => {
    plant(join(dir, "state", "runners", "runner-planted"), "runner");
    rmSync(marker, { force: true });
    // No listener at the config's admin address: one line, exit 1.
    const down = await runCli(["sweep"]);
    assert.ok(!existsSync(marker), `the planted provider ran, as uid ${existsSync(marker) && readFileSync(marker, "utf8").trim()}`);
    assert.equal(down.status, 1);
    assert.match(down.stderr, new RegExp(`^pve-runners: the listener's admin API at http://127\\.0\\.0\\.1:${closedPort} does not answer .*ECONNREFUSED.*\n$`));
    // A listener: the sweep is its, as its own user.
    const calls: string[] = [];
    const admin = createServer(async (req, res) => {
      let body = "";
      for await (const chunk of req) body += chunk;
      calls.push(`${req.method} ${req.url} ${req.headers.authorization} ${body}`);
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ dryRun: true, containers: 0, registrations: 0, stackDirs: 1, actions: [{ kind: "remove-stack", dir: "runner-planted", reason: "no record\u001b[2J" }], errors: [] }));
    });
    await new Promise<void>((r) => admin.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(admin.address() as AddressInfo).port}`;
    const up = await runCli(["sweep", "--dry-run", "--url", url]);
    admin.close();
    assert.equal(up.status, 0, up.stderr);
    assert.deepEqual(calls, ['POST /api/sweep Bearer admin-token-for-the-root-run-test-0123456789 {"dryRun":true}']);
    assert.match(up.stdout, /^would remove-stack runner-planted: no record \[2J\n/);
  });
});

describe("root-owned checks", () => {
  /** The real files, with owners as given (root unless listed): the same verdicts whoever runs the test. */
  const ownedBy = (owners: Record<string, number>): FsView => ({
    ...realFs,
    lstat: async (p) => {
      const st = await lstat(p);
      return { uid: owners[p] ?? 0, mode: st.mode, isSymbolicLink: () => st.isSymbolicLink(), isDirectory: () => st.isDirectory() };
    },
  });
  const tree = () => {
    const d = mkdtempSync(join(tmpdir(), "pve-runners-trust-"));
    mkdirSync(join(d, "work", ".terraform", "providers"), { recursive: true, mode: 0o755 });
    mkdirSync(join(d, "mirror"), { mode: 0o755 });
    writeFileSync(join(d, "mirror", "terraform-provider-proxmox"), "#!/bin/sh\n", { mode: 0o755 });
    symlinkSync(join(d, "mirror"), join(d, "work", ".terraform", "providers", "proxmox"));
    for (const p of ["work", "work/.terraform", "work/.terraform/providers", "mirror"]) chmodSync(join(d, p), 0o755);
    return d;
  };

  test("a tree only root can write passes; another owner, a writable mode or a mirror behind a symlink that is not root's is refused", async () => {
    const d = tree();
    assert.equal(await assertRootOwned(join(d, "work"), { fs: ownedBy({}) }), join(d, "work"));
    const lock = join(d, "work", ".terraform");
    await assert.rejects(assertRootOwned(join(d, "work"), { fs: ownedBy({ [lock]: 65534 }) }), { message: `${lock} is owned by uid 65534, not root` });
    const provider = join(d, "mirror", "terraform-provider-proxmox");
    await assert.rejects(assertRootOwned(join(d, "work"), { fs: ownedBy({ [provider]: 65534 }) }), { message: `${provider} is owned by uid 65534, not root` });
    chmodSync(join(d, "mirror"), 0o775);
    await assert.rejects(assertRootOwned(join(d, "work"), { fs: ownedBy({}) }), { message: `${join(d, "mirror")} is writable by group or others (mode 0775)` });
    rmSync(d, { recursive: true, force: true });
  });
});
