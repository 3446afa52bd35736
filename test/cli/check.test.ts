// `pve-runners check --config F` against the stand-in world: every check serve needs, one ✓/✗ line
// each with the fix, exit 1 on any ✗. The world is made wrong in the ways an operator gets it wrong.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { Store } from "../../listener/store/store.js";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { startWorld, type World } from "../../sim/world.js";
import { PVE_RUNNERS_ACLS, SIM_TOKENS, type TokenDef } from "../../sim/pve/privileges.js";
import { RUNNER_PRIVILEGES, BRIDGE_PRIVILEGES } from "../../cli/preflight.js";

const cli = fileURLToPath(new URL("../../cli/main.js", import.meta.url));
const logger = pino({ level: "silent" });

/** Runs the CLI as its own process; asynchronously, as the stand-ins answer from this one. */
async function check(world: World): Promise<{ status: number | null; lines: string[]; text: string }> {
  const child = spawn(process.execPath, [cli, "check", "--config", world.configFile], { env: { ...process.env, ...world.serveEnv }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b) => (stdout += b));
  child.stderr.on("data", (b) => (stderr += b));
  const status = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  return { status, lines: stdout.trim().split("\n"), text: stdout + stderr };
}

const line = (lines: string[], prefix: string) => lines.find((l) => l.startsWith(prefix));

