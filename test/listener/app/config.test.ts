// The config file: defaults, every problem listed at once, secrets read from files and never echoed.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { generateKeyPairSync } from "node:crypto";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { stringify } from "yaml";
import { ConfigError, loadConfig, parseConfig } from "../../../listener/app/config.js";

// A real key: the config parses the PEM, so a truncated one is caught at load.
const PEM = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ type: "pkcs8", format: "pem" }) as string;
const TOKEN = "pve-runners@pve!listener=8a3b5c1e-2d4f-4e6a-9b7c-0d1e2f3a4b5c";
const WEBHOOK = "s3cr3t-webhook-value-0123456789";
const ADMIN = "admin-token-value-0123456789abcdef";

let dir: string;
const minimal = () => ({
  github: { appId: 42, privateKeyFile: "${CREDENTIALS_DIRECTORY}/app.pem", webhookSecretFile: "creds/webhook" },
  proxmox: { endpoint: "https://pve.example:8006/", tokenFile: "${CREDENTIALS_DIRECTORY}/token", node: "pve", templateVmid: 9000, bridge: "vmbr1", vlan: 30, pool: "ci" },
  labelSets: [{ name: "linux", labels: ["self-hosted", "linux"] }],
  allow: { orgs: ["acme"] },
});
const env = () => ({ CREDENTIALS_DIRECTORY: join(dir, "creds") });
const problemsOf = (fn: () => unknown): string[] => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  assert.fail("expected a ConfigError");
};

