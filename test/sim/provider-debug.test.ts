// The provider stand-in's -debug mode (bpg's main.go: tf6server.WithManagedDebug) with real
// terraform attached through TF_REATTACH_PROVIDERS: the reattach line, concurrent applies on one
// process, StopProvider's reach (every attached run) and its renewal (later runs work), SIGINT.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, stat } from "node:fs/promises";
import { join } from "node:path";
import { SIM_NODE, SIM_TOKENS } from "../../sim/pve/index.js";
import { synthRunnerStack } from "../../stacks/runner-stack.js";
import { runnerStackSpec } from "../fixtures/runner-stack-spec.js";
import { ProviderSimFixture } from "../fixtures/terraform/helpers.js";
import { checkedReattach } from "../../listener/adapters/terraform/shared-provider.js";

const TOKEN = `${SIM_TOKENS.runners.id}=${SIM_TOKENS.runners.secret}`;
const TEMPLATES = [9000, 9001];

const world = new ProviderSimFixture(
  "pve-runners-provider-debug-",
  { timeScale: 0.02, templates: TEMPLATES.map((vmid) => ({ node: SIM_NODE, vmid })) },
  (sim) => sim.releaseClones(),
);
const { sim } = world;

/** The environment a provider needs: what terraform would hand it, given to the -debug process instead. */
const providerEnv = () => ({ PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: world.root, PROXMOX_VE_API_TOKEN: TOKEN, PVE_SIM_PROVIDER_POLL_MS: "20" });

async function startDebugProvider(socketDir: string): Promise<{ child: ChildProcess; stdout: string; reattach: string }> {
  // No magic cookie: go-plugin skips its check in test (debug) mode.
  const child = spawn(world.mirror.executable, ["-debug"], { env: { ...providerEnv(), PLUGIN_UNIX_SOCKET_DIR: socketDir }, stdio: ["ignore", "pipe", "pipe"] });
  child.stderr!.resume();
  let stdout = "";
  const reattach = await new Promise<string>((resolve, reject) => {
    child.on("exit", (code) => reject(new Error(`exited ${code} before printing its reattach line`)));
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
      const m = /^\tTF_REATTACH_PROVIDERS='(.*)'$/m.exec(stdout);
      if (m) resolve(m[1]);
    });
  });
  child.removeAllListeners("exit");
  return { child, stdout, reattach };
}

