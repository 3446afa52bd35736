// terraform's lowered CPU priority under pve-runners.service's own system call filter: the unit's
// SystemCallFilter= lines merged as systemd merges them, expanded with `systemd-analyze
// syscall-filter`, and applied by test/fixtures/seccomp-run (gcc + libseccomp, built here) with the
// unit's errno, RestrictRealtime= and no capabilities. terraform runs through the listener's real
// spawn path (listener/adapters/terraform/terraform.ts) and reports what /proc says about it and a process it started.
//
// Needs gcc, libseccomp-dev, systemd-analyze and terraform: skipped with one line without them,
// mandatory when CI is set (.ci/run installs them).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { buildLauncher, launcherMissing, mergeSyscallFilter, parseSyscallFilterListing, systemdGroups, underUnitFilter, unitValues, type GroupLookup } from "../fixtures/syscall-filter.js";
import { SCHED_IDLE, parseProcStat, type PriorityCheck } from "../../listener/adapters/terraform/terraform.js";
import { pino } from "pino";
import { startWorld } from "../../sim/world.js";
import { ListenerProcess, freePort } from "../../sim/fault-run.js";

const root = resolve(import.meta.dirname, "../../..");
const unitText = readFileSync(join(root, "systemd", "pve-runners.service"), "utf8");
/** The unit as shipped before: the same filter without the line that puts the priority calls back. */
const unitWithoutPriorityCalls = unitText.replace(/^SystemCallFilter=setpriority sched_setscheduler\n/m, "");

describe("SystemCallFilter= merge (systemd.exec(5))", () => {
  const groups: Record<string, string[]> = {
    "@default": ["read", "exit"],
    "@resources": ["setpriority", "sched_setscheduler", "setrlimit"],
    "@privileged": ["@chown", "setuid"],
    "@chown": ["chown"],
    "@system-service": ["@default", "@resources", "@privileged", "write"],
  };
  const lookup: GroupLookup = (g) => groups[g] ?? assert.fail(`unknown group ${g}`);
  const sorted = (f: ReturnType<typeof mergeSyscallFilter>) => f && { allowList: f.allowList, names: [...f.names].sort() };

  test("an allow list first: ~ lines take names out, later allow lines put them back, @default always in", () => {
    assert.deepEqual(sorted(mergeSyscallFilter(["write", "~write"], lookup)), { allowList: true, names: ["exit", "read"] });
    assert.deepEqual(sorted(mergeSyscallFilter(["@system-service", "~@privileged @resources", "setpriority"], lookup)), {
      allowList: true,
      names: ["exit", "read", "setpriority", "write"],
    });
  });

  test("a deny list first: later allow lines take names out of it (systemd's own exec-systemcallfilter-system-user.service)", () => {
    assert.deepEqual(sorted(mergeSyscallFilter(["~read write open execve ioperm", "ioctl", "read write open execve", "~ioperm"], lookup)), { allowList: false, names: ["ioperm"] });
  });

  test("an empty assignment resets, and the next line decides the mode again", () => {
    assert.deepEqual(sorted(mergeSyscallFilter(["@resources", "", "~setuid"], lookup)), { allowList: false, names: ["setuid"] });
    assert.equal(mergeSyscallFilter(["read", ""], lookup), null);
  });

  test("systemd-analyze's listing: members and nested groups, no header or comments", () => {
    const listing = "@resources\n    # Alter resource settings\n    ioprio_set\n    @chown\n    setpriority\n";
    assert.deepEqual(parseSyscallFilterListing(listing), ["ioprio_set", "@chown", "setpriority"]);
  });
});

const missing = launcherMissing();
const mandatory = !!process.env.CI;
const skip = missing && !mandatory ? `${missing}: the unit's system call filter is not applied here` : false;

