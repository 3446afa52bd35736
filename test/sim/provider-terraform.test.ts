// Real terraform, the provider stand-in from the filesystem mirror, and the PVE simulator:
// the runner stack as synthRunnerStack writes it goes through init → apply → plan → destroy, and
// the failure paths bpg has (a failed clone task, a clone refused while the template is locked,
// a start that fails after the clone exists, a 5xx that a retry gets past).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { SIM_NODE, SIM_TEMPLATE_VMID, SIM_TOKENS, DEFAULT_LATENCY } from "../../sim/pve/index.js";
import { synthRunnerStack, PVE_RUNNERS_TAG } from "../../stacks/runner-stack.js";
import { runnerStackSpec } from "../fixtures/runner-stack-spec.js";
import { ProviderSimFixture } from "../fixtures/terraform/helpers.js";

const TOKEN = `${SIM_TOKENS.runners.id}=${SIM_TOKENS.runners.secret}`;

const world = new ProviderSimFixture("pve-runners-provider-tf-", { timeScale: 0.02 });
const { sim } = world;
/** Everything terraform printed and every state file it wrote, to look for the token at the end. */
const transcript: string[] = [];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** The -json stream's diagnostics. */
  diagnostics: Array<{ severity: string; summary: string; detail: string; address?: string }>;
}

function terraform(cwd: string, ...args: string[]): Promise<Run> {
  const env = { ...world.terraformEnv(50), TF_INPUT: "0" };
  return new Promise((resolve) => {
    execFile("terraform", args, { cwd, env, maxBuffer: 32 << 20 }, (err, stdout, stderr) => {
      transcript.push(stdout, stderr);
      const diagnostics = stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => {
          try {
            return JSON.parse(l) as { type?: string; diagnostic?: Run["diagnostics"][number] };
          } catch {
            return {}; // not the -json UI stream (output -json, show -json)
          }
        })
        .filter((m) => m.type === "diagnostic" && m.diagnostic)
        .map((m) => m.diagnostic!);
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr, diagnostics });
    });
  });
}

/** A runner's stack dir, initialised: what the listener prepares per runner. */
async function runnerStack(name: string, extra: { vmid?: number } = {}): Promise<string> {
  const { workingDir } = synthRunnerStack(join(world.root, name), runnerStackSpec({ runnerName: name, endpoint: `${world.simUrl}/`, ...extra }));
  const init = await terraform(workingDir, "init", "-input=false", "-no-color");
  assert.equal(init.code, 0, init.stderr);
  return workingDir;
}

const apply = (dir: string) => terraform(dir, "apply", "-auto-approve", "-input=false", "-json");
const destroy = (dir: string) => terraform(dir, "destroy", "-auto-approve", "-input=false", "-json");

async function stateResources(dir: string): Promise<Array<{ address: string; tainted?: boolean; values: Record<string, any> }>> {
  const show = await terraform(dir, "show", "-json");
  assert.equal(show.code, 0, show.stderr);
  return JSON.parse(show.stdout).values?.root_module?.resources ?? [];
}

/** The simulator's containers that belong to one runner (by its tag). */
const containersOf = (runner: string) => sim.containers().filter((c) => c.tags.includes(`pve-runners-${runner}`));

async function rootApi(method: string, path: string, body?: Record<string, string>): Promise<Response> {
  return fetch(`${world.simUrl}/api2/json/${path}`, {
    method,
    headers: { Authorization: `PVEAPIToken=${SIM_TOKENS.root.id}=${SIM_TOKENS.root.secret}`, "Content-Type": "application/x-www-form-urlencoded" },
    body: body ? new URLSearchParams(body).toString() : undefined,
  });
}

