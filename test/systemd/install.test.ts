// systemd/install.sh under a temporary root, with recording stand-ins for the system commands
// (getent, groupadd, useradd, chown, systemctl): what lands where, with which modes, and that a second
// run changes nothing that matters.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseConfig } from "../../listener/app/config.js";

const repo = resolve(import.meta.dirname, import.meta.url.endsWith(".ts") ? "../.." : "../../..");
const script = join(repo, "systemd", "install.sh");
const mode = (p: string) => (statSync(p).mode & 0o7777).toString(8).padStart(4, "0");

function walk(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const n of readdirSync(dir).sort()) {
    const p = join(dir, n);
    out.push(p.slice(base.length));
    if (statSync(p).isDirectory()) out.push(...walk(p, base));
  }
  return out;
}

describe("systemd/install.sh", () => {
  let d: string;
  let src: string;
  let env: NodeJS.ProcessEnv;
  const log = () => (existsSync(join(d, "calls.log")) ? readFileSync(join(d, "calls.log"), "utf8").trim().split("\n") : []);
  const install = (args: string[], extra: NodeJS.ProcessEnv = {}) => spawnSync("bash", [script, ...args], { env: { ...env, ...extra }, encoding: "utf8" });

  before(() => {
    d = mkdtempSync(join(tmpdir(), "install-"));
    // A checkout as install.sh expects it, with a small stand-in for the built listener.
    src = join(d, "src");
    for (const f of ["systemd", "template"]) cpSync(join(repo, f), join(src, f), { recursive: true });
    mkdirSync(join(src, "listener"), { recursive: true });
    cpSync(join(repo, "listener", "config-example.yaml"), join(src, "listener", "config-example.yaml"));
    for (const f of ["package.json", "cdktf.json", "README.md"]) cpSync(join(repo, f), join(src, f));
    mkdirSync(join(src, "dist", "cli"), { recursive: true });
    writeFileSync(join(src, "dist", "cli", "main.js"), "console.log('pve-runners');\n");
    mkdirSync(join(src, "node_modules", "dep"), { recursive: true });
    writeFileSync(join(src, "node_modules", "dep", "index.js"), "");
    // System commands: record every call; users exist once created.
    const bin = join(d, "bin");
    mkdirSync(bin);
    const rec = (name: string, body = "") =>
      writeFileSync(join(bin, name), `#!/bin/bash\necho "${name} $*" >> ${JSON.stringify(join(d, "calls.log"))}\n${body}\n`, { mode: 0o755 });
    rec("getent", `grep -qx "$1 $2" ${JSON.stringify(join(d, "accounts"))} 2>/dev/null`);
    rec("groupadd", `echo "group \${@: -1}" >> ${JSON.stringify(join(d, "accounts"))}`);
    rec("useradd", `echo "passwd \${@: -1}" >> ${JSON.stringify(join(d, "accounts"))}`);
    rec("chown");
    rec("systemctl");
    env = {
      PATH: process.env.PATH,
      PVE_RUNNERS_SRC: src,
      PVE_RUNNERS_GETENT: join(bin, "getent"),
      PVE_RUNNERS_GROUPADD: join(bin, "groupadd"),
      PVE_RUNNERS_USERADD: join(bin, "useradd"),
      PVE_RUNNERS_CHOWN: join(bin, "chown"),
      PVE_RUNNERS_SYSTEMCTL: join(bin, "systemctl"),
    };
  });
  after(() => rmSync(d, { recursive: true, force: true }));

  test("--dry-run prints every action and changes nothing", () => {
    const root = join(d, "dry");
    mkdirSync(root);
    const r = install(["--dry-run", "--root", root]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(root), []);
    assert.match(r.stdout, /would run: \S*groupadd --system pve-runners\n/);
    assert.match(r.stdout, /would run: install -d -m 0750 .*\/etc\/pve-runners\n/);
    assert.match(r.stdout, /would run: install -m 0644 .*pve-runners\.service .*\/etc\/systemd\/system\/pve-runners\.service/);
    assert.match(r.stdout, /would run: .*systemctl enable --now pve-runners-deliver\.socket/);
    assert.deepEqual(log().filter((l) => !l.startsWith("getent")), [], "nothing but lookups ran");
  });

  test("installs users, dirs, config skeleton, helpers, units, template, the listener; enables the socket", () => {
    const root = join(d, "root");
    mkdirSync(root);
    writeFileSync(join(d, "calls.log"), "");
    const r = install(["--root", root]);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const calls = log();
    assert.ok(calls.includes("groupadd --system pve-runners"), calls.join("\n"));
    assert.ok(calls.includes("useradd --system --gid pve-runners --home-dir /var/lib/pve-runners --no-create-home --shell /usr/sbin/nologin --comment pve-runners webhook listener pve-runners"));
    assert.ok(calls.includes(`chown root:pve-runners ${root}/etc/pve-runners`));
    assert.ok(calls.includes(`chown root:pve-runners ${root}/etc/pve-runners/config.yaml`));
    assert.ok(calls.includes(`chown root:root ${root}/etc/pve-runners/credentials`));
    assert.deepEqual(calls.filter((c) => c.startsWith("systemctl")), ["systemctl daemon-reload", "systemctl enable --now pve-runners-deliver.socket"]);
    assert.ok(!calls.some((c) => /systemctl .*pve-runners\.service/.test(c)), "the listener is started by the admin, once configured");

    assert.equal(mode(join(root, "etc/pve-runners")), "0750");
    assert.equal(mode(join(root, "etc/pve-runners/credentials")), "0700");
    // The admin token: made once, random, root-only like every credential (the unit loads it).
    assert.deepEqual(readdirSync(join(root, "etc/pve-runners/credentials")), ["admin-token"]);
    assert.equal(mode(join(root, "etc/pve-runners/credentials/admin-token")), "0600");
    assert.match(readFileSync(join(root, "etc/pve-runners/credentials/admin-token"), "utf8"), /^[A-Za-z0-9_-]{43}\n$/);
    assert.ok(calls.includes(`chown root:root ${root}/etc/pve-runners/credentials/admin-token`));
    assert.equal(mode(join(root, "etc/pve-runners/config.yaml")), "0640");
    for (const h of ["deliver-jit", "deliver-jit-socket", "deliver-jit-client", "pveum-setup"]) assert.equal(mode(join(root, "usr/libexec/pve-runners", h)), "0755", h);
    for (const u of ["pve-runners.service", "pve-runners-deliver.socket", "pve-runners-deliver@.service"]) {
      assert.equal(mode(join(root, "etc/systemd/system", u)), "0644");
      assert.equal(readFileSync(join(root, "etc/systemd/system", u), "utf8"), readFileSync(join(src, "systemd", u), "utf8"));
    }
    for (const f of ["provision.sh", "docker-storage-driver.sh", "runner-once.sh"]) assert.equal(mode(join(root, "usr/lib/pve-runners/template", f)), "0755");
    assert.equal(mode(join(root, "usr/lib/pve-runners/template/pve-runner.service")), "0644");
    assert.ok(existsSync(join(root, "usr/share/pve-runners/github-app-manifest.json")));
    assert.ok(existsSync(join(root, "usr/share/doc/pve-runners/README.md")));
    assert.ok(existsSync(join(root, "usr/lib/pve-runners/dist/cli/main.js")));
    assert.ok(existsSync(join(root, "usr/lib/pve-runners/node_modules/dep/index.js")));
    assert.equal(readFileSync(join(root, "usr/bin/pve-runners"), "utf8"), '#!/bin/sh\nexec node /usr/lib/pve-runners/dist/cli/main.js "$@"\n');
    assert.equal(mode(join(root, "usr/bin/pve-runners")), "0755");

    // The skeleton is the example config, delivering through the socket, and it parses.
    const cfg = readFileSync(join(root, "etc/pve-runners/config.yaml"), "utf8");
    assert.match(cfg, /^ {2}helper: \[\/usr\/libexec\/pve-runners\/deliver-jit-client\]$/m);
    const { config } = parseConfig(cfg, { baseDir: join(root, "etc/pve-runners"), env: { CREDENTIALS_DIRECTORY: "/run/credentials/pve-runners.service" }, readSecrets: false });
    assert.deepEqual(config.delivery.helper, ["/usr/libexec/pve-runners/deliver-jit-client"]);
    assert.match(r.stdout, /Next steps/);
    assert.match(r.stdout, /pveum-setup --bridge/);
    assert.match(r.stdout, /systemctl enable --now pve-runners/);
  });

  test("a second run is idempotent: users and config kept, same files", () => {
    const root = join(d, "root");
    writeFileSync(join(root, "etc/pve-runners/config.yaml"), "# edited by the admin\n");
    writeFileSync(join(root, "etc/pve-runners/credentials/pve-token"), "x@pve!t=secret\n", { mode: 0o600 });
    const adminToken = readFileSync(join(root, "etc/pve-runners/credentials/admin-token"), "utf8");
    const before = walk(root);
    writeFileSync(join(d, "calls.log"), "");
    const r = install(["--root", root]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(walk(root), before);
    assert.equal(readFileSync(join(root, "etc/pve-runners/config.yaml"), "utf8"), "# edited by the admin\n");
    assert.equal(readFileSync(join(root, "etc/pve-runners/credentials/pve-token"), "utf8"), "x@pve!t=secret\n");
    assert.equal(readFileSync(join(root, "etc/pve-runners/credentials/admin-token"), "utf8"), adminToken, "the admin token is kept");
    assert.match(r.stdout, /admin-token exists: kept/);
    const calls = log();
    assert.ok(!calls.some((c) => /^(groupadd|useradd)/.test(c)), calls.join("\n"));
    assert.match(r.stdout, /group pve-runners exists/);
    assert.match(r.stdout, /config\.yaml exists: kept/);
  });

  test("under --root without given commands: no users, no chown, no systemctl; --no-app leaves the listener out", () => {
    const root = join(d, "pkg");
    mkdirSync(root);
    const bare = { PATH: process.env.PATH, PVE_RUNNERS_SRC: src };
    const r = spawnSync("bash", [script, "--root", root, "--no-app"], { env: bare, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /skipped under --root/);
    assert.ok(existsSync(join(root, "etc/systemd/system/pve-runners.service")));
    assert.equal(existsSync(join(root, "usr/lib/pve-runners/dist")), false);
    assert.equal(existsSync(join(root, "usr/bin/pve-runners")), false);
  });

  test("refuses a checkout that is not built, and unknown arguments", () => {
    const root = join(d, "unbuilt");
    mkdirSync(root);
    const bad = join(d, "src-unbuilt");
    cpSync(src, bad, { recursive: true });
    rmSync(join(bad, "dist"), { recursive: true });
    const r = install(["--root", root], { PVE_RUNNERS_SRC: bad });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /not built: run 'npm ci && npm run build'/);
    assert.equal(install(["--frobnicate"]).status, 2);
  });

  test("shows its usage", () => {
    const r = install(["--help"]);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /install\.sh \[--dry-run\] \[--root DIR\] \[--no-app\]/);
  });

  test("the installed helpers are the repository's, executable", () => {
    for (const h of ["deliver-jit", "deliver-jit-socket", "deliver-jit-client"]) {
      const p = join(repo, "systemd", h);
      assert.ok(statSync(p).mode & 0o111, `${h} is executable in the repository`);
    }
  });
});