describe("pve-runners.service: terraform's priority under the unit's system call filter", { skip }, () => {
  let dir = "";
  let launcher = "";
  const own = parseProcStat(readFileSync("/proc/self/stat", "utf8"))!;
  before(() => {
    if (missing) assert.fail(`CI is set but ${missing}`);
    dir = mkdtempSync(join(tmpdir(), "unit-filter-"));
    launcher = buildLauncher(root, join(dir, "bin"));
  });
  after(() => dir && rmSync(dir, { recursive: true, force: true }));

  /** argv under a unit's filter, without capabilities. */
  const filtered = (unit: string, name: string, argv: string[]) => {
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    const all = underUnitFilter(launcher, d, unit, argv);
    all.splice(all.indexOf("--"), 0, "--drop-caps");
    return all;
  };
  const run = (unit: string, name: string, argv: string[]) => {
    const [bin, ...args] = filtered(unit, name, argv);
    return spawnSync(bin, args, { encoding: "utf8", timeout: 60_000 });
  };
  const probe = (unit: string, name: string) => {
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    const r = run(unit, name, [process.execPath, join(root, "dist/test/fixtures/priority-probe.js"), d, "true", "10"]);
    assert.equal(r.status, 0, r.stderr);
    return { ...(JSON.parse(r.stdout) as { check: PriorityCheck; terraform: { policy: number; nice: number }; child: { policy: number; nice: number } }), stderr: r.stderr };
  };

  test("the unit's filter allows setpriority and sched_setscheduler and still denies the rest of @resources and @privileged", () => {
    const f = mergeSyscallFilter(unitValues(unitText, "SystemCallFilter"), systemdGroups)!;
    assert.equal(f.allowList, true);
    for (const n of ["setpriority", "sched_setscheduler", "read", "execve"]) assert.ok(f.names.has(n), `${n} allowed`);
    for (const n of ["sched_setaffinity", "sched_setattr", "setrlimit", "ioprio_set", "set_mempolicy", "chown", "setuid", "capset"]) assert.ok(!f.names.has(n), `${n} denied`);
  });

  test("terraform and what it starts run under SCHED_IDLE at nice 10, through the listener's spawn path", () => {
    const p = probe(unitText, "shipped");
    const want = { policy: SCHED_IDLE, nice: Math.min(19, own.nice + 10) };
    assert.deepEqual(p.terraform, want, "terraform");
    assert.deepEqual(p.child, want, "a process terraform started (as the provider plugins are)");
    assert.equal(p.check.ok, true, "checkPriority() at start sees it too");
    assert.doesNotMatch(p.stderr, /higher CPU priority/);
  });

  test("under the filter as shipped before, `nice -n 10` was refused and terraform ran at full priority; the listener now says so", () => {
    const r = run(unitWithoutPriorityCalls, "old-nice", ["/bin/sh", "-c", 'exec nice -n 10 cat /proc/self/stat']);
    assert.match(r.stderr, /nice: cannot set niceness: Operation not permitted/);
    assert.deepEqual(parseProcStat(r.stdout), { policy: own.policy, nice: own.nice }, "the old mechanism left terraform's priority alone");
    const p = probe(unitWithoutPriorityCalls, "old-unit");
    assert.deepEqual(p.terraform, { policy: own.policy, nice: own.nice }, "refused, terraform still runs");
    assert.equal(p.check.ok, false);
    assert.match(p.stderr, /terraform runs at a higher CPU priority than configured/);
  });

  test("the allowed calls cannot raise priority or reach a realtime policy", () => {
    const r = run(unitText, "raise", ["/bin/sh", "-c", "nice -n 5 sh -c 'nice -n -5 true; chrt --rr 1 true; chrt --fifo 1 true'"]);
    assert.match(r.stderr, /nice: cannot set niceness: Permission denied/);
    assert.equal(r.stderr.match(/chrt: failed to set pid 0's policy: Operation not permitted/g)?.length, 2, r.stderr);
  });

  // terraform here competes with whatever else the machine runs (no cgroup of its own as under
  // systemd), so on a busy machine this takes a while: SCHED_IDLE at work.
  test("the listener itself (pve-runners serve) serves a job under the unit's filter, terraform and its provider behind it", async () => {
    const port = await freePort();
    const world = await startWorld({ logger: pino({ level: "silent" }), configPatch: (c) => ((c.listener = { host: "127.0.0.1", port }), (c.log = { level: "info" })) });
    const logFile = join(dir, "listener.log");
    const listener = new ListenerProcess(world, logFile, filtered(unitText, "listener", []));
    /** What /proc showed of the listener's descendants that run terraform apply/destroy or a provider for one. */
    const seen: Array<{ what: string; policy: number; nice: number }> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const pid = listener.pid;
        if (pid) for (const s of heavyDescendants(pid)) seen.push(s);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      await listener.start();
      world.github.setWebhook(`http://127.0.0.1:${port}${world.config.github.webhookPath}`, world.secrets.webhookSecret);
      const job = await world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1_000 });
      for (let i = 0; i < 1200 && !world.github.jobs().some((j) => j.id === job.id && j.status === "completed"); i++) await new Promise((r) => setTimeout(r, 50));
      const done = world.github.jobs().find((j) => j.id === job.id);
      assert.equal(done?.status, "completed", `the job was served; see ${logFile}`);
      assert.match(done?.runnerName ?? "", /^runner-/);
      assert.deepEqual(parseProcStat(readFileSync(`/proc/${listener.pid}/stat`, "utf8")), { policy: own.policy, nice: own.nice }, "the listener itself is not lowered");
    } finally {
      sampling = false;
      await sampler;
      await listener.stop();
      await world.stop();
    }
    const log = readFileSync(logFile, "utf8");
    assert.match(log, /terraform runs at lowered CPU priority/);
    assert.doesNotMatch(log, /higher CPU priority than configured/);
    const want = { policy: SCHED_IDLE, nice: Math.min(19, own.nice + 10) };
    assert.ok(seen.some((s) => s.what === "terraform"), "terraform apply/destroy was seen running");
    assert.ok(seen.some((s) => s.what === "provider"), "a provider process under terraform was seen running");
    for (const s of seen) assert.deepEqual({ policy: s.policy, nice: s.nice }, want, s.what);
  });

  test("terraform.sharedProvider under the unit's filter: the one provider starts, runs lowered and serves the job; one a killed listener left is stopped by the next", async () => {
    const port = await freePort();
    const world = await startWorld({
      logger: pino({ level: "silent" }),
      configPatch: (c) => ((c.listener = { host: "127.0.0.1", port }), (c.log = { level: "info" }), (c.terraform = { ...(c.terraform as object), sharedProvider: true })),
    });
    const logFile = join(dir, "listener-shared.log");
    const providerOf = () => {
      const started = [...readFileSync(logFile, "utf8").matchAll(/"providerPid":(\d+)[^\n]*shared terraform provider started/g)].at(-1);
      assert.ok(started, `the shared provider started; see ${logFile}`);
      return Number(started[1]);
    };
    const serveOne = async () => {
      const job = await world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 1_000 });
      for (let i = 0; i < 1200 && !world.github.jobs().some((j) => j.id === job.id && j.status === "completed"); i++) await new Promise((r) => setTimeout(r, 50));
      const tail = readFileSync(logFile, "utf8").split("\n").filter((l) => /provider|terraform/.test(l)).slice(-6).join("\n");
      assert.equal(world.github.jobs().find((j) => j.id === job.id)?.status, "completed", `the job was served; the log ends:\n${tail}`);
    };
    const pids: number[] = [];
    let listener = new ListenerProcess(world, logFile, filtered(unitText, "listener-shared", []));
    try {
      await listener.start();
      world.github.setWebhook(`http://127.0.0.1:${port}${world.config.github.webhookPath}`, world.secrets.webhookSecret);
      await serveOne();
      pids.push(providerOf());
      const want = { policy: SCHED_IDLE, nice: Math.min(19, own.nice + 10) };
      assert.deepEqual(parseProcStat(readFileSync(`/proc/${pids[0]}/stat`, "utf8")), want, "the shared provider runs lowered");
      // Killed outright, the listener leaves its provider (outside systemd's cgroup) holding the token…
      await listener.kill();
      assert.equal(alive(pids[0]), true);
      // …and the next listener stops it before starting its own.
      listener = new ListenerProcess(world, logFile, filtered(unitText, "listener-shared", []));
      await listener.start();
      await serveOne();
      pids.push(providerOf());
      assert.notEqual(pids[1], pids[0]);
      assert.equal(alive(pids[0]), false, "the stale provider was stopped");
    } finally {
      await listener.stop().catch(() => undefined);
      await world.stop();
      for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
    }
  });
});

