// Inside the containers: the `pct exec` stand-in (with the real systemd/deliver-jit helper run
// through the `pct` shim) and the simulated guest that, given a JIT config, connects to the fake
// GitHub, runs one job and powers its container off.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Writable } from "node:stream";
import { createAppAuth } from "@octokit/auth-app";
import { Octokit } from "@octokit/rest";
import { spawn } from "node:child_process";
import { pino } from "pino";
import { GitHubSim } from "../../sim/github/index.js";
import { installPctShim } from "../../sim/pct/install.js";
import { JIT_ENV, JIT_FILE, PveSim, SIM_TEMPLATE_VMID, SIM_TOKENS } from "../../sim/pve/index.js";
import { PveSimClient } from "../../sim/pve/client.js";
import { PctHelperDelivery } from "../../listener/adapters/jit/jit-delivery.js";

const SCALE = 0.01;
const DELIVER = ["/bin/sh", "-c", "umask 077; mkdir -p /run/pve-runners && cat > /run/pve-runners/jitconfig.tmp && mv /run/pve-runners/jitconfig.tmp /run/pve-runners/jitconfig"];
const repoRoot = resolve(import.meta.dirname, import.meta.url.endsWith(".ts") ? "../.." : "../../..");
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

async function until<T>(what: string, fn: () => T | Promise<T>, ms = 5_000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("PVE simulator: guests", () => {
  // Everything the simulator logs, to prove no JIT config ever reaches a log.
  const logLines: string[] = [];
  const logger = pino(
    { level: "debug" },
    new Writable({
      write(chunk, _enc, cb) {
        logLines.push(String(chunk));
        cb();
      },
    }),
  );
  const pve = new PveSim({ timeScale: SCALE, logger, guest: { bootMs: 3_000, poweroffMs: 1_500 } });
  const github = new GitHubSim({ timeScale: SCALE, lostRunnerMs: 5_000 });
  let root: PveSimClient;
  let gh: Octokit;
  let nextId = 700;
  const jits: string[] = [];

  before(async () => {
    root = new PveSimClient(await pve.start(0, "127.0.0.1"));
    await github.start(0, "127.0.0.1");
    gh = new Octokit({ log: quiet, baseUrl: github.url, authStrategy: createAppAuth, auth: { appId: github.appId, privateKey: github.appPrivateKeyPem, installationId: 4242 } });
  });
  after(async () => {
    await pve.stop();
    await github.stop();
  });
  beforeEach(() => pve.clearFaults());

  async function mint(name: string, labels = ["self-hosted", "linux", "x64"]): Promise<string> {
    const res = await gh.rest.actions.generateRunnerJitconfigForRepo({ owner: "acme", repo: "app", name, runner_group_id: 1, labels });
    jits.push(res.data.encoded_jit_config);
    return res.data.encoded_jit_config;
  }

  /** A runner container: linked clone named like the listener names them, tagged, in pool ci. */
  async function runnerCt(opts: { start?: boolean; env?: string } = {}): Promise<{ vmid: number; name: string }> {
    const vmid = nextId++;
    const name = `runner-g${vmid}`;
    assert.equal(await root.task("POST", root.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: vmid, hostname: name, pool: "ci" }), "OK");
    assert.equal((await root.put(root.ct(vmid, "/config"), { tags: "pve-runners;pve-runners-" + name, ...(opts.env ? { env: opts.env } : {}) })).status, 200);
    if (opts.start !== false) assert.equal(await root.task("POST", root.ct(vmid, "/status/start")), "OK");
    return { vmid, name };
  }

  const status = async (vmid: number) => (await root.get<{ status: string }>(root.ct(vmid, "/status/current"))).data.status;
  const job = (id: number) => github.jobs().find((j) => j.id === id);

  test("pct exec: refuses stopped or missing CTs with exit 255", async () => {
    const { vmid } = await runnerCt({ start: false });
    assert.deepEqual(await pve.exec(vmid, ["true"]), { exitcode: 255, stdout: "", stderr: `CT ${vmid} not running\n` });
    assert.deepEqual(await pve.exec(4711, ["true"]), { exitcode: 255, stdout: "", stderr: "Configuration file 'nodes/pve/lxc/4711.conf' does not exist\n" });
  });

  test("pct exec: deliver-jit's exact command writes stdin to the JIT file, 0600 in a 0700 dir; only simulated commands run", async () => {
    pve.setFaults({ next: { op: "guest", count: 1 } }); // keep the guest from consuming the file
    const { vmid } = await runnerCt();
    const r = await root.call("POST", `/_sim/nodes/pve/lxc/${vmid}/exec`, { command: DELIVER, stdin: "not-a-real-config\n" } as never, { json: true });
    assert.deepEqual([r.status, r.data], [200, { exitcode: 0, stdout: "", stderr: "" }]);
    assert.deepEqual(await pve.exec(vmid, ["cat", JIT_FILE]), { exitcode: 0, stdout: "not-a-real-config\n", stderr: "" });
    assert.equal((await pve.exec(vmid, ["stat", "-c", "%a", JIT_FILE])).stdout, "600\n");
    assert.equal((await pve.exec(vmid, ["stat", "-c", "%a", "/run/pve-runners"])).stdout, "700\n");
    assert.equal((await pve.exec(vmid, ["test", "-f", JIT_FILE])).exitcode, 0);
    assert.equal((await pve.exec(vmid, ["test", "-f", `${JIT_FILE}.tmp`])).exitcode, 1, "the temp file was renamed");
    assert.equal((await pve.exec(vmid, ["/bin/sh", "-c", `test -f ${JIT_FILE} && echo yes || echo no`])).stdout, "yes\n");
    assert.deepEqual(pve.container(vmid)?.files.map((f) => [f.path, f.mode]), [["/run/pve-runners", "0700"], [JIT_FILE, "0600"]]);

    const unknown = await pve.exec(vmid, ["/usr/bin/curl", "http://example.com"]);
    assert.equal(unknown.exitcode, 127);
    const inSh = await pve.exec(vmid, ["/bin/sh", "-c", "systemctl start actions-runner"]);
    assert.deepEqual([inSh.exitcode, inSh.stderr], [127, "/bin/sh: 1: systemctl: not found\n"]);
    assert.equal((await pve.exec(vmid, ["/bin/sh", "-c", "cat /etc/passwd | head -1"])).exitcode, 127, "pipes are not simulated");
    assert.equal((await pve.exec(vmid, ["/bin/sh", "-c", "cat > /nope/x"], "x")).exitcode, 2);
    assert.equal((await pve.exec(vmid, ["cat", "/nope"])).stderr, "cat: /nope: No such file or directory\n");

    assert.equal(await root.task("POST", root.ct(vmid, "/status/stop")), "OK");
    assert.equal(await root.task("POST", root.ct(vmid, "/status/start")), "OK");
    assert.equal((await pve.exec(vmid, ["test", "-e", "/run/pve-runners"])).exitcode, 1, "/run is a tmpfs: empty after a restart");
    await root.task("POST", root.ct(vmid, "/status/stop"));
  });

  test("the pct shim: `pct config <vmid> --current` as pct (no pending changes here), unknown options refused as pct refuses them", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pve-guest-"));
    try {
      const bin = join(dir, "bin");
      await installPctShim(bin, { url: pve.url, token: `${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}` });
      const { vmid, name } = await runnerCt();
      // Not spawnSync: the simulator pct talks to runs in this process.
      const pct = (...args: string[]) =>
        new Promise<{ status: number | null; stdout: string; stderr: string }>((res) => {
          const c = spawn(join(bin, "pct"), args, { stdio: ["ignore", "pipe", "pipe"] });
          let stdout = "";
          let stderr = "";
          c.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
          c.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
          c.on("close", (status) => res({ status, stdout, stderr }));
        });
      const plain = await pct("config", String(vmid));
      assert.equal(plain.status, 0, plain.stderr);
      assert.match(plain.stdout, new RegExp(`^hostname: ${name}$`, "m"));
      for (const args of [["--current"], ["-current"], ["--current", "1"], ["--current=yes"]]) {
        const r = await pct("config", String(vmid), ...args);
        assert.deepEqual([r.status, r.stdout], [0, plain.stdout], args.join(" "));
      }
      const bogus = await pct("config", String(vmid), "--bogus");
      assert.deepEqual([bogus.status, bogus.stdout, bogus.stderr], [255, "", "Unknown option: bogus\n400 unable to parse option\n"]);
      assert.equal((await pct("config", "--current", String(vmid))).stderr, "400 Parameter verification failed.\ncurrent: unable to parse boolean option\n", "--current takes the vmid as its value");
      assert.equal((await pct("config", String(vmid), "--current", "--snapshot", "s1")).status, 255);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("JIT by file: the real deliver-jit helper (through the pct shim) → the guest runs the job and powers off", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pve-guest-"));
    try {
      await installPctShim(join(dir, "bin"), { url: pve.url, token: `${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}` });
      const { vmid, name } = await runnerCt();
      const j = await github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 2_000 });
      const jit = await mint(name);
      const delivery = new PctHelperDelivery({ command: [join(repoRoot, "systemd", "deliver-jit")], env: { ...process.env, PATH: `${join(dir, "bin")}:${process.env.PATH}` }, logger: pino({ level: "silent" }) });
      await delivery.deliver({ node: "pve", vmid, runner: name, jitConfig: jit });

      await until("the job to complete", () => job(j.id)?.status === "completed");
      assert.deepEqual([job(j.id)?.conclusion, job(j.id)?.runnerName], ["success", name]);
      await until("the container to power itself off", async () => (await status(vmid)) === "stopped");
      assert.equal(pve.container(vmid)?.guest, null);
      assert.deepEqual(pve.container(vmid)?.files.map((f) => f.path), ["/var/lib/pve-runners", "/var/lib/pve-runners/job-started"], "the JIT file was removed; the marker stays");
      const runner = github.runners().find((r) => r.name === name);
      assert.deepEqual([runner?.removedReason, runner?.connected], ["completed", true]);
      assert.ok(!pve.tasks().some((t) => t.id === String(vmid) && ["vzstop", "vzshutdown"].includes(t.type)), "no stop task: the guest powered off");
      assert.equal((await pve.exec(vmid, ["true"])).exitcode, 255);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("JIT by the env option (PVE 9.1): set before start, runs the job; a restarted container never runs a second one", async () => {
    const vmidName = `runner-g${nextId}`;
    const jit = await mint(vmidName);
    const j = await github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 2_000 });
    const { vmid, name } = await runnerCt({ env: `${JIT_ENV}=${jit}` });
    assert.equal(name, vmidName);
    await until("the job to complete", () => job(j.id)?.status === "completed");
    assert.equal(job(j.id)?.runnerName, name);
    await until("power off", async () => (await status(vmid)) === "stopped");

    assert.equal((await pve.exec(vmid, ["true"])).exitcode, 255);
    const connectedAt = github.runners().find((r) => r.name === name)?.connectedAt;

    // Started again (the env option still holds the spent config): the job marker stops it.
    assert.equal(await root.task("POST", root.ct(vmid, "/status/start")), "OK");
    const guest = await until("the guest to give up", () => {
      const g = pve.container(vmid)?.guest as { outcome?: string } | null;
      return g?.outcome ? g : null;
    });
    assert.equal(guest.outcome, "a job already started in this container: never a second one");
    await until("power off again", async () => (await status(vmid)) === "stopped");
    assert.equal(github.runners().find((r) => r.name === name)?.connectedAt, connectedAt, "no second connection");
  });

  test("env removed right after start (as the listener does): init kept its copy, the job runs", async () => {
    const jit = await mint(`runner-g${nextId}`);
    const j = await github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 2_000 });
    const { vmid, name } = await runnerCt({ env: `${JIT_ENV}=${jit}`, start: false });
    assert.equal(await root.task("POST", root.ct(vmid, "/status/start")), "OK");
    assert.equal((await root.put(root.ct(vmid, "/config"), { delete: "env" })).status, 200);
    assert.deepEqual(pve.container(vmid)?.envKeys, [], "the CT config holds no config any more");
    await until("the job to complete", () => job(j.id)?.status === "completed");
    assert.equal(job(j.id)?.runnerName, name);
  });

  test("a spent JIT config delivered to a fresh container: GitHub refuses it (410), the container powers off", async () => {
    const first = await runnerCt();
    const jit = await mint(first.name);
    const j = await github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1_000 });
    assert.equal((await pve.exec(first.vmid, DELIVER, jit)).exitcode, 0);
    await until("the job to complete", () => job(j.id)?.status === "completed");
    const second = await runnerCt();
    assert.equal((await pve.exec(second.vmid, DELIVER, jit)).exitcode, 0);
    const guest = await until("the runner to be refused", () => {
      const g = pve.container(second.vmid)?.guest as { outcome?: string } | null;
      return g?.outcome ? g : null;
    });
    assert.match(guest.outcome ?? "", /^connect failed: 410 /);
    await until("power off", async () => (await status(second.vmid)) === "stopped");
  });

  test("stopping a container under a busy runner: the guest is aborted and GitHub fails the job", async () => {
    const { vmid, name } = await runnerCt();
    const j = await github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 600_000 });
    const jit = await mint(name);
    assert.equal((await pve.exec(vmid, DELIVER, jit + "\n")).exitcode, 0);
    await until("the job to start", () => job(j.id)?.status === "in_progress");
    assert.equal(await root.task("POST", root.ct(vmid, "/status/stop")), "OK");
    assert.equal((pve.container(vmid)?.guest ?? null), null);
    await until("GitHub to give up on the runner", () => job(j.id)?.status === "completed");
    assert.equal(job(j.id)?.conclusion, "failure");
    assert.equal(github.runners().find((r) => r.name === name)?.removedReason, "lost");
  });

  test("fault: the guest never connects (boot-timeout case); destroy with force still cleans up", async () => {
    pve.setFaults({ guestNeverConnectsRate: 1 });
    const { vmid, name } = await runnerCt();
    const jit = await mint(name);
    assert.equal((await pve.exec(vmid, DELIVER, jit)).exitcode, 0);
    await new Promise((r) => setTimeout(r, 10_000 * SCALE));
    assert.equal(await status(vmid), "running");
    assert.equal((pve.container(vmid)?.guest as { phase?: string } | null)?.phase, "hung");
    const runner = github.runners().find((r) => r.name === name);
    assert.deepEqual([runner?.connected, runner?.status], [false, "offline"]);
    assert.equal(await root.task("DELETE", root.ct(vmid), { force: 1, purge: 1 }), "WARNINGS: 1");
    assert.equal(pve.container(vmid), undefined);
  });

  test("a garbage JIT config: the runner refuses it and the container powers off", async () => {
    const { vmid } = await runnerCt();
    assert.equal((await pve.exec(vmid, DELIVER, "garbage")).exitcode, 0);
    await until("power off", async () => (await status(vmid)) === "stopped");
  });

  test("the runner unit gives up after its wait timeout without a config and powers off", async () => {
    const small = new PveSim({ timeScale: SCALE, guest: { bootMs: 1_000, jitWaitMs: 5_000 } });
    const c = new PveSimClient(await small.start(0, "127.0.0.1"));
    try {
      assert.equal(await c.task("POST", c.ct(SIM_TEMPLATE_VMID, "/clone"), { newid: 100 }), "OK");
      assert.equal(await c.task("POST", c.ct(100, "/status/start")), "OK");
      assert.equal(small.container(100)?.status, "running");
      await until("power off", () => small.container(100)?.status === "stopped");
      assert.ok(!small.tasks().some((t) => t.type === "vzstop"));
    } finally {
      await small.stop();
    }
  });

  test("no JIT config ever reached a log line", () => {
    assert.ok(jits.length >= 4);
    assert.ok(logLines.length > 0, "the simulator did log");
    for (const jit of jits) assert.ok(!logLines.some((l) => l.includes(jit)), "a JIT config leaked into the log");
    assert.ok(logLines.some((l) => l.includes("runner online")));
  });
});