describe("config", () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "pve-runners-config-"));
    const { mkdir } = await import("node:fs/promises");
    await mkdir(join(dir, "creds"));
    await writeFile(join(dir, "creds", "app.pem"), PEM);
    await writeFile(join(dir, "creds", "token"), TOKEN + "\n");
    await writeFile(join(dir, "creds", "webhook"), WEBHOOK + "\n");
    await writeFile(join(dir, "creds", "admin-token"), ADMIN + "\n");
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test("a minimal file gets the documented defaults and its secrets from files", () => {
    const { config, secrets } = parseConfig(stringify(minimal()), { baseDir: dir, env: env() });
    assert.equal(config.github.baseUrl, "https://api.github.com");
    assert.equal(config.github.apiVersion, "2022-11-28");
    assert.equal(config.github.runnerScope, "repo");
    assert.equal(config.github.webhookPath, "/webhooks/github");
    assert.equal(config.proxmox.linkedClone, true);
    assert.equal(config.delivery.mode, "pct");
    assert.equal(config.listener.host, "127.0.0.1");
    assert.equal(config.terraform.binary, "terraform");
    assert.deepEqual([config.terraform.schedIdle, config.terraform.nice], [true, 10], "terraform runs behind the listener by default");
    assert.equal(config.labelSets[0].cores, 2);
    assert.equal(config.sweeper.enabled, true);
    assert.deepEqual(config.allow, { repos: [], orgs: ["acme"], any: false });
    // ${CREDENTIALS_DIRECTORY} expanded, relative paths resolved against the config's directory.
    assert.equal(config.github.privateKeyFile, join(dir, "creds", "app.pem"));
    assert.equal(config.github.webhookSecretFile, resolve(dir, "creds/webhook"));
    assert.deepEqual(secrets, { githubAppPrivateKey: PEM.trim(), webhookSecret: WEBHOOK, pveApiToken: TOKEN, adminToken: ADMIN });
    assert.equal(config.admin.tokenFile, join(dir, "creds", "admin-token"), "the admin token: the unit's admin-token credential by default");
    assert.deepEqual(config.admin.allowedHosts, []);
  });

  test("the admin token is required on loopback too; only a disabled admin listener needs none", () => {
    const loopback = minimal() as Record<string, any>;
    loopback.admin = { host: "127.0.0.1", tokenFile: "${CREDENTIALS_DIRECTORY}/missing-admin-token" };
    assert.deepEqual(problemsOf(() => parseConfig(stringify(loopback), { baseDir: dir, env: env() })), [`admin.tokenFile: cannot read ${join(dir, "creds", "missing-admin-token")} (ENOENT)`]);
    const off = minimal() as Record<string, any>;
    off.admin = { enabled: false, tokenFile: "${CREDENTIALS_DIRECTORY}/missing-admin-token" };
    assert.equal(parseConfig(stringify(off), { baseDir: dir, env: env() }).secrets.adminToken, undefined);
    const hosts = minimal() as Record<string, any>;
    hosts.admin = { allowedHosts: ["runners.example.net", "10.0.0.5", "::1", "bad host", "name:8791", "http://x", "bad:8791"] };
    assert.deepEqual(problemsOf(() => parseConfig(stringify(hosts), { baseDir: dir, env: env() })).filter((p) => p.startsWith("admin.allowedHosts")).map((p) => p.split(":")[0]), [
      "admin.allowedHosts[3]", "admin.allowedHosts[4]", "admin.allowedHosts[5]", "admin.allowedHosts[6]",
    ]);
  });

  test("every problem is listed at once, each with its path", () => {
    const bad = minimal() as Record<string, any>;
    bad.github.appId = "forty-two";
    bad.proxmox.vlan = 5000;
    bad.proxmox.endpoint = "pve.example:8006";
    bad.labelSets.push({ name: "linux", labels: [] });
    bad.listner = { port: 1 };
    const problems = problemsOf(() => parseConfig(stringify(bad), { baseDir: dir, env: env() }));
    const has = (prefix: string) => assert.ok(problems.some((p) => p.startsWith(prefix)), `a problem at ${prefix} in:\n${problems.join("\n")}`);
    has("github.appId:");
    has("proxmox.vlan:");
    has("proxmox.endpoint:");
    has("labelSets[1].labels:");
    has("(top level): Unrecognized key");
    assert.ok(problems.length >= 5);
  });

  test("proxmox.endpoint must be https (as bpg and pveproxy): one clear error; only the simulator's own URL is exempt", () => {
    const plain = minimal();
    plain.proxmox.endpoint = "http://pve.example:8006/";
    assert.deepEqual(problemsOf(() => parseConfig(stringify(plain), { baseDir: dir, env: env() })), [
      "proxmox.endpoint: must be https:// (http://pve.example:8006/): PVE serves its API on https://HOST:8006/ only, and bpg refuses anything else",
    ]);
    // The simulator world's exemption names one URL; any other plain-http endpoint is still refused.
    assert.equal(parseConfig(stringify(plain), { baseDir: dir, env: env(), simulatorPveEndpoint: "http://pve.example:8006/" }).config.proxmox.endpoint, "http://pve.example:8006/");
    assert.equal(problemsOf(() => parseConfig(stringify(plain), { baseDir: dir, env: env(), simulatorPveEndpoint: "http://127.0.0.1:1234/" })).length, 1);
  });

  test("cross-field rules: duplicate label sets, an empty allowlist, a storage for linked clones", () => {
    const bad = minimal() as Record<string, any>;
    bad.labelSets.push({ name: "linux", labels: ["x"] });
    bad.allow = {};
    bad.proxmox.storage = "local-lvm";
    bad.sweeper = { schedule: "every five minutes" };
    const problems = problemsOf(() => parseConfig(stringify(bad), { baseDir: dir, env: env() }));
    assert.ok(problems.some((p) => p.startsWith("labelSets[1].name: duplicate")), problems.join("\n"));
    assert.ok(problems.some((p) => p.startsWith("allow: allows nothing")), problems.join("\n"));
    assert.ok(problems.some((p) => p.startsWith("proxmox.storage: only for full clones")), problems.join("\n"));
    assert.ok(problems.some((p) => p.startsWith("sweeper.schedule:")), problems.join("\n"));
  });

  test("runners.namePrefix: runner- by default; a DNS label of at most 32 characters (a runner name is a hostname)", () => {
    const parse = (namePrefix?: string) => parseConfig(stringify({ ...minimal(), ...(namePrefix === undefined ? {} : { runners: { namePrefix } }) }), { baseDir: dir, env: env() });
    assert.equal(parse().config.runners.namePrefix, "runner-");
    assert.equal(parse("ci-team-a-").config.runners.namePrefix, "ci-team-a-");
    for (const bad of ["", "Runner-", "runner_", "-runner", "1runner-", "runner.x-", "a".repeat(33)]) {
      const problems = problemsOf(() => parse(bad));
      assert.ok(problems.length === 1 && problems[0].startsWith("runners.namePrefix:"), `${JSON.stringify(bad)}: ${problems.join("\n")}`);
    }
  });

  test("template copies and node limits: one form or the other, unique vmids, pct only on this node", () => {
    const several = minimal() as Record<string, any>;
    delete several.proxmox.templateVmid;
    several.proxmox.templates = [{ node: "pve", vmid: 9000 }, { node: "pve2", vmid: 9001 }];
    several.proxmox.nodes = [{ name: "pve2", maxRunners: 3 }];
    several.delivery = { mode: "env" };
    const { config } = parseConfig(stringify(several), { baseDir: dir, env: env() });
    assert.deepEqual(config.proxmox.nodes, [{ name: "pve2", maxRunners: 3, minFreeMemoryMb: 1024 }]);
    assert.equal(config.labelSets[0].warm, 0, "scale to zero unless a warm pool is asked for");

    const bad = structuredClone(several);
    bad.proxmox.templateVmid = 9000; // both forms
    bad.proxmox.templates.push({ node: "pve2", vmid: 9001 }); // twice
    bad.proxmox.nodes.push({ name: "pve2" });
    bad.delivery = { mode: "pct" }; // pct cannot reach pve2
    const problems = problemsOf(() => parseConfig(stringify(bad), { baseDir: dir, env: env() }));
    assert.ok(problems.some((p) => p.startsWith("proxmox.templates: replaces templateVmid")), problems.join("\n"));
    assert.ok(problems.some((p) => p.startsWith("proxmox.templates[2].vmid: template 9001 is listed twice")), problems.join("\n"));
    assert.ok(problems.some((p) => p.startsWith("proxmox.nodes[1].name: node pve2 is listed twice")), problems.join("\n"));
    assert.ok(problems.some((p) => p.startsWith("proxmox.templates[1].node: is not pve (proxmox.node): pct delivery")), problems.join("\n"));

    const none = minimal() as Record<string, any>;
    delete none.proxmox.templateVmid;
    assert.ok(problemsOf(() => parseConfig(stringify(none), { baseDir: dir, env: env() })).some((p) => p.startsWith("proxmox.templateVmid: is required")));
  });

  test("proxmox.vmids: a default range clear of templates; first ≤ last, within PVE's ids, room for maxRunners, no template inside", () => {
    const { config } = parseConfig(stringify(minimal()), { baseDir: dir, env: env() });
    assert.deepEqual(config.proxmox.vmids, { first: 100_000, last: 199_999 });
    const problemsWith = (vmids: unknown, patch: (c: Record<string, any>) => void = () => {}) => {
      const c = minimal() as Record<string, any>;
      c.proxmox.vmids = vmids;
      patch(c);
      return problemsOf(() => parseConfig(stringify(c), { baseDir: dir, env: env() })).join("\n");
    };
    assert.match(problemsWith({ first: 2000, last: 1000 }), /^proxmox\.vmids\.last: is below first \(2000\)$/m);
    assert.match(problemsWith({ first: 99, last: 1000 }), /^proxmox\.vmids\.first: /m);
    assert.match(problemsWith({ first: 100, last: 1_000_000_000 }), /^proxmox\.vmids\.last: /m);
    assert.match(problemsWith({ first: 8000, last: 9999 }), /^proxmox\.vmids: 8000-9999 contains template 9000/m);
    assert.match(problemsWith({ first: 500, last: 501 }, (c) => (c.limits = { maxRunners: 4, maxRunnersPerRepo: 4 })), /^proxmox\.vmids: holds 2 vmids, fewer than limits\.maxRunners \(4\)/m);
    assert.match(
      problemsWith({ first: 9000, last: 9100 }, (c) => {
        delete c.proxmox.templateVmid;
        c.proxmox.templates = [{ node: "pve", vmid: 9050 }];
      }),
      /contains template 9050/,
    );
  });

  test("listener.trustProxy names the proxy hops: true is refused with one clear line; loopback, addresses, CIDRs, a hop count pass", () => {
    const withTrust = (trustProxy: unknown) => stringify({ ...minimal(), listener: { trustProxy } });
    const refused = problemsOf(() => parseConfig(withTrust(true), { baseDir: dir, env: env() }));
    assert.equal(refused.length, 1);
    assert.match(refused[0], /^listener\.trustProxy: true would trust X-Forwarded-For from anyone .*name the proxy instead/);
    assert.match(problemsOf(() => parseConfig(withTrust("loopback, 10.0.0.300"), { baseDir: dir, env: env() }))[0], /^listener\.trustProxy: "10\.0\.0\.300" is not an address/);
    assert.match(problemsOf(() => parseConfig(withTrust(0), { baseDir: dir, env: env() }))[0], /^listener\.trustProxy: a hop count/);
    assert.match(problemsOf(() => parseConfig(withTrust(["192.0.2.0/33"]), { baseDir: dir, env: env() }))[0], /^listener\.trustProxy: "192\.0\.2\.0\/33"/);
    for (const ok of [false, "loopback", "127.0.0.1, ::1", ["10.0.0.0/8", "fd00::/8", "uniquelocal"], 1])
      assert.deepEqual(parseConfig(withTrust(ok), { baseDir: dir, env: env() }).config.listener.trustProxy, ok);
    assert.equal(parseConfig(stringify(minimal()), { baseDir: dir, env: env() }).config.listener.trustProxy, false, "off unless configured");
  });

  test("missing or malformed secret files are problems that name the file, never its content", async () => {
    await writeFile(join(dir, "creds", "badtoken"), "not-a-token-but-a-secret-value\n");
    const cfg = minimal() as Record<string, any>;
    cfg.proxmox.tokenFile = "${CREDENTIALS_DIRECTORY}/badtoken";
    cfg.github.webhookSecretFile = "/nonexistent/webhook";
    const problems = problemsOf(() => parseConfig(stringify(cfg), { baseDir: dir, env: env() }));
    assert.ok(problems.some((p) => p.includes("proxmox.tokenFile") && p.includes("USER@REALM!TOKENID=SECRET")), problems.join("\n"));
    assert.ok(problems.some((p) => p.includes("github.webhookSecretFile") && p.includes("ENOENT")), problems.join("\n"));
    assert.ok(!problems.join("\n").includes("not-a-token-but-a-secret-value"), "the secret is not echoed");
  });

  test("a private key that looks like PEM but does not parse (truncated), or is not RSA, is a problem at load", async () => {
    const lines = PEM.trim().split("\n");
    await writeFile(join(dir, "creds", "truncated.pem"), [...lines.slice(0, 4), lines[lines.length - 1]].join("\n"));
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }) as string;
    await writeFile(join(dir, "creds", "ec.pem"), ec);
    const withKey = (file: string) => {
      const cfg = minimal() as Record<string, any>;
      cfg.github.privateKeyFile = `\${CREDENTIALS_DIRECTORY}/${file}`;
      return problemsOf(() => parseConfig(stringify(cfg), { baseDir: dir, env: env() }));
    };
    assert.deepEqual(withKey("truncated.pem"), [`github.privateKeyFile: ${join(dir, "creds", "truncated.pem")} is not a readable PEM private key (truncated or edited?): download a new one from the App's settings`]);
    assert.match(withKey("ec.pem")[0], /holds an EC key, not RSA: GitHub Apps sign with RSA/);
  });

  test("an unset ${VAR} in a path is a problem, not an empty string", () => {
    const problems = problemsOf(() => parseConfig(stringify(minimal()), { baseDir: dir, env: {} }));
    assert.ok(problems.some((p) => p.includes("${CREDENTIALS_DIRECTORY} is not set")), problems.join("\n"));
  });

  test("not YAML, or not a file: one clear problem", () => {
    assert.match(problemsOf(() => parseConfig("github: [unclosed", { baseDir: dir }))[0], /not valid YAML/);
    assert.match(problemsOf(() => loadConfig(join(dir, "missing.yaml")))[0], /cannot read .*missing\.yaml \(ENOENT\)/);
  });

  test("the shipped example config is valid", () => {
    const example = readFileSync(new URL("../../../../listener/config-example.yaml", import.meta.url), "utf8");
    const { config } = parseConfig(example, { baseDir: dir, readSecrets: false, env: { CREDENTIALS_DIRECTORY: "/run/credentials/pve-runners.service" } });
    assert.ok(config.labelSets.length >= 1);
    assert.equal(config.github.privateKeyFile, "/run/credentials/pve-runners.service/github-app.pem");
  });
});
