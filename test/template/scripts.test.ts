// Every shell script in template/ and systemd/ passes shellcheck; provision.sh and the one-job unit
// keep the properties the design relies on.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, import.meta.url.endsWith(".ts") ? "../.." : "../../..");
const hasShellcheck = spawnSync("shellcheck", ["--version"], { stdio: "ignore" }).status === 0;

/** Shell scripts: *.sh, or a #! line naming sh or bash. */
function shellScripts(): string[] {
  const out: string[] = [];
  for (const dir of ["template", "systemd"]) {
    for (const name of readdirSync(join(root, dir)).sort()) {
      const path = join(root, dir, name);
      if (!statSync(path).isFile()) continue;
      const first = readFileSync(path, "utf8").split("\n", 1)[0];
      if (name.endsWith(".sh") || /^#!\s*\S*\/(env\s+)?(ba)?sh\b/.test(first)) out.push(path);
    }
  }
  return out;
}

describe("shell scripts", () => {
  test("are found in template/ and systemd/", () => {
    const names = shellScripts().map((p) => p.slice(root.length + 1));
    for (const n of ["template/provision.sh", "template/docker-storage-driver.sh", "template/runner-once.sh", "systemd/deliver-jit"]) assert.ok(names.includes(n), n);
  });

  test("pass shellcheck", { skip: hasShellcheck ? false : "shellcheck is not installed (CI installs it: .ci/run; here: apt-get install shellcheck)" }, () => {
    const files = shellScripts();
    const r = spawnSync("shellcheck", ["--format=gcc", ...files], { encoding: "utf8" });
    assert.equal(r.status, 0, `shellcheck found problems:\n${r.stdout}${r.stderr}`);
  });

  test("parse with bash -n", () => {
    for (const f of shellScripts()) {
      const r = spawnSync("bash", ["-n", f], { encoding: "utf8" });
      assert.equal(r.status, 0, `${f}: ${r.stderr}`);
    }
  });
});

describe("template/provision.sh", () => {
  const src = readFileSync(join(root, "template", "provision.sh"), "utf8");

  test("pins the runner version and its SHA-256 sums, and verifies before extracting", () => {
    assert.match(src, /RUNNER_VERSION="\$\{RUNNER_VERSION:-2\.3\d\d\.\d+\}"/);
    assert.match(src, /RUNNER_SHA256_X64="\$\{RUNNER_SHA256_X64:-[0-9a-f]{64}\}"/);
    assert.match(src, /RUNNER_SHA256_ARM64="\$\{RUNNER_SHA256_ARM64:-[0-9a-f]{64}\}"/);
    const check = src.indexOf("sha256sum --check");
    const extract = src.indexOf("tar -xzf");
    assert.ok(check > 0 && extract > check, "the checksum is checked before tar runs");
    assert.match(src, /bin\/installdependencies\.sh/);
    assert.match(src, /RUNNER_DIR=\/opt\/actions-runner/);
  });

  test("installs the one-job unit where pve-runner.service expects it, and enables it", () => {
    const unit = readFileSync(join(root, "template", "pve-runner.service"), "utf8");
    assert.match(src, /install -D -m 0755 "\$here\/runner-once\.sh" \/usr\/local\/lib\/pve-runners\/runner-once/);
    assert.match(unit, /^ExecStart=\/usr\/local\/lib\/pve-runners\/runner-once$/m);
    assert.match(src, /install -m 0644 "\$here\/pve-runner\.service" \/etc\/systemd\/system\/pve-runner\.service/);
    assert.match(src, /systemctl enable pve-runner\.service/);
  });

  test("configures docker with the detected driver and bounded logs", () => {
    assert.match(src, /driver="\$\(bash "\$here\/docker-storage-driver\.sh"\)"/);
    assert.match(src, /"storage-driver": \$driver/);
    assert.match(src, /"log-driver": "local"/);
    assert.match(src, /"max-size": "10m"/);
    assert.match(src, /docker\.io/);
    assert.match(src, /usermod -aG docker "\$RUNNER_USER"/);
  });

  test("leaves every clone unique: machine-id, SSH host keys, apt lists, docker state", () => {
    assert.match(src, /truncate -s 0 \/etc\/machine-id/);
    assert.match(src, /rm -f \/etc\/ssh\/ssh_host_\*/);
    assert.match(src, /rm -rf \/var\/lib\/apt\/lists\/\*/);
    assert.match(src, /apt-get clean/);
    assert.match(src, /\/var\/lib\/docker/);
    assert.match(src, /zoneinfo\/UTC/);
  });

  test("bakes no secret in", () => {
    assert.doesNotMatch(src, /JITCONFIG|api_token|PVEAPIToken|BEGIN .*PRIVATE KEY|ghp_|ghs_/i);
  });
});

describe("template/pve-runner.service", () => {
  const unit = readFileSync(join(root, "template", "pve-runner.service"), "utf8");
  test("starts after the network and docker, runs once: Type=simple, never restarted", () => {
    assert.match(unit, /^After=network-online\.target docker\.service$/m);
    assert.match(unit, /^Wants=network-online\.target/m);
    assert.match(unit, /^Type=simple$/m);
    assert.match(unit, /^Restart=no$/m);
    assert.match(unit, /^WantedBy=multi-user\.target$/m);
  });

  test("systemd-analyze verify accepts it", { skip: spawnSync("systemd-analyze", ["--version"], { stdio: "ignore" }).status === 0 ? false : "systemd-analyze is not installed" }, () => {
    const r = spawnSync("systemd-analyze", ["verify", "--man=no", join(root, "template", "pve-runner.service")], { encoding: "utf8" });
    // ExecStart's binary only exists inside the template: that is the one complaint allowed.
    const problems = (r.stderr + r.stdout).split("\n").filter((l) => l.trim() && !/runner-once|is not executable|No such file/.test(l));
    assert.deepEqual(problems, []);
  });
});