function terraform(cwd: string, reattach: string | null, ...args: string[]): { done: Promise<{ code: number; out: string }>; child: ChildProcess } {
  const env = {
    ...providerEnv(),
    TF_CLI_CONFIG_FILE: world.mirror.cliConfigFile,
    TF_IN_AUTOMATION: "1",
    TF_INPUT: "0",
    CHECKPOINT_DISABLE: "1",
    ...(reattach ? { TF_REATTACH_PROVIDERS: reattach } : {}),
  };
  let child!: ChildProcess;
  const done = new Promise<{ code: number; out: string }>((resolve) => {
    child = execFile("terraform", args, { cwd, env, maxBuffer: 32 << 20 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
  });
  return { done, child };
}

async function stack(name: string, templateVmid: number, vmid: number): Promise<string> {
  const { workingDir } = synthRunnerStack(join(world.root, name), runnerStackSpec({ runnerName: name, endpoint: `${world.simUrl}/`, templateVmid, vmid, cores: 1, memoryMb: 512, swapMb: 0 }));
  const init = await terraform(workingDir, null, "init", "-input=false", "-no-color").done;
  assert.equal(init.code, 0, init.out);
  return workingDir;
}

const applyArgs = ["apply", "-auto-approve", "-input=false", "-no-color"];

test("-debug prints bpg's reattach line; terraform runs attach to the one process, several at once", async () => {
  const socketDir = await mkdtemp(join(world.root, "sock-"));
  const p = await startDebugProvider(socketDir);
  try {
    assert.match(p.stdout, /^Provider started\. To attach Terraform CLI, set the TF_REATTACH_PROVIDERS environment variable with the following:\n\n\tTF_REATTACH_PROVIDERS='/);
    const config = JSON.parse(p.reattach)["registry.terraform.io/bpg/proxmox"];
    assert.deepEqual({ ...config, Addr: { ...config.Addr, String: "…" } }, { Protocol: "grpc", ProtocolVersion: 6, Pid: p.child.pid, Test: true, Addr: { Network: "unix", String: "…" } });
    assert.ok(config.Addr.String.startsWith(socketDir + "/plugin"), config.Addr.String);
    assert.ok((await stat(config.Addr.String)).isSocket());
    // What the listener passes on is the same, rebuilt from checked fields.
    assert.deepEqual(JSON.parse(checkedReattach(p.reattach, socketDir)), JSON.parse(p.reattach));

    const dirs = await Promise.all([stack("runner-d1", 9000, 201), stack("runner-d2", 9001, 202), stack("runner-d3", 9000, 203)]);
    const pvePids = () => sim.containers().filter((c) => [201, 202, 203].includes(c.vmid)).map((c) => c.vmid).sort();
    // Two lanes' clones at once, a third behind on 9000's lock retry: all on one provider.
    const runs = await Promise.all(dirs.map((d) => terraform(d, p.reattach, ...applyArgs).done));
    for (const r of runs) assert.equal(r.code, 0, r.out);
    assert.deepEqual(pvePids(), [201, 202, 203]);
    const destroyed = await Promise.all(dirs.map((d) => terraform(d, p.reattach, "destroy", "-auto-approve", "-input=false", "-no-color").done));
    for (const r of destroyed) assert.equal(r.code, 0, r.out);
    assert.deepEqual(pvePids(), []);
    // terraform never stopped or killed it.
    assert.equal(p.child.exitCode, null);
  } finally {
    const exited = new Promise((r) => p.child.once("exit", (code, signal) => r({ code, signal })));
    p.child.kill("SIGINT");
    // SIGINT stops it (WithManagedDebug's default stop signal), and its socket goes.
    assert.deepEqual(await exited, { code: 0, signal: null });
    assert.equal(existsSync(JSON.parse(p.reattach)["registry.terraform.io/bpg/proxmox"].Addr.String), false);
  }
});

test("an interrupted run's StopProvider cancels every attached run's calls; later runs get a fresh context", async () => {
  const socketDir = await mkdtemp(join(world.root, "sock-"));
  const p = await startDebugProvider(socketDir);
  try {
    const [a, b, c] = await Promise.all([stack("runner-s1", 9000, 211), stack("runner-s2", 9001, 212), stack("runner-s3", 9000, 213)]);
    // Both clones wait in PVE (held): both applies are polling their clone task through the provider.
    sim.holdClones();
    const runA = terraform(a, p.reattach, ...applyArgs);
    const runB = terraform(b, p.reattach, ...applyArgs);
    const deadline = Date.now() + 60_000;
    while (sim.containers().filter((ct) => ct.vmid === 211 || ct.vmid === 212).length < 2) {
      assert.ok(Date.now() < deadline, "both clones started");
      await new Promise((r) => setTimeout(r, 50));
    }
    // Interrupt A alone: terraform sends StopProvider to the provider it uses, the shared one.
    runA.child.kill("SIGINT");
    const [ra, rb] = await Promise.all([runA.done, runB.done]);
    assert.notEqual(ra.code, 0, "A was interrupted");
    assert.notEqual(rb.code, 0, "B was cancelled too: Stop reaches every attached run");
    assert.match(rb.out, /context canceled/);
    sim.releaseClones();
    // The provider serves on, and a run after the Stop is not born cancelled.
    const rc = await terraform(c, p.reattach, ...applyArgs).done;
    assert.equal(rc.code, 0, rc.out);
    assert.equal(p.child.exitCode, null);
  } finally {
    sim.releaseClones();
    p.child.kill("SIGINT");
  }
});

test("checkedReattach passes on only bpg's provider over a unix socket inside our dir", () => {
  const cfg = (addr: { Network: string; String: string }, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ "registry.terraform.io/bpg/proxmox": { Protocol: "grpc", ProtocolVersion: 6, Pid: 42, Test: true, Addr: addr, ...extra } });
  assert.throws(() => checkedReattach(cfg({ Network: "tcp", String: "127.0.0.1:4000" }), "/s"), /unix socket/);
  assert.throws(() => checkedReattach(cfg({ Network: "unix", String: "/tmp/plugin1/s" }), "/s"), /outside \/s/);
  assert.throws(() => checkedReattach(cfg({ Network: "unix", String: "/s/../tmp/x" }), "/s"), /outside/);
  assert.throws(() => checkedReattach("not json", "/s"), /not JSON/);
  assert.throws(() => checkedReattach(JSON.stringify({ "registry.terraform.io/evil/x": {} }), "/s"), /without registry.terraform.io\/bpg\/proxmox/);
  assert.throws(() => checkedReattach(cfg({ Network: "unix", String: "/s/p" }, { ProtocolVersion: 5 }), "/s"), /protocol 6/);
  // Extra fields are dropped; what is kept is rebuilt.
  const ok = JSON.parse(checkedReattach(cfg({ Network: "unix", String: "/s/plugin1/s" }, { Junk: "x" }), "/s"));
  assert.deepEqual(ok, { "registry.terraform.io/bpg/proxmox": { Protocol: "grpc", ProtocolVersion: 6, Pid: 42, Test: true, Addr: { Network: "unix", String: "/s/plugin1/s" } } });
});