describe("runner stack against the simulator", () => {
  test("apply clones and starts the container the way bpg does; plan sees no drift; destroy removes it", async () => {
    const dir = await runnerStack("runner-11");
    const t0 = Date.now();
    const applied = await apply(dir);
    assert.equal(applied.code, 0, applied.stdout + applied.stderr);
    assert.match(applied.stdout, /"type":"apply_complete"/);

    const [res] = await stateResources(dir);
    assert.equal(res.address, "proxmox_virtual_environment_container.runner");
    assert.equal(res.tainted, undefined);
    const vmid = res.values.vm_id as number;
    assert.equal(res.values.id, String(vmid));
    const out = JSON.parse((await terraform(dir, "output", "-json")).stdout);
    assert.equal(out.vm_id.value, vmid);

    const ct = sim.container(vmid);
    assert.ok(ct, `container ${vmid} exists`);
    assert.equal(ct.status, "running");
    assert.equal(ct.name, "runner-11");
    assert.equal(ct.pool, "ci");
    assert.deepEqual([...ct.tags].sort(), [PVE_RUNNERS_TAG, "pve-runners-ctl-0123456789abcdef", "pve-runners-runner-11"]);
    assert.equal(ct.config.cores, "2");
    assert.equal(ct.config.memory, "2048");
    assert.equal(ct.config.swap, "512");
    assert.equal(ct.config.onboot, "0");
    assert.equal(ct.config.features, "keyctl=1,nesting=1");
    assert.match(ct.config.net0, /(^|,)bridge=vmbr1(,|$)/);
    assert.match(ct.config.net0, /(^|,)tag=30(,|$)/);
    // The NIC is behind PVE's firewall, and the runner's firewall options are bpg's PUT of all ten.
    assert.match(ct.config.net0, /(^|,)firewall=1(,|$)/);
    assert.deepEqual(sim.firewall(vmid)?.options, { dhcp: "1", enable: "1", ipfilter: "0", log_level_in: "nolog", log_level_out: "nolog", macfilter: "1", ndp: "1", policy_in: "DROP", policy_out: "ACCEPT", radv: "0" });
    assert.match(ct.config.description ?? "", /pve-runners ephemeral runner runner-11/);
    assert.equal(ct.lock, null);
    // The MAC PVE generated is in state: computed, unknown at plan time.
    const mac = /hwaddr=([0-9A-F:]+)/.exec(ct.config.net0)?.[1];
    assert.equal(res.values.network_interface[0].mac_address, mac);
    // bpg's request sequence: clone, one config PUT, wait for the lock, start.
    const tasks = sim.tasks();
    assert.ok(tasks.some((t) => t.type === "vzclone"));
    assert.ok(tasks.some((t) => t.type === "vzstart" && String(t.id) === String(vmid)));
    assert.ok(Date.now() - t0 < 15_000);
    const fw = (await stateResources(dir)).find((r) => r.address === "proxmox_virtual_environment_firewall_options.runner_firewall");
    assert.equal(fw?.values.container_id, vmid);
    assert.match(String(fw?.values.id), /^options-\d+$/);

    const plan = await terraform(dir, "plan", "-detailed-exitcode", "-input=false", "-no-color");
    assert.equal(plan.code, 0, `expected no changes:\n${plan.stdout}${plan.stderr}`);

    const destroyed = await destroy(dir);
    assert.equal(destroyed.code, 0, destroyed.stdout + destroyed.stderr);
    assert.equal(sim.container(vmid), undefined, "the container is gone");
    assert.equal(sim.firewall(vmid), null, "and its firewall file with it (pve-container's remove_vmfw_conf)");
    assert.deepEqual(await stateResources(dir), []);
    const tfstate = await readFile(join(dir, "terraform.tfstate"), "utf8");
    transcript.push(tfstate, await readFile(join(dir, "terraform.tfstate.backup"), "utf8"));
  });

  test("a failed clone task fails the apply with PVE's task error and leaves nothing behind", async () => {
    const dir = await runnerStack("runner-12");
    sim.setFaults({ next: { op: "clone", count: 1 } });
    const applied = await apply(dir);
    assert.equal(applied.code, 1);
    const d = applied.diagnostics.find((x) => x.severity === "error");
    assert.ok(d, applied.stdout);
    assert.equal(d.summary, "Container clone");
    assert.match(d.detail, /^task "UPID:pve:[^"]+:vzclone:9000:[^"]+" failed to complete with exit code: clone failed: /);
    assert.match(d.detail, /task log:\n/);
    assert.deepEqual(await stateResources(dir), [], "no id was set: nothing in state");
    await sim.settle();
    assert.deepEqual(containersOf("runner-12"), [], "PVE removed the half-made clone");
    const destroyed = await destroy(dir);
    assert.equal(destroyed.code, 0, destroyed.stdout);
  });

  test("a start that fails after the clone: the resource is tainted in state, destroy removes the container", async () => {
    const dir = await runnerStack("runner-13");
    sim.setFaults({ next: { op: "start", count: 1 } });
    const applied = await apply(dir);
    assert.equal(applied.code, 1);
    const d = applied.diagnostics.find((x) => x.severity === "error");
    assert.equal(d?.summary, "Container start");
    assert.match(d?.detail ?? "", /failed to complete with exit code: startup for container '\d+' failed/);
    const [res] = await stateResources(dir);
    assert.ok(res, "the cloned container is in state");
    assert.equal(res.tainted, true);
    const vmid = Number(res.values.id);
    assert.equal(res.values.vm_id, vmid);
    assert.equal(sim.container(vmid)?.status, "stopped");

    // The next apply would replace it; the pipeline destroys.
    const plan = await terraform(dir, "plan", "-input=false", "-no-color");
    assert.match(plan.stdout, /is tainted, so must be replaced/);
    const destroyed = await destroy(dir);
    assert.equal(destroyed.code, 0, destroyed.stdout);
    assert.equal(sim.container(vmid), undefined);
    assert.deepEqual(containersOf("runner-13"), []);
  });

  test("a clone refused because the template is locked by another clone: bpg's three attempts, then a clear diagnostic", async () => {
    const dir = await runnerStack("runner-14");
    // Someone else's linked clone holds lock `disk` on the template for ~10 s (scaled): longer than
    // terraform's start-up on a loaded machine plus bpg's three attempts.
    sim.setLatency({ cloneLinked: 500_000, jitter: 0 });
    const other = await rootApi("POST", `nodes/${SIM_NODE}/lxc/${SIM_TEMPLATE_VMID}/clone`, { newid: "950", full: "0", hostname: "other" });
    assert.equal(other.status, 200, await other.clone().text());
    try {
      const started = Date.now();
      const applied = await apply(dir);
      assert.equal(applied.code, 1);
      const d = applied.diagnostics.find((x) => x.severity === "error");
      assert.equal(d?.summary, "Container clone");
      assert.equal(
        d?.detail,
        [
          "All attempts fail:",
          "#1: error cloning container: received an HTTP 500 response - Reason: CT is locked (disk)",
          "#2: error cloning container: received an HTTP 500 response - Reason: CT is locked (disk)",
          "#3: error cloning container: received an HTTP 500 response - Reason: CT is locked (disk)",
        ].join("\n"),
      );
      // bpg backs off 10 s then 20 s; at PVE_SIM_PROVIDER_POLL_MS=50 that is 0.5 s + 1 s.
      assert.ok(Date.now() - started >= 1_500);
      assert.deepEqual(await stateResources(dir), []);
    } finally {
      sim.setLatency({ cloneLinked: DEFAULT_LATENCY.cloneLinked, jitter: DEFAULT_LATENCY.jitter });
      await sim.settle();
    }
    assert.deepEqual(containersOf("runner-14"), []);
  });

  test("a 5xx on the clone call is retried and the apply succeeds; a given vm_id skips /cluster/nextid", async () => {
    const dir = await runnerStack("runner-15", { vmid: 4321 });
    // The first API call of this apply is the clone itself (vm_id is given): pveproxy answers 596.
    sim.setFaults({ next: { op: "api", count: 1, error: "596" } });
    const started = Date.now();
    const applied = await apply(dir);
    assert.equal(applied.code, 0, applied.stdout + applied.stderr);
    assert.deepEqual(sim.faults().next, {}, "the 596 was served");
    assert.ok(Date.now() - started >= 500, "bpg's 10 s backoff, scaled");
    assert.equal(sim.container(4321)?.status, "running");
    assert.equal(sim.container(4321)?.name, "runner-15");
    const destroyed = await destroy(dir);
    assert.equal(destroyed.code, 0, destroyed.stdout);
    assert.equal(sim.container(4321), undefined);
  });

  test("four runners applied at once get distinct vmids (bpg's id sequence) and their own containers", async () => {
    const names = ["runner-21", "runner-22", "runner-23", "runner-24"];
    const dirs = await Promise.all(names.map((n) => runnerStack(n)));
    // About the id sequence, not the lock: 10 ms clones keep the lock windows far inside bpg's
    // retries even on a loaded machine (the lock has its own test above).
    sim.setLatency({ cloneLinked: 500 });
    const applied = await Promise.all(dirs.map(apply)).finally(() => sim.setLatency({ cloneLinked: DEFAULT_LATENCY.cloneLinked }));
    applied.forEach((a) => assert.equal(a.code, 0, a.stdout + a.stderr));
    const vmids = await Promise.all(dirs.map(async (d) => (await stateResources(d))[0].values.vm_id as number));
    assert.equal(new Set(vmids).size, 4, `vmids: ${vmids.join(", ")}`);
    // /cluster/nextid reserves nothing: without bpg's sequence file two applies would ask for the
    // same id, and the loser's retried clone would take "already exists" for its own success.
    names.forEach((n, i) => assert.equal(sim.container(vmids[i])?.name, n));
    const destroyed = await Promise.all(dirs.map(destroy));
    destroyed.forEach((d) => assert.equal(d.code, 0, d.stdout));
    for (const n of names) assert.deepEqual(containersOf(n), []);
  });

  test("the API token never reaches terraform's output or state", () => {
    const all = transcript.join("\n");
    assert.ok(all.length > 1000);
    assert.ok(!all.includes(SIM_TOKENS.runners.secret), "the token secret leaked");
    assert.ok(!all.includes(TOKEN));
  });
});
