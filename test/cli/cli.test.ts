// The `pve-runners` command as an operator runs it: the README's commands that need no PVE host.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const cli = join(root, "dist", "cli", "main.js");
const example = join(root, "listener", "config-example.yaml");
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", env: { ...process.env, CREDENTIALS_DIRECTORY: "" } });

describe("pve-runners CLI", () => {
  test("--help lists every command", () => {
    const r = run("--help");
    assert.equal(r.status, 0);
    for (const c of ["serve", "sweep", "demo", "stack", "template", "sim"]) assert.match(r.stdout, new RegExp(`\\n  ${c}\\b`), `${c} in:\n${r.stdout}`);
  });

  test("stack synth prints a runner stack from the example config, with no secret in it", () => {
    const r = run("stack", "synth", "--config", example, "--name", "runner-abc123");
    assert.equal(r.status, 0, r.stderr);
    const stack = JSON.parse(r.stdout);
    const ct = stack.resource.proxmox_virtual_environment_container.runner;
    assert.equal(ct.initialization.hostname, "runner-abc123");
    assert.equal(ct.network_interface[0].vlan_id, 30);
    assert.equal(ct.clone.full, false);
    assert.equal(stack.terraform.backend.local.path, "terraform.tfstate");
    assert.ok(!("api_token" in stack.provider.proxmox[0]), "the token reaches terraform by env only");
  });

  test("template synth prints the template stack from the example config", () => {
    const r = run("template", "synth", "--config", example);
    assert.equal(r.status, 0, r.stderr);
    const stack = JSON.parse(r.stdout);
    assert.ok(stack.resource.proxmox_virtual_environment_container, "a container");
    assert.ok(stack.resource.proxmox_virtual_environment_download_file, "the CT image download");
  });

  test("template deploy without root credentials in the environment says what to set", () => {
    const r = spawnSync(process.execPath, [cli, "template", "deploy", "--config", example], { encoding: "utf8", env: { PATH: process.env.PATH } });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /PROXMOX_VE_USERNAME=root@pam and PROXMOX_VE_PASSWORD/);
  });

  test("the admin commands send the admin token (config, PVE_RUNNERS_ADMIN_TOKEN_FILE, --token-file) and JSON bodies", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pve-runners-cli-"));
    const token = "cli-admin-token-0123456789abcdefghij";
    writeFileSync(join(dir, "admin-token"), token + "\n", { mode: 0o600 });
    writeFileSync(join(dir, "other-token"), "other-admin-token-0123456789abcdef\n", { mode: 0o600 });
    const seen: Array<{ method?: string; url?: string; headers: IncomingHttpHeaders; body: string }> = [];
    const server = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c));
      req.on("end", () => {
        seen.push({ method: req.method, url: req.url, headers: req.headers, body });
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ draining: req.url === "/api/drain" }));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // Async: the recording server runs in this process.
    const runAsync = (env: NodeJS.ProcessEnv, ...args: string[]) =>
      new Promise<{ status: number; stderr: string }>((resolve) =>
        execFile(process.execPath, [cli, ...args], { encoding: "utf8", env: { PATH: process.env.PATH, ...env } }, (err, _out, stderr) => resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr })),
      );
    try {
      // The example config names ${CREDENTIALS_DIRECTORY}/admin-token.
      const a = await runAsync({ CREDENTIALS_DIRECTORY: dir }, "drain", "--config", example, "--url", url);
      assert.equal(a.status, 0, a.stderr);
      const b = await runAsync({ CREDENTIALS_DIRECTORY: dir, PVE_RUNNERS_ADMIN_TOKEN_FILE: join(dir, "other-token") }, "resume", "--config", example, "--url", url);
      assert.equal(b.status, 0, b.stderr);
      const c = await runAsync({ PVE_RUNNERS_ADMIN_TOKEN_FILE: join(dir, "other-token") }, "drain", "--config", example, "--url", url, "--token-file", join(dir, "admin-token"));
      assert.equal(c.status, 0, c.stderr);
      assert.deepEqual(seen.map((r) => [r.method, r.url, r.headers.authorization]), [
        ["POST", "/api/drain", `Bearer ${token}`],
        ["POST", "/api/resume", "Bearer other-admin-token-0123456789abcdef"],
        ["POST", "/api/drain", `Bearer ${token}`],
      ]);
      for (const r of seen) {
        assert.equal(r.headers["content-type"], "application/json");
        assert.equal(r.body, "{}");
      }
      const missing = await runAsync({ CREDENTIALS_DIRECTORY: join(dir, "nowhere") }, "status", "--config", example, "--url", url);
      assert.equal(missing.status, 2);
      assert.equal(missing.stderr, `pve-runners: cannot read the admin token ${join(dir, "nowhere", "admin-token")} (ENOENT): run as root, or point --token-file or PVE_RUNNERS_ADMIN_TOKEN_FILE at a copy you can read\n`);
      assert.equal(seen.length, 3, "no request without a token");
      // --url with a token file replaces the config: a config that does not exist is never read.
      const noConfig = await runAsync({}, "drain", "--url", `${url}/`, "--token-file", join(dir, "admin-token"), "--config", join(dir, "no-such-config.yaml"));
      assert.equal(noConfig.status, 0, noConfig.stderr);
      assert.deepEqual([seen[3].method, seen[3].url, seen[3].headers.authorization], ["POST", "/api/drain", `Bearer ${token}`]);
    } finally {
      server.close();
    }
  });

  test("serve with a bad config exits 2 and lists every problem", () => {
    const dir = mkdtempSync(join(tmpdir(), "pve-runners-cli-"));
    const bad = join(dir, "config.yaml");
    writeFileSync(bad, readFileSync(example, "utf8").replace("vlan: 30", "vlan: 9999").replace("appId: 123456", "appId: -1"));
    const r = run("serve", "--config", bad);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /is not valid:/);
    assert.match(r.stderr, /- github\.appId:/);
    assert.match(r.stderr, /- proxmox\.vlan:/);
  });

  // A person's mistake gets one line and a non-zero exit, never a stack trace.
  const oneLine = (r: { stderr: string; stdout: string }) => {
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, `one line, got:\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
  };

  test("stack synth --label-set nosuch: one line naming the sets there are", () => {
    const r = run("stack", "synth", "--config", example, "--label-set", "nosuch");
    assert.equal(r.status, 2);
    oneLine(r);
    assert.match(r.stderr, /^pve-runners: no label set named 'nosuch' in .* \(it has: [a-z0-9-]+/);
    assert.equal(r.stdout, "");
  });

  test("stack synth --name 'Bad Name!': refused, nothing written (it would be the hostname and the runner name)", () => {
    const out = mkdtempSync(join(tmpdir(), "pve-runners-cli-"));
    for (const name of ["Bad Name!", "runner_1", "-runner", "runner-", "r".repeat(64)]) {
      const r = run("stack", "synth", "--config", example, "--name", name, "--out", join(out, "s"));
      assert.equal(r.status, 2, name);
      oneLine(r);
      assert.match(r.stderr, /^pve-runners: --name '.*': a runner name is/);
    }
    assert.deepEqual(readdirSync(out), [], "no stack written");
  });

  test("demo --jobs 1.5 (or 0, or x): refused with 'integer', before anything starts", () => {
    for (const n of ["1.5", "0", "x", "-2"]) {
      const r = run("demo", "--jobs", n);
      assert.equal(r.status, 1, n);
      oneLine(r);
      assert.match(r.stderr, /--jobs <n>.*must be a positive integer/);
      assert.equal(r.stdout, "", "the demo did not start");
    }
  });

  test("an unknown option: commander's line (and its suggestion), exit 1, no stack trace", () => {
    const r = run("stack", "synth", "--nope");
    assert.equal(r.status, 1);
    assert.doesNotMatch(r.stderr, /^\s+at /m);
    assert.match(r.stderr, /unknown option '--nope'/);
  });
});
