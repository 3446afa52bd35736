// The host units: the listener's hardening measured with systemd-analyze, the delivery socket and
// its root service, and the GitHub App manifest.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parse as parseYaml } from "yaml";

const root = resolve(import.meta.dirname, import.meta.url.endsWith(".ts") ? "../.." : "../../..");
const unitPath = (n: string) => join(root, "systemd", n);
const unit = (n: string) => readFileSync(unitPath(n), "utf8");
const hasAnalyze = spawnSync("systemd-analyze", ["--version"], { stdio: "ignore" }).status === 0;
/** A setting's values, in order (a key may repeat). */
const values = (text: string, key: string) => [...text.matchAll(new RegExp(`^${key}=(.*)$`, "gm"))].map((m) => m[1]);

/** `systemd-analyze security --offline=true` where this systemd has it (v250+); null otherwise. */
function exposure(file: string): { figure: number; report: string } | null {
  const r = spawnSync("systemd-analyze", ["security", "--offline=true", "--no-pager", file], { encoding: "utf8" });
  const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(r.stdout + r.stderr);
  return m ? { figure: Number(m[1]), report: r.stdout } : null;
}

/** `systemd-analyze verify`, minus complaints about binaries that only exist once installed. */
function verify(...files: string[]): string[] {
  const r = spawnSync("systemd-analyze", ["verify", "--man=no", ...files.map(unitPath)], { encoding: "utf8" });
  return (r.stdout + r.stderr)
    .split("\n")
    .filter((l) => l.trim())
    .filter((l) => !/Command \/usr\/(bin\/pve-runners|libexec\/pve-runners\/[\w-]+) is not executable: No such file or directory/.test(l));
}

