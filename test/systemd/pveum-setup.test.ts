// systemd/pveum-setup.sh: the least-privilege PVE identity, against a recording `pveum` stand-in.
import { test, describe, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { PVE_RUNNERS_ROLE, PVE_RUNNERS_SDN_ROLE, PveSim, SIM_TEMPLATE_VMID, SIM_TOKENS } from "../../sim/pve/index.js";
import { PveSimClient } from "../../sim/pve/client.js";

const repo = resolve(import.meta.dirname, import.meta.url.endsWith(".ts") ? "../.." : "../../..");
const script = join(repo, "systemd", "pveum-setup.sh");
// Exactly the role the simulator proves sufficient (and each privilege necessary).
const PRIVS = [...PVE_RUNNERS_ROLE, ...PVE_RUNNERS_SDN_ROLE];
const TOKEN_SECRET = "0b1c2d3e-4f50-4617-8899-aabbccddeeff";

describe("systemd/pveum-setup.sh", () => {
  let d: string;
  let pveum: string;
  const run = (args: string[]) => spawnSync("bash", [script, ...args], { env: { PATH: process.env.PATH, PVE_RUNNERS_PVEUM: pveum }, encoding: "utf8" });
  const calls = () => (existsSync(join(d, "calls")) ? readFileSync(join(d, "calls"), "utf8").trim().split("\n") : []);

  beforeEach(() => {
    d = mkdtempSync(join(tmpdir(), "pveum-"));
    pveum = join(d, "pveum");
    // Remembers what exists, answers like PVE when asked to create it again.
    writeFileSync(
      pveum,
      `#!/bin/bash
d=${JSON.stringify(d)}
printf '%s\\n' "$*" >> "$d/calls"
key="$1 $2 $3"
case "$1 $2" in
  "role add") grep -qx "role $3" "$d/state" 2>/dev/null && { echo "role '$3' already exists" >&2; exit 255; }; echo "role $3" >> "$d/state" ;;
  "pool add") grep -qx "pool $3" "$d/state" 2>/dev/null && { echo "create pool failed: pool '$3' already exists" >&2; exit 255; }; echo "pool $3" >> "$d/state" ;;
  "pool modify") m="$4 $5"; grep -qx "member $3 $m" "$d/state" 2>/dev/null && { echo "update pools failed: VM $5 is already a pool member" >&2; exit 255; }; echo "member $3 $m" >> "$d/state" ;;
  "user add") grep -qx "user $3" "$d/state" 2>/dev/null && { echo "create user failed: user '$3' already exists" >&2; exit 255; }; echo "user $3" >> "$d/state" ;;
  "user token") grep -qx "token $4 $5" "$d/state" 2>/dev/null && { echo "Token already exists." >&2; exit 255; }; echo "token $4 $5" >> "$d/state"
     echo '{"full-tokenid":"'"$4!$5"'","info":{"privsep":"1"},"value":"${TOKEN_SECRET}"}' ;;
esac
exit 0
`,
      { mode: 0o755 },
    );
  });
  afterEach(() => rmSync(d, { recursive: true, force: true }));

  test("--dry-run prints the pveum commands and runs none", () => {
    const r = run(["--dry-run", "--bridge", "vmbr1", "--vlan", "30", "--storage", "local-lvm", "--template-vmid", "9000", "--token-file", join(d, "pve-token")]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(calls(), []);
    assert.equal(existsSync(join(d, "pve-token")), false);
    const cmds = r.stdout.split("\n").filter((l) => l && !l.startsWith("#"));
    assert.deepEqual(cmds, [
      `${pveum} role add PVERunners --privs ${PRIVS.join(",")}`,
      `${pveum} pool add ci --comment 'pve-runners: the runner template, its storage and every runner'`,
      `${pveum} pool modify ci --vms 9000`,
      `${pveum} pool modify ci --storage local-lvm`,
      `${pveum} user add pve-runners@pve --comment 'pve-runners webhook listener (token only)'`,
      `${pveum} user token add pve-runners@pve listener --privsep 1 --comment 'pve-runners listener' --output-format json`,
      `${pveum} acl modify /pool/ci --users pve-runners@pve --roles PVERunners`,
      `${pveum} acl modify /pool/ci --tokens 'pve-runners@pve!listener' --roles PVERunners`,
      `${pveum} acl modify /sdn/zones/localnetwork/vmbr1 --users pve-runners@pve --roles PVERunners`,
      `${pveum} acl modify /sdn/zones/localnetwork/vmbr1 --tokens 'pve-runners@pve!listener' --roles PVERunners`,
    ]);
  });

  test("--placement adds a read-only Sys.Audit role on /nodes, nothing more", () => {
    const r = run(["--dry-run", "--placement", "--bridge", "vmbr1"]);
    assert.equal(r.status, 0, r.stderr);
    const cmds = r.stdout.split("\n").filter((l) => l && !l.startsWith("#"));
    assert.deepEqual(cmds.slice(-3), [
      `${pveum} role add PVERunnersAudit --privs Sys.Audit`,
      `${pveum} acl modify /nodes --users pve-runners@pve --roles PVERunnersAudit`,
      `${pveum} acl modify /nodes --tokens 'pve-runners@pve!listener' --roles PVERunnersAudit`,
    ]);
    assert.ok(!run(["--dry-run", "--bridge", "vmbr1"]).stdout.includes("/nodes"), "without --placement nothing on /nodes");
    // Several template copies join the pool in one go; a malformed list is refused.
    assert.ok(run(["--dry-run", "--bridge", "vmbr1", "--template-vmid", "9000,9001"]).stdout.includes("pool modify ci --vms 9000,9001"));
    assert.equal(run(["--dry-run", "--bridge", "vmbr1", "--template-vmid", "9000,,9001"]).status, 2);
  });

  test("creates role, pool, user, privsep token and ACLs; the token's secret goes into the file only", () => {
    const file = join(d, "creds", "pve-token");
    const r = run(["--bridge", "vmbr1", "--vlan", "30", "--storage", "local-lvm", "--template-vmid", "9000", "--token-file", file]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(file, "utf8"), `pve-runners@pve!listener=${TOKEN_SECRET}\n`);
    assert.equal((statSync(file).mode & 0o777).toString(8), "600");
    assert.ok(!r.stdout.includes(TOKEN_SECRET) && !r.stderr.includes(TOKEN_SECRET), "the secret is never printed");
    const c = calls();
    assert.equal(c[0], `role add PVERunners --privs ${PRIVS.join(",")}`);
    assert.ok(c.includes("user token add pve-runners@pve listener --privsep 1 --comment pve-runners listener --output-format json"));
    assert.ok(c.includes("acl modify /sdn/zones/localnetwork/vmbr1 --tokens pve-runners@pve!listener --roles PVERunners"));
    assert.ok(c.includes("acl modify /pool/ci --users pve-runners@pve --roles PVERunners"));
  });

  test("a second run keeps what exists: role privileges re-set, token not regenerated", () => {
    const file = join(d, "pve-token");
    assert.equal(run(["--bridge", "vmbr1", "--storage", "local-lvm", "--template-vmid", "9000", "--token-file", file]).status, 0);
    writeFileSync(join(d, "calls"), "");
    const r = run(["--bridge", "vmbr1", "--storage", "local-lvm", "--template-vmid", "9000", "--token-file", file]);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.ok(calls().includes(`role modify PVERunners --privs ${PRIVS.join(",")}`));
    assert.match(r.stdout, /kept: token pve-runners@pve!listener exists/);
    assert.match(r.stdout, /kept: .*already a pool member/);
    assert.equal(readFileSync(file, "utf8"), `pve-runners@pve!listener=${TOKEN_SECRET}\n`);
  });

  test("refuses missing or malformed arguments", () => {
    assert.equal(run([]).status, 2);
    assert.equal(run(["--bridge", "vmbr1; rm -rf /"]).status, 2);
    assert.equal(run(["--bridge", "vmbr1", "--vlan", "x"]).status, 2);
    assert.equal(run(["--bridge", "vmbr1", "--user", "nouser"]).status, 2);
    assert.equal(run(["--bridge"]).status, 2);
    assert.deepEqual(calls(), []);
  });

  test("a VLAN tag outside 1..4094 is refused with the range (PVE's net tag)", () => {
    for (const vlan of ["5000", "4095", "0", "030", "x"]) {
      const r = run(["--bridge", "vmbr1", "--vlan", vlan]);
      assert.equal(r.status, 2, vlan);
      assert.equal(r.stderr, `pveum-setup: bad VLAN tag '${vlan}' (an integer from 1 to 4094)\n`);
    }
    assert.equal(run(["--dry-run", "--bridge", "vmbr1", "--vlan", "4094"]).status, 0);
    assert.deepEqual(calls(), []);
  });

  test("without pveum: one line saying it runs on a PVE node, nothing else", () => {
    const r = spawnSync("bash", [script, "--bridge", "vmbr1"], { env: { PATH: "/usr/bin:/bin", PVE_RUNNERS_PVEUM: join(d, "no-such-pveum") }, encoding: "utf8" });
    assert.equal(r.status, 2);
    assert.equal(r.stderr, `pveum-setup: '${join(d, "no-such-pveum")}' not found: run this as root on a Proxmox VE node (or see the commands with --dry-run)\n`);
    assert.equal(r.stdout, "");
    // --dry-run needs no pveum: it only prints.
    const dry = spawnSync("bash", [script, "--dry-run", "--bridge", "vmbr1"], { env: { PATH: "/usr/bin:/bin", PVE_RUNNERS_PVEUM: join(d, "no-such-pveum") }, encoding: "utf8" });
    assert.equal(dry.status, 0, dry.stderr);
  });

  test("--help prints the usage comment and no line of code", () => {
    const r = run(["--help"]);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^pve-runners: the least-privilege Proxmox VE identity/);
    assert.match(r.stdout, /pveum-setup --bridge vmbr1/);
    for (const code of ["set -euo", "umask", "export LC_ALL", "PRIVS="]) assert.ok(!r.stdout.includes(code), `no '${code}' in --help`);
  });

  describe("--firewall, against the PVE simulator through a pvesh stand-in", () => {
    let sim: PveSim;
    let pvesh: string;
    const runFw = (args: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((done) => {
        const child = spawn("bash", [script, "--bridge", "vmbr1", "--template-vmid", String(SIM_TEMPLATE_VMID), "--firewall", ...args], { env: { PATH: process.env.PATH, PVE_RUNNERS_PVEUM: pveum, PVE_RUNNERS_PVESH: pvesh } });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (b) => (stdout += b));
        child.stderr.on("data", (b) => (stderr += b));
        child.on("close", (status) => done({ status, stdout, stderr }));
      });

    beforeEach(async () => {
      sim = new PveSim({ timeScale: 0.01 });
      const url = await sim.start(0, "127.0.0.1");
      pvesh = join(d, "pvesh");
      // pvesh get|create|set PATH [--key value]... as root: GET, POST, PUT; errors on stderr, exit 255.
      writeFileSync(
        pvesh,
        `#!/usr/bin/env node
const [verb, path, ...rest] = process.argv.slice(2);
const params = new URLSearchParams();
for (let i = 0; i < rest.length; i += 2) if (rest[i] !== "--output-format") params.set(rest[i].replace(/^--/, ""), rest[i + 1]);
const method = { get: "GET", create: "POST", set: "PUT" }[verb];
const url = ${JSON.stringify(url)} + "/api2/json" + path.replace("/nodes/localhost/", "/nodes/pve/") + (method === "GET" && [...params].length ? "?" + params : "");
fetch(url, { method, headers: { Authorization: "PVEAPIToken=${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}", "Content-Type": "application/x-www-form-urlencoded" }, body: method === "GET" ? undefined : params.toString() })
  .then(async (r) => {
    const body = await r.json().catch(() => null);
    if (!r.ok) { process.stderr.write(r.status + " " + r.statusText + " " + JSON.stringify(body?.errors ?? {}) + "\\n"); process.exit(255); }
    if (verb === "get") process.stdout.write(JSON.stringify(body.data) + "\\n");
  });
`,
        { mode: 0o755 },
      );
    });
    afterEach(() => sim.stop());

    test("root makes the egress group and gives the template firewall options and the group: every clone has them", async () => {
      const r = await runFw(["--dns", "10.1.0.53"]);
      assert.equal(r.status, 0, r.stderr);
      // The datacenter firewall is only checked, never switched on: that also filters the hosts.
      assert.match(r.stderr, /WARNING: the datacenter firewall is off/);
      const root = new PveSimClient(sim.url);
      const rules = (await root.get<Array<Record<string, unknown>>>("/cluster/firewall/groups/pve-runners")).data.map((x) => [x.action, x.proto ?? "", x.dport ?? x.sport ?? "", x.dest ?? "", x.enable]);
      assert.deepEqual(rules, [
        ["ACCEPT", "udp", "53", "10.1.0.53", 1],
        ["ACCEPT", "tcp", "53", "10.1.0.53", 1],
        ["DROP", "udp", "67", "", 1],
        ["DROP", "", "", "10.0.0.0/8", 1],
        ["DROP", "", "", "172.16.0.0/12", 1],
        ["DROP", "", "", "192.168.0.0/16", 1],
        ["DROP", "", "", "169.254.0.0/16", 1],
        ["DROP", "", "", "100.64.0.0/10", 1],
        ["DROP", "", "", "fc00::/7", 1],
      ]);
      // A clone made with the runners token starts with the template's firewall.
      const runners = root.as(SIM_TOKENS.runners);
      assert.equal(await runners.task("POST", runners.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: 700, pool: "ci", full: 0 }), "OK");
      const fw = sim.firewall(700);
      assert.equal(fw?.options.enable, "1");
      assert.equal(fw?.options.policy_in, "DROP");
      assert.equal(fw?.options.radv, "0");
      assert.deepEqual(fw?.rules.map((x) => [x.type, x.action, x.iface, x.enable]), [["group", "pve-runners", "net0", "1"]]);

      // A second run keeps the group as it is and adds no second reference to it.
      const again = await runFw([]);
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stdout, /kept: security group pve-runners exists/);
      assert.match(again.stdout, /kept: template 9000 already uses security group pve-runners/);
      assert.equal((await root.get<unknown[]>("/cluster/firewall/groups/pve-runners")).data.length, 9);
      assert.equal(sim.firewall(SIM_TEMPLATE_VMID)?.rules.length, 1);
    });

    test("--firewall needs the templates; --dns takes addresses only", async () => {
      assert.equal(run(["--bridge", "vmbr1", "--firewall"]).status, 2);
      assert.equal((await runFw(["--dns", "10.1.0.53;reboot"])).status, 2);
    });
  });
});