/** Whether a process runs (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

/** terraform apply/destroy processes under `root` (any depth), and the processes they started. */
function heavyDescendants(root: number): Array<{ what: string; policy: number; nice: number }> {
  const procs = new Map<number, { ppid: number; policy: number; nice: number; cmd: string[] }>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const p = parseProcStat(stat);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmd = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      if (p) procs.set(Number(name), { ppid, ...p, cmd });
    } catch {
      // gone meanwhile
    }
  }
  const under = (pid: number): boolean => {
    for (let p = procs.get(pid)?.ppid; p; p = procs.get(p)?.ppid) if (p === root) return true;
    return false;
  };
  const isHeavyTerraform = (pid: number) => {
    const cmd = procs.get(pid)?.cmd ?? [];
    return /(^|\/)terraform$/.test(cmd[0] ?? "") && (cmd.includes("apply") || cmd.includes("destroy"));
  };
  const out: Array<{ what: string; policy: number; nice: number }> = [];
  for (const [pid, p] of procs) {
    if (!under(pid)) continue;
    if (isHeavyTerraform(pid)) out.push({ what: "terraform", policy: p.policy, nice: p.nice });
    else if (isHeavyTerraform(p.ppid)) out.push({ what: "provider", policy: p.policy, nice: p.nice });
  }
  return out;
}
