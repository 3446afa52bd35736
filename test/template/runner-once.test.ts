// template/runner-once.sh run for real with stand-ins for run.sh, runuser and poweroff: it waits for
// the JIT config, runs the runner exactly once with the config in the environment (never argv), and
// powers the container off whatever happens.
import { test, describe, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, import.meta.url.endsWith(".ts") ? "../.." : "../../..");
const script = join(root, "template", "runner-once.sh");
const SECRET = "eyJydW5uZXIiOiJqaXQtY29uZmlnIn0.single-use-secret";
const POLL = 0.1;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

describe("runner-once", () => {
  let d: string;
  let env: NodeJS.ProcessEnv;
  const p = (name: string) => join(d, name);
  const read = (name: string) => readFileSync(p(name), "utf8");
  const lines = (name: string) => (existsSync(p(name)) ? read(name).split("\n").filter(Boolean) : []);

  beforeEach(() => {
    d = mkdtempSync(join(tmpdir(), "runner-once-"));
    mkdirSync(p("runner"));
    mkdirSync(p("run"));
    writeFileSync(
      p("runner/run.sh"),
      `#!/bin/bash
d=${JSON.stringify(d)}
date +%s%3N > "$d/run.started"
printf '%s\\n' "$0" "$@" > "$d/run.argv"
printf '%s' "\${ACTIONS_RUNNER_INPUT_JITCONFIG-<unset>}" > "$d/run.env"
echo run >> "$d/run.count"
pwd > "$d/run.cwd"
exit "\${FAKE_RUN_EXIT:-0}"
`,
    );
    writeFileSync(
      p("runuser"),
      `#!/bin/bash
printf '%s\\n' "$@" > ${JSON.stringify(join(d, "runuser.argv"))}
[ "$1" = -u ] && [ "$3" = -- ] || exit 99
shift 3
exec "$@"
`,
    );
    writeFileSync(p("poweroff"), `#!/bin/bash\necho "$*" >> ${JSON.stringify(join(d, "poweroff.log"))}\n`);
    for (const f of ["runner/run.sh", "runuser", "poweroff"]) chmodSync(p(f), 0o755);
    env = {
      PATH: process.env.PATH,
      PVE_RUNNERS_JIT_FILE: p("run/jitconfig"),
      PVE_RUNNERS_INIT_ENVIRON: p("environ"),
      PVE_RUNNERS_RUNNER_DIR: p("runner"),
      PVE_RUNNERS_RUNNER_USER: "runner",
      PVE_RUNNERS_RUNUSER: p("runuser"),
      PVE_RUNNERS_MARKER: p("state/job-started"),
      PVE_RUNNERS_POWEROFF: `${p("poweroff")} --no-wall`,
      PVE_RUNNERS_WAIT_TIMEOUT: "20",
      PVE_RUNNERS_POLL_INTERVAL: String(POLL),
    };
    // PID 1's environment without the config (a stand-in for /proc/1/environ).
    writeFileSync(p("environ"), "container=lxc\0PATH=/usr/sbin:/usr/bin\0");
  });
  afterEach(() => rmSync(d, { recursive: true, force: true }));

  function start(extra: NodeJS.ProcessEnv = {}) {
    const child = spawn("bash", [script], { env: { ...env, ...extra }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const done = new Promise<Run>((res) => child.on("close", (code, signal) => res({ code, signal, stderr })));
    return { child, done };
  }
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** As deliver-jit does it: write aside, then rename into place. */
  function deliver(content: string) {
    writeFileSync(p("run/jitconfig.tmp"), content, { mode: 0o600 });
    renameSync(p("run/jitconfig.tmp"), p("run/jitconfig"));
    return Date.now();
  }

  test("waits while there is no config, then runs run.sh once within a poll, config in the env and not on argv", async () => {
    const { child, done } = start();
    await sleep(600);
    assert.equal(child.exitCode, null, "still waiting");
    assert.equal(existsSync(p("run.count")), false, "the runner has not started");
    assert.equal(existsSync(p("poweroff.log")), false, "not powered off while waiting");
    const deliveredAt = deliver(SECRET + "\n");
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines("run.count"), ["run"], "exactly once");
    const startedAfter = Number(read("run.started").trim()) - deliveredAt;
    assert.ok(startedAfter < POLL * 1000 + 700, `started ${startedAfter} ms after the file appeared`);
    assert.equal(read("run.env"), SECRET, "ACTIONS_RUNNER_INPUT_JITCONFIG holds the config, without the newline");
    assert.deepEqual(lines("run.argv"), [p("runner/run.sh")], "run.sh gets no arguments");
    assert.deepEqual(lines("runuser.argv"), ["-u", "runner", "--", p("runner/run.sh")]);
    assert.ok(!read("runuser.argv").includes(SECRET), "never on argv");
    assert.equal(read("run.cwd").trim(), p("runner"));
    assert.equal(existsSync(p("run/jitconfig")), false, "the config file is gone");
    assert.ok(existsSync(p("state/job-started")), "the marker is written");
    assert.deepEqual(lines("poweroff.log"), ["--no-wall"], "powered off once");
    assert.ok(!r.stderr.includes(SECRET), "never logged");
    assert.match(r.stderr, /JIT config received from .*jitconfig \(\d+ bytes\)/);
  });

  test("a second start (the container rebooted) only powers off, and drops a stray config", async () => {
    deliver(SECRET);
    assert.equal((await start().done).code, 0);
    assert.deepEqual(lines("run.count"), ["run"]);
    deliver("another-config");
    const r = await start().done;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines("run.count"), ["run"], "no second job");
    assert.equal(existsSync(p("run/jitconfig")), false);
    assert.deepEqual(lines("poweroff.log"), ["--no-wall", "--no-wall"]);
    assert.match(r.stderr, /never a second one/);
  });

  test("reads the config from PID 1's environment (PVE 9.1 env option), NUL-separated pairs", async () => {
    const { done } = start();
    await sleep(300);
    writeFileSync(p("environ"), `container=lxc\0ACTIONS_RUNNER_INPUT_JITCONFIG_NOT=x\0ACTIONS_RUNNER_INPUT_JITCONFIG=${SECRET}\0TERM=linux\0`);
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(read("run.env"), SECRET);
    assert.deepEqual(lines("run.count"), ["run"]);
    assert.ok(!read("runuser.argv").includes(SECRET));
    assert.ok(!r.stderr.includes(SECRET));
    assert.match(r.stderr, /from the container's env option/);
    assert.deepEqual(lines("poweroff.log"), ["--no-wall"]);
  });

  test("the last pair of the environ file needs no trailing NUL", async () => {
    writeFileSync(p("environ"), `container=lxc\0ACTIONS_RUNNER_INPUT_JITCONFIG=${SECRET}`);
    const r = await start().done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(read("run.env"), SECRET);
  });

  test("a failing runner still powers the container off, and its status is the unit's", async () => {
    deliver(SECRET);
    const r = await start({ FAKE_RUN_EXIT: "3" }).done;
    assert.equal(r.code, 3);
    assert.deepEqual(lines("run.count"), ["run"]);
    assert.deepEqual(lines("poweroff.log"), ["--no-wall"]);
  });

  test("no config before the timeout: powers off without running anything", async () => {
    const r = await start({ PVE_RUNNERS_WAIT_TIMEOUT: "1" }).done;
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no JIT config after 1s/);
    assert.equal(existsSync(p("run.count")), false);
    assert.equal(existsSync(p("state/job-started")), false);
    assert.deepEqual(lines("poweroff.log"), ["--no-wall"]);
  });

  test("a marker that cannot be written means no job (a restart could repeat it)", async () => {
    writeFileSync(p("state"), "a file where the marker's directory should be");
    deliver(SECRET);
    const r = await start().done;
    assert.notEqual(r.code, 0);
    assert.equal(existsSync(p("run.count")), false);
    assert.deepEqual(lines("poweroff.log"), ["--no-wall"]);
  });

  test("stopped from outside while waiting (SIGTERM): exits without powering off", async () => {
    const { child, done } = start();
    await sleep(300);
    child.kill("SIGTERM");
    const r = await done;
    assert.equal(r.code, 143);
    assert.equal(existsSync(p("poweroff.log")), false);
    assert.equal(existsSync(p("run.count")), false);
  });
});