describe("systemd/pve-runners.service", () => {
  const text = unit("pve-runners.service");

  test(
    "exposure measured by `systemd-analyze security --offline=true` is at most 2.0",
    { skip: hasAnalyze ? false : "systemd-analyze is not installed (apt-get install systemd)" },
    (t) => {
      const e = exposure(unitPath("pve-runners.service"));
      if (!e) {
        t.skip("this systemd-analyze has no --offline security mode (needs systemd 250+)");
        return;
      }
      t.diagnostic(`pve-runners.service exposure: ${e.figure.toFixed(1)} (systemd-analyze security --offline=true)`);
      assert.ok(e.figure <= 2.0, `exposure ${e.figure}:\n${e.report}`);
      const th = spawnSync("systemd-analyze", ["security", "--offline=true", "--threshold=20", "--no-pager", unitPath("pve-runners.service")], { stdio: "ignore" });
      assert.equal(th.status, 0, "--threshold=20 (2.0) passes too");
    },
  );

  test("systemd-analyze verify accepts the three units", { skip: hasAnalyze ? false : "systemd-analyze is not installed" }, () => {
    assert.deepEqual(verify("pve-runners.service"), []);
    assert.deepEqual(verify("pve-runners-deliver.socket", "pve-runners-deliver@.service"), []);
  });

  test("runs the listener unprivileged with Type=exec, credentials, a state dir and restart on failure", () => {
    assert.deepEqual(values(text, "Type"), ["exec"]);
    assert.deepEqual(values(text, "User"), ["pve-runners"]);
    assert.deepEqual(values(text, "ExecStart"), ["/usr/bin/pve-runners serve --config /etc/pve-runners/config.yaml"]);
    assert.deepEqual(values(text, "StateDirectory"), ["pve-runners"]);
    assert.deepEqual(values(text, "Restart"), ["on-failure"]);
    assert.equal(values(text, "RestartSec").length, 1);
    assert.deepEqual(values(text, "ExecReload"), ["/bin/kill -HUP $MAINPID"], "reload re-reads the config (SIGHUP)");
    assert.deepEqual(values(text, "UMask"), ["0077"]);
    assert.deepEqual(values(text, "CapabilityBoundingSet"), [""]);
    assert.deepEqual(values(text, "RestrictAddressFamilies"), ["AF_UNIX AF_INET AF_INET6"]);
    assert.deepEqual(values(text, "MemoryDenyWriteExecute"), ["no"], "Node's JIT needs W+X memory");
    for (const k of ["NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "RestrictNamespaces", "LockPersonality", "RestrictRealtime", "RestrictSUIDSGID", "ProtectClock", "ProtectHostname"])
      assert.deepEqual(values(text, k), ["yes"], k);
    assert.deepEqual(values(text, "ProtectSystem"), ["strict"]);
    assert.deepEqual(values(text, "SystemCallArchitectures"), ["native"]);
    // terraform's priority: only the two calls that lower it are given back (test/systemd/unit-syscall-filter.test.ts runs it).
    assert.deepEqual(values(text, "SystemCallFilter"), ["@system-service", "~@privileged @resources", "setpriority sched_setscheduler"]);
    assert.deepEqual(values(text, "SystemCallErrorNumber"), ["EPERM"]);
  });

  test("loads exactly the credentials the example config names in ${CREDENTIALS_DIRECTORY}", () => {
    const creds = values(text, "LoadCredential").map((v) => v.split(":"));
    for (const [name, path] of creds) assert.equal(path, `/etc/pve-runners/credentials/${name}`);
    const cfg = parseYaml(readFileSync(join(root, "listener", "config-example.yaml"), "utf8"));
    const named = [cfg.github.privateKeyFile, cfg.github.webhookSecretFile, cfg.proxmox.tokenFile, cfg.admin.tokenFile].map((p: string) => p.replace("${CREDENTIALS_DIRECTORY}/", ""));
    assert.deepEqual(creds.map(([n]) => n).sort(), named.sort());
  });
});

describe("systemd/pve-runners-deliver.socket and pve-runners-deliver@.service", () => {
  test("the socket: root-owned, for the pve-runners group only, one service per connection", () => {
    const s = unit("pve-runners-deliver.socket");
    assert.deepEqual(values(s, "ListenStream"), ["/run/pve-runners-deliver.sock"]);
    assert.deepEqual(values(s, "SocketUser"), ["root"]);
    assert.deepEqual(values(s, "SocketGroup"), ["pve-runners"]);
    assert.deepEqual(values(s, "SocketMode"), ["0660"]);
    assert.deepEqual(values(s, "Accept"), ["yes"]);
    assert.deepEqual(values(s, "WantedBy"), ["sockets.target"]);
  });

  test("the service: the connection as stdin/stdout, the wrapper, bounded in time", () => {
    const s = unit("pve-runners-deliver@.service");
    assert.deepEqual(values(s, "StandardInput"), ["socket"]);
    assert.deepEqual(values(s, "StandardOutput"), ["socket"]);
    assert.deepEqual(values(s, "StandardError"), ["journal"]);
    assert.deepEqual(values(s, "ExecStart"), ["/usr/libexec/pve-runners/deliver-jit-socket"]);
    assert.deepEqual(values(s, "Environment"), ["PVE_RUNNERS_DELIVER_JIT=/usr/libexec/pve-runners/deliver-jit"]);
    assert.deepEqual(values(s, "User"), [], "root: pct exec needs it");
    assert.equal(values(s, "RuntimeMaxSec").length, 1);
    assert.deepEqual(values(s, "IPAddressDeny"), ["any"]);
  });

  test("the listener is ordered after the socket", () => {
    const l = unit("pve-runners.service");
    assert.match(values(l, "After")[0], /pve-runners-deliver\.socket/);
    assert.match(values(l, "Wants")[0], /pve-runners-deliver\.socket/);
  });
});

describe("systemd/github-app-manifest.json", () => {
  test("a private App with the runner permissions and the workflow_job event", () => {
    const m = JSON.parse(readFileSync(unitPath("github-app-manifest.json"), "utf8"));
    assert.equal(typeof m.name, "string");
    assert.match(m.url, /^https:\/\//);
    assert.match(m.hook_attributes.url, /^https:\/\/.*\/webhooks\/github$/);
    assert.equal(m.hook_attributes.active, true);
    assert.match(m.redirect_url, /^https:\/\//);
    assert.equal(m.public, false);
    assert.deepEqual(m.default_permissions, { administration: "write", organization_self_hosted_runners: "write", actions: "read", metadata: "read", checks: "write" });
    assert.deepEqual(m.default_events, ["workflow_job"]);
  });
});