describe("pve-runners check", () => {
  test("a correct install passes every check, one ✓ line each; no secret is printed", { timeout: 120_000 }, async () => {
    const world = await startWorld({ logger });
    try {
      const r = await check(world);
      assert.equal(r.status, 0, r.text);
      for (const l of r.lines.slice(0, -1)) assert.match(l, /^✓ /, r.text);
      for (const want of ["✓ config: ", "✓ github.privateKeyFile: RSA private key, 2048 bits", "✓ github.webhookSecretFile: ", "✓ proxmox.tokenFile: token pve-runners@pve!listener", "✓ terraform: Terraform v", "✓ proxmox: Proxmox VE ", "✓ node pve: online", "✓ template pve/9000: an unprivileged template", "✓ privileges on /pool/ci: VM.Clone", "✓ privileges on /vms/9000: ", "✓ privileges on /sdn/zones/localnetwork/vmbr1/30: SDN.Use", "✓ github app: ", "✓ github org acme: installation 4242 grants administration: write", "✓ github solo/dotfiles: installation 4343 grants"])
        assert.ok(line(r.lines, want), `no line starting "${want}" in:\n${r.text}`);
      assert.match(r.lines.at(-1)!, /^check: all \d+ checks passed$/);
      for (const secret of [world.secrets.webhookSecret, world.secrets.pveApiToken.split("=")[1], world.secrets.adminToken!]) assert.ok(!r.text.includes(secret), "a secret was printed");

      // After `template deploy --replace` the listener's store says which template replaced the
      // configured one, and the old one is gone: check follows the store, as the listener does.
      world.pve.addTemplate("pve", 9001);
      mkdirSync(world.config.stateDir, { recursive: true });
      const store = new Store(join(world.config.stateDir, "pve-runners.sqlite"));
      store.recordTemplateReplacement("pve/9000", "pve", 9001);
      store.close();
      const replaced = await check(world);
      assert.equal(replaced.status, 0, replaced.text);
      assert.ok(line(replaced.lines, "✓ template pve/9001: an unprivileged template"), replaced.text);
      assert.ok(!line(replaced.lines, "✓ template pve/9000"), replaced.text);
    } finally {
      await world.stop();
    }
  });

  test("what an operator gets wrong: each is one ✗ line with the fix, and the exit status is 1", { timeout: 120_000 }, async () => {
    // The token lacks one privilege of the role; an installation has not accepted Administration;
    // the config names a template that does not exist and a node that is not in the cluster.
    const [pool, bridge] = PVE_RUNNERS_ACLS();
    const token: TokenDef = {
      id: "pve-runners@pve!short",
      secret: "0e1d2c3b-4a59-4867-9786-a5b4c3d2e1f0",
      acls: [{ ...pool, privs: pool.privs.filter((p) => p !== "VM.PowerMgmt") }, bridge],
    };
    const world = await startWorld({
      logger,
      listenerToken: token,
      installations: [
        { id: 4242, account: "acme", type: "Organization", repos: ["acme/app"], permissions: { actions: "read", checks: "write", metadata: "read", organization_self_hosted_runners: "write" } },
        { id: 4343, account: "solo", type: "User", repos: ["solo/dotfiles"] },
      ],
      configPatch: (cfg: Record<string, any>) => {
        cfg.proxmox.templateVmid = 9100;
        cfg.proxmox.nodes = [{ name: "pve7" }];
        cfg.allow.repos.push("nobody/else");
        cfg.terraform.binary = "terraform-not-installed";
      },
    });
    try {
      const r = await check(world);
      assert.equal(r.status, 1, r.text);
      const expect = (prefix: string, re: RegExp) => {
        const l = line(r.lines, prefix);
        assert.ok(l, `no line starting "${prefix}" in:\n${r.text}`);
        assert.match(l, re);
      };
      expect("✗ privileges on /pool/ci: ", /the token lacks VM\.PowerMgmt → run pveum-setup \(README step 3\) for pool ci$/);
      // PVE checks the privilege before the CT's existence: 403 for a CT that is not there.
      expect("✗ template pve/9100: ", /403 Permission check failed \(\/vms\/9100, VM\.Audit\) → there is no CT 9100 on pve, or it is not in pool ci: build it \(pve-runners template deploy\)/);
      expect("✗ privileges on /vms/9100: ", /the token lacks VM\.Clone, VM\.Audit → put template 9100 in the pool/);
      expect("✗ node pve7: ", /not in the cluster \(nodes: pve\) → fix the node name/);
      expect("✗ github org acme: ", /installation 4242 lacks administration: write → add the permission in the App's settings/);
      expect("✗ github nobody/else: ", /the App is not installed on nobody\/else → install it \(http:\/\/127\.0\.0\.1:\d+\/apps\/pve-runners-sim\/installations\/new\)/);
      expect("✓ github solo/dotfiles: ", /installation 4343/);
      expect("✗ terraform: ", /^✗ terraform: terraform-not-installed: not found \(is terraform\/tofu installed and on PATH\? set terraform\.binary in the config\)$/);
      assert.match(r.lines.at(-1)!, /^check: 7 problems \(\d+ checks\)$/, r.text);

      // A key that is a good RSA key but not the App's: GitHub refuses the JWT.
      const pem = join(world.serveEnv.CREDENTIALS_DIRECTORY!, "github-app.pem");
      const appKey = readFileSync(pem, "utf8");
      writeFileSync(pem, generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }) as string);
      const wrongKey = await check(world);
      assert.equal(wrongKey.status, 1);
      assert.match(line(wrongKey.lines, "✗ github app: ") ?? wrongKey.text, /401 .* → github\.appId \d+ and github\.privateKeyFile do not belong together/);
      assert.equal(wrongKey.lines.filter((l) => l.startsWith("✗ github ") || l.startsWith("✓ github ")).length, 1, "nothing more is asked of GitHub");

      // A broken secret file: the config's own problem, and nothing is contacted.
      writeFileSync(pem, appKey.split("\n").slice(0, 5).join("\n"));
      const broken = await check(world);
      assert.equal(broken.status, 1);
      assert.match(broken.lines[0], /^✗ config: github\.privateKeyFile: \S+ is not a readable PEM private key \(truncated or edited\?\)/);
      assert.ok(!broken.lines.some((l) => /^. (proxmox|github app|terraform)/.test(l)), broken.text);
    } finally {
      await world.stop();
    }
  });

  test("the privileges check asks for what pveum-setup grants: the role and SDN.Use", () => {
    const script = readFileSync(fileURLToPath(new URL("../../../systemd/pveum-setup.sh", import.meta.url)), "utf8");
    const privs = /^PRIVS="([^"]+)"/m.exec(script)?.[1].split(",");
    assert.deepEqual([...RUNNER_PRIVILEGES, ...BRIDGE_PRIVILEGES].sort(), privs?.sort());
    assert.deepEqual([...RUNNER_PRIVILEGES].sort(), [...SIM_TOKENS.runners.acls[0].privs].sort());
  });
});
