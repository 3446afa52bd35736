// The terraform adapter against the real terraform binary (built-in terraform_data resources,
// local-exec provisioners for slowness and failure) plus small fake engines for what real
// terraform cannot be made to do on demand (ignore SIGINT, speak an unknown UI version).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SCHED_IDLE, Terraform, TerraformError, launchScript, parseProcStat } from "../../../../listener/adapters/terraform/terraform.js";
import { readFileSync, symlinkSync } from "node:fs";
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { captureLog, countingShim, isAlive, subcommandsRun, writeExecutable, writeStack } from "../../../fixtures/terraform/helpers.js";

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), "pve-runners-tf-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const execFileP = promisify(execFile);

async function newTerraform(name: string, extra: Partial<ConstructorParameters<typeof Terraform>[0]> = {}) {
  const log = captureLog();
  const tf = new Terraform({ binary: "terraform", sharedInitDir: join(root, name, "shared-init"), logger: log.logger, ...extra });
  return { tf, log, dir: join(root, name) };
}

async function rejection(p: Promise<unknown>): Promise<TerraformError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof TerraformError, `expected a TerraformError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected the promise to reject");
}

describe("Terraform adapter", () => {
  test("version() reports the engine: terraform here, OpenTofu from its banner", async () => {
    const { tf, dir } = await newTerraform("version");
    assert.deepEqual(await tf.version(), { version: "1.11.4", engine: "terraform" });

    const fakeTofu = await writeExecutable(join(root, "fake-tofu"), `#!/bin/sh\necho "OpenTofu v1.8.5"\necho "on linux_amd64"\n`);
    const tofu = new Terraform({ binary: fakeTofu, sharedInitDir: join(dir, "tofu-init"), logger: captureLog().logger });
    assert.deepEqual(await tofu.version(), { version: "1.8.5", engine: "tofu" });
  });

  test("an unknown binary gives a clear error, not a crash", async () => {
    const { tf, dir } = await newTerraform("missing", { binary: "terraform-not-installed-xyz" });
    const v = await rejection(tf.version());
    assert.match(v.message, /terraform-not-installed-xyz: not found/);
    assert.match(v.message, /terraform\.binary/);
    const stack = await writeStack(join(dir, "s"), { r: {} });
    const p = await rejection(tf.prepare(stack.file));
    assert.match(p.message, /not found/);
    // A missing stack dir is not mistaken for a missing binary.
    const real = new Terraform({ binary: "terraform", sharedInitDir: join(dir, "x"), logger: captureLog().logger });
    assert.match((await rejection(real.output(join(dir, "no-such-dir")))).message, /stack dir .*no-such-dir does not exist/);
  });

  test("apply and destroy run terraform and what it starts under SCHED_IDLE at nice 10; other commands as the listener", async () => {
    const own = parseProcStat(readFileSync("/proc/self/stat", "utf8"))!;
    const lowered = { policy: SCHED_IDLE, nice: Math.min(19, own.nice + 10) };
    for (const [name, extra, want] of [
      ["prio-default", {}, lowered],
      ["prio-off", { schedIdle: false, nice: 0 }, own],
      ["prio-nice", { schedIdle: false, nice: 5 }, { policy: own.policy, nice: Math.min(19, own.nice + 5) }],
    ] as const) {
      const { dir, log } = await newTerraform(name);
      // The shim's shell execs terraform: its /proc entry is terraform's priority.
      await mkdir(dir, { recursive: true });
      const record = join(dir, "priority.log");
      const shim = await writeExecutable(join(dir, "terraform-shim"), `#!/bin/sh\necho "$1 $(cat /proc/$$/stat)" >> "${record}"\nexec terraform "$@"\n`);
      const tf = new Terraform({ binary: shim, sharedInitDir: join(dir, "shared-init"), logger: log.logger, ...extra });
      const s = await writeStack(join(dir, "stack"), { r: { command: `cat /proc/self/stat > "${dir}/child.stat"` } });
      await tf.prepare(s.file);
      await tf.apply(s.workingDir, { runner: "runner-prio" });
      await tf.output(s.workingDir);
      await tf.destroy(s.workingDir, { runner: "runner-prio" });
      const seen = new Map((await readFile(record, "utf8")).trim().split("\n").map((l) => [l.slice(0, l.indexOf(" ")), parseProcStat(l.slice(l.indexOf(" ") + 1))]));
      assert.deepEqual(seen.get("apply"), want, `${name}: apply`);
      assert.deepEqual(seen.get("destroy"), want, `${name}: destroy`);
      assert.deepEqual(parseProcStat(await readFile(join(dir, "child.stat"), "utf8")), want, `${name}: a process terraform started`);
      assert.deepEqual(seen.get("init"), { policy: own.policy, nice: own.nice }, `${name}: init`);
      assert.equal(seen.has("output"), false, `${name}: output reads the state file, it starts no terraform`);
      assert.equal((await tf.checkPriority()).ok, true, `${name}: checkPriority`);
    }
  });

  test("apply runs terraform in a process group of its own but in the listener's session and autogroup, so SCHED_IDLE ranks it below the listener", async () => {
    // A new session (setsid) would be a new autogroup: a nice-0 share of the CPU of its own.
    const ownStat = readFileSync("/proc/self/stat", "utf8");
    const own = ownStat.slice(ownStat.lastIndexOf(")") + 2).split(" ");
    const ownSession = own[6 - 3];
    const ownAutogroup = autogroupOf("self");
    const { dir, log } = await newTerraform("session");
    await mkdir(dir, { recursive: true });
    // The shim's shell execs terraform: its pid, group and session are terraform's.
    const shim = await writeExecutable(join(dir, "terraform-shim"), `#!/bin/sh\n[ "$1" = apply ] && echo "$$ $(cut -d' ' -f5,6 /proc/$$/stat) $(cat /proc/$$/autogroup 2>/dev/null | cut -d' ' -f1)" > "${dir}/terraform.ids"\nexec terraform "$@"\n`);
    const tf = new Terraform({ binary: shim, sharedInitDir: join(dir, "shared-init"), logger: log.logger });
    const s = await writeStack(join(dir, "stack"), { r: { command: `echo "$(cut -d' ' -f5,6 /proc/self/stat) $(cat /proc/self/autogroup 2>/dev/null | cut -d' ' -f1)" > "${dir}/child.ids"` } });
    await tf.prepare(s.file);
    await tf.apply(s.workingDir, { runner: "runner-session" });
    // A kernel without CONFIG_SCHED_AUTOGROUP has no /proc/<pid>/autogroup: the field is empty there.
    const [pid, group, session, autogroup = ""] = (await readFile(join(dir, "terraform.ids"), "utf8")).trim().split(" ");
    assert.equal(group, pid, "terraform leads a process group of its own (the SIGKILL after the grace reaches its providers)");
    assert.equal(session, ownSession, "terraform stays in the listener's session");
    assert.equal(autogroup, ownAutogroup, "and so in the listener's autogroup");
    const [childGroup, childSession, childAutogroup = ""] = (await readFile(join(dir, "child.ids"), "utf8")).trim().split(" ");
    assert.deepEqual([childGroup, childSession, childAutogroup], [pid, ownSession, ownAutogroup], "a process terraform started is in terraform's group, the listener's session and autogroup");
  });

  test("the launch script without perl on PATH: terraform gets a session of its own (setsid), so its group can still be killed", async () => {
    const ownSession = readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" ")[6 - 3];
    for (const withPerl of [true, false]) {
      const bin = join(root, `launch-path-${withPerl}`);
      await mkdir(bin, { recursive: true });
      const tools = ["chrt", "nice", "setsid", "cut", ...(withPerl ? ["perl"] : [])];
      for (const t of tools) symlinkSync(execFileSync("/bin/sh", ["-c", `command -v ${t}`], { encoding: "utf8" }).trim(), join(bin, t));
      const out = execFileSync("/bin/sh", ["-c", launchScript({ schedIdle: true, nice: 10 }), "cut", "-d", " ", "-f1,5,6", "/proc/self/stat"], { encoding: "utf8", env: { PATH: bin } });
      const [pid, group, session] = out.trim().split(" ");
      assert.equal(group, pid, `perl on PATH: ${withPerl}: a process group of its own`);
      assert.equal(session, withPerl ? ownSession : pid, withPerl ? "perl: the caller's session" : "no perl: a session of its own, as before");
    }
  });

  test("parseProcStat reads policy and nice after the command name, whatever that holds", () => {
    const fields = (comm: string) => `4242 (${comm}) S 1 ${Array.from({ length: 50 }, (_, i) => i + 5).join(" ")}`;
    // From field 5 on each field holds its own number: nice is field 19, the policy field 41.
    assert.deepEqual(parseProcStat(fields("terraform")), { nice: 19, policy: 41 });
    assert.deepEqual(parseProcStat(fields("a) S 1 2 (b")), { nice: 19, policy: 41 });
    assert.equal(parseProcStat("not a stat line"), null);
  });

  test("init runs once in the shared dir; three stacks reuse its .terraform without init", async () => {
    const { dir, log } = await newTerraform("reuse");
    const shimLog = join(dir, "subcommands.log");
    const shim = await writeExecutable(join(root, "counting-terraform"), countingShim(shimLog));
    const tf = new Terraform({ binary: shim, sharedInitDir: join(dir, "shared-init"), logger: log.logger });
    const stacks = await Promise.all([1, 2, 3].map((i) => writeStack(join(dir, `runner-${i}`), { r: { input: `runner-${i}` } })));

    // Concurrent callers share one init.
    await Promise.all(stacks.map((s) => tf.prepare(s.file)));
    await tf.prepare(stacks[0].file);
    assert.deepEqual(await subcommandsRun(shimLog), ["init"]);
    // Mark the shared .terraform so the copies can be recognised.
    await writeFile(join(dir, "shared-init", ".terraform", "from-shared"), "yes");

    await Promise.all(stacks.map((s, i) => tf.apply(s.workingDir, { runner: `runner-${i + 1}` })));
    const runs = await subcommandsRun(shimLog);
    assert.equal(runs.filter((c) => c === "init").length, 1, `init ran again: ${runs.join(",")}`);
    assert.equal(runs.filter((c) => c === "apply").length, 3);
    for (const s of stacks) {
      assert.equal(await readFile(join(s.workingDir, ".terraform", "from-shared"), "utf8"), "yes");
      // No leftover temporary copy beside it.
      assert.deepEqual((await readdir(s.workingDir)).filter((n) => n.startsWith(".terraform.copy-")), []);
      const resources = await tf.stateResources(s.workingDir);
      assert.deepEqual(resources.map((r) => [r.address, r.tainted]), [["terraform_data.r", false]]);
      const out = await tf.output(s.workingDir);
      assert.equal((out.id as { value: string }).value, resources[0].id);
      assert.deepEqual(out, JSON.parse((await execFileP("terraform", ["output", "-json"], { cwd: s.workingDir })).stdout), "the state file's outputs are what `terraform output -json` says");
    }
    // Reading the outputs starts no terraform (issue 17: one process per apply and per destroy).
    assert.equal((await subcommandsRun(shimLog)).filter((c) => c === "output").length, 0);

    for (const [i, s] of stacks.entries()) await tf.destroy(s.workingDir, { runner: `runner-${i + 1}` });
    for (const s of stacks) assert.deepEqual(await tf.stateResources(s.workingDir), []);
    assert.equal((await subcommandsRun(shimLog)).filter((c) => c === "init").length, 1);
  });

  test("JSON lines reach the log with the runner name; env is minimal and secrets stay out of the log", async () => {
    const secret = "PVEAPIToken=root@pam!ci=0123-secret-value";
    const sha = createHash("sha256").update(secret).digest("hex");
    const cliConfigFile = join(root, "test.tfrc");
    await writeFile(cliConfigFile, "# empty CLI config for the test\n");
    process.env.PVE_RUNNERS_LEAK_CHECK = "must-not-reach-terraform";
    try {
      const { tf, log, dir } = await newTerraform("env", { env: { PROXMOX_VE_API_TOKEN: secret }, cliConfigFile });
      // The check runs inside terraform's provisioner: any mismatch fails the apply (exit 1).
      const check = [
        `test "$TF_IN_AUTOMATION" = 1`,
        `test "$TF_INPUT" = 0`,
        `test "$CHECKPOINT_DISABLE" = 1`,
        `test "$TF_CLI_CONFIG_FILE" = "${cliConfigFile}"`,
        `test -z "$PVE_RUNNERS_LEAK_CHECK"`,
        `test "$(printf %s "$PROXMOX_VE_API_TOKEN" | sha256sum | cut -c1-64)" = "${sha}"`,
      ].join(" && ");
      const s = await writeStack(join(dir, "runner-env"), { r: { command: check } });
      await tf.prepare(s.file);
      const result = await tf.apply(s.workingDir, { runner: "runner-env" });
      assert.equal(result.changes?.add, 1);
      assert.deepEqual(result.applied.map((a) => a.address), ["terraform_data.r"]);

      const complete = log.lines.find((l) => l.tf === "apply_complete");
      assert.ok(complete, "apply_complete was logged");
      assert.equal(complete.runner, "runner-env");
      assert.equal(complete.level, 30);
      assert.match(String(complete.msg), /terraform_data\.r: Creation complete/);
      for (const type of ["version", "apply_start", "change_summary"]) {
        assert.ok(log.lines.some((l) => l.tf === type && l.runner === "runner-env"), `${type} logged with the runner`);
      }
      await tf.destroy(s.workingDir, { runner: "runner-env" });
      assert.ok(log.lines.some((l) => l.tf === "change_summary" && /Destroy complete/.test(String(l.msg)) && l.runner === "runner-env"));
      assert.ok(!log.text().includes(secret), "the token never reaches the log");
      assert.ok(!log.text().includes("0123-secret-value"));
    } finally {
      delete process.env.PVE_RUNNERS_LEAK_CHECK;
    }
  });

  test("a failing apply gives the diagnostic, leaves a tainted resource, and destroy cleans it", async () => {
    const { tf, log, dir } = await newTerraform("fail");
    const s = await writeStack(join(dir, "runner-fail"), { r: { command: "echo cloning; exit 1" } });
    await tf.prepare(s.file);
    const err = await rejection(tf.apply(s.workingDir, { runner: "runner-fail" }));
    assert.equal(err.exitCode, 1);
    assert.equal(err.cancelled, false);
    assert.equal(err.timedOut, false);
    assert.equal(err.diagnostics[0].summary, "local-exec provisioner error");
    assert.equal(err.diagnostics[0].address, "terraform_data.r");
    assert.match(err.message, /^terraform apply failed \(in .*runner-fail\): local-exec provisioner error: Error running command 'echo cloning; exit 1': exit status 1/);
    assert.ok(log.lines.some((l) => l.tf === "diagnostic" && l.level === 50 && l.runner === "runner-fail"));

    const resources = await tf.stateResources(s.workingDir);
    assert.equal(resources.length, 1);
    assert.equal(resources[0].tainted, true);
    assert.ok(resources[0].id);

    await tf.destroy(s.workingDir, { runner: "runner-fail" });
    assert.deepEqual(await tf.stateResources(s.workingDir), []);
    // Destroy again on the now empty state, and on a dir that never had state: both succeed.
    await tf.destroy(s.workingDir, { runner: "runner-fail" });
    await tf.destroy(join(dir, "never-applied"), { runner: "runner-none" });
  });

  test("issue 14: a hidden text (the PVE token's secret) never leaves terraform's output, in logs or errors", async () => {
    const { tf, log, dir } = await newTerraform("hide");
    const secret = "0123456789abcdef0123456789abcdef";
    // Any text terraform prints, e.g. a URL as Go's *url.Error prints it, with the hidden text in it.
    tf.setEnv({ GATE_URL: `https://127.0.0.1:1/${secret}/` }, { hide: [secret] });
    const s = await writeStack(join(dir, "runner-hide"), { r: { command: "echo Post $GATE_URL: connection refused; exit 1" } });
    await tf.prepare(s.file);
    const err = await rejection(tf.apply(s.workingDir, { runner: "runner-hide" }));
    assert.match(err.message, /<redacted>/, err.message);
    assert.ok(!err.message.includes(secret), err.message);
    assert.ok(log.lines.some((l) => JSON.stringify(l).includes("https://127.0.0.1:1/<redacted>/")), "the output is logged, the secret replaced");
    assert.ok(!log.text().includes(secret), "never in the log");
    await tf.destroy(s.workingDir, { runner: "runner-hide" });
  });

  test("cancel mid-apply: one SIGINT, terraform says so, persists state (tainted) and exits non-zero", async () => {
    const { tf, log, dir } = await newTerraform("cancel");
    const s = await writeStack(join(dir, "runner-cancel"), { r: { command: "exec sleep 20" } });
    await tf.prepare(s.file);
    const ac = new AbortController();
    const started = Date.now();
    const applying = rejection(tf.apply(s.workingDir, { runner: "runner-cancel", signal: ac.signal }));
    await log.waitFor((l) => l.tf === "provision_progress" && l.runner === "runner-cancel");
    ac.abort();
    const err = await applying;
    assert.ok(Date.now() - started < 8_000, "cancel took effect long before the sleep ended");
    assert.equal(err.cancelled, true);
    assert.equal(err.timedOut, false);
    assert.equal(err.exitCode, 1);
    assert.match(err.message, /terraform apply was cancelled/);
    assert.ok(log.lines.some((l) => /Interrupt received/.test(String(l.msg)) && l.runner === "runner-cancel"), "terraform acknowledged the interrupt");
    assert.ok(!log.lines.some((l) => /Two interrupts received/.test(String(l.msg))), "only one SIGINT was sent");
    const resources = await tf.stateResources(s.workingDir);
    assert.deepEqual(resources.map((r) => r.tainted), [true]);
    await tf.destroy(s.workingDir, { runner: "runner-cancel" });
    assert.deepEqual(await tf.stateResources(s.workingDir), []);

    // Already aborted: nothing is started at all.
    const pre = await rejection(tf.apply(s.workingDir, { runner: "runner-cancel", signal: AbortSignal.abort() }));
    assert.equal(pre.cancelled, true);
  });

  test("timeout interrupts the apply and says it timed out", async () => {
    const { tf, dir } = await newTerraform("timeout");
    const s = await writeStack(join(dir, "runner-timeout"), { r: { command: "exec sleep 20" } });
    await tf.prepare(s.file);
    const started = Date.now();
    const err = await rejection(tf.apply(s.workingDir, { runner: "runner-timeout", timeoutMs: 700 }));
    const took = Date.now() - started;
    assert.ok(took >= 700 && took < 8_000, `took ${took} ms`);
    assert.equal(err.timedOut, true);
    assert.equal(err.cancelled, false);
    assert.match(err.message, /terraform apply timed out after 0\.7s/);
    await tf.destroy(s.workingDir, { runner: "runner-timeout" });
  });

  test("an engine that ignores SIGINT is SIGKILLed with its whole process group after the grace", async () => {
    const pidFile = join(root, "stubborn-child.pid");
    const stubborn = await writeExecutable(
      join(root, "stubborn-terraform"),
      [
        "#!/bin/sh",
        "trap '' INT",
        `sleep 30 & echo $! > "${pidFile}"`,
        `echo '{"@level":"info","@message":"Terraform 1.11.4","type":"version","terraform":"1.11.4","ui":"1.2"}'`,
        "while :; do sleep 0.05; done",
        "",
      ].join("\n"),
    );
    const log = captureLog();
    const dir = join(root, "stubborn");
    const tf = new Terraform({ binary: stubborn, sharedInitDir: join(dir, "shared-init"), logger: log.logger, killGraceMs: 300 });
    const s = await writeStack(join(dir, "runner-stubborn"), { r: {} });
    await writeFile(join(s.workingDir, "terraform.tfstate"), "{}"); // so destroy actually runs the engine
    await mkdir(join(s.workingDir, ".terraform"), { recursive: true });
    const ac = new AbortController();
    const destroying = rejection(tf.destroy(s.workingDir, { runner: "runner-stubborn", signal: ac.signal }));
    await log.waitFor((l) => l.tf === "version");
    const started = Date.now();
    ac.abort();
    const err = await destroying;
    const took = Date.now() - started;
    assert.ok(took >= 300 && took < 3_000, `took ${took} ms`);
    assert.equal(err.cancelled, true);
    assert.equal(err.exitCode, null);
    assert.match(err.message, /killed by SIGKILL/);
    assert.ok(log.lines.some((l) => /SIGKILL to its process group/.test(String(l.msg))));
    const childPid = Number(await readFile(pidFile, "utf8"));
    assert.equal(await isAlive(childPid), false, "the engine's child died with its group");
  });

  test("an unknown machine-readable UI major version is refused", async () => {
    const futureUi = await writeExecutable(
      join(root, "future-terraform"),
      [
        "#!/bin/sh",
        "trap 'exit 1' INT",
        `echo '{"@level":"info","@message":"Terraform 9.0.0","type":"version","terraform":"9.0.0","ui":"2.0"}'`,
        "sleep 10 & wait $!",
        "",
      ].join("\n"),
    );
    const dir = join(root, "future");
    const tf = new Terraform({ binary: futureUi, sharedInitDir: join(dir, "shared-init"), logger: captureLog().logger, killGraceMs: 2_000 });
    const s = await writeStack(join(dir, "runner-future"), { r: {} });
    await mkdir(join(s.workingDir, ".terraform"), { recursive: true });
    const started = Date.now();
    const err = await rejection(tf.apply(s.workingDir, { runner: "runner-future" }));
    assert.ok(Date.now() - started < 5_000, "refused at the first line, not after the run");
    assert.match(err.message, /machine-readable UI version "2\.0"; pve-runners understands 1\.x only/);
    assert.equal(err.cancelled, false);
  });

  test("a second stack's apply never waits for the first's", async () => {
    const { tf, dir } = await newTerraform("parallel");
    const slow = await writeStack(join(dir, "runner-slow"), { r: { command: "exec sleep 3" } });
    const fast = await writeStack(join(dir, "runner-fast"), { r: {} });
    await tf.prepare(slow.file);
    const t0 = Date.now();
    let slowDone = 0;
    const slowApply = tf.apply(slow.workingDir, { runner: "runner-slow" }).then(() => (slowDone = Date.now()));
    await new Promise((r) => setTimeout(r, 300)); // the slow one is inside its provisioner
    await tf.apply(fast.workingDir, { runner: "runner-fast" });
    const fastDone = Date.now();
    await slowApply;
    assert.ok(fastDone < slowDone, "fast stack finished first");
    assert.ok(fastDone - t0 < 2_500, `fast apply took ${fastDone - t0} ms`);
    await Promise.all([tf.destroy(slow.workingDir, { runner: "runner-slow" }), tf.destroy(fast.workingDir, { runner: "runner-fast" })]);
  });

  test("apply before any init fails clearly", async () => {
    const { tf, dir } = await newTerraform("unprepared");
    const s = await writeStack(join(dir, "runner-x"), { r: {} });
    const err = await rejection(tf.apply(s.workingDir, { runner: "runner-x" }));
    assert.match(err.message, /not initialised: .*shared-init\/\.terraform is missing/);
    await assert.rejects(stat(join(s.workingDir, "terraform.tfstate")));
  });
});

/** The autogroup of a process ("/autogroup-123"), or "" where the kernel has none. */
function autogroupOf(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/autogroup`, "utf8").split(" ")[0] ?? "";
  } catch {
    return "";
  }
}
