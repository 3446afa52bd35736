// One listener per state dir, as an operator meets it: a second `serve` on the same config exits
// non-zero with one line and changes no file (before the lock it rewrote the clone gate's
// certificate under the running listener); a SIGKILLed listener is replaced at once.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startWorld, type World } from "../../sim/world.js";
import { startService, type Service } from "../../listener/app/service.js";
import { LOCK_FILE, StateDirBusyError } from "../../listener/app/state-lock.js";
import { freePort } from "../../sim/fault-run.js";
import { quietLogger, startE2E } from "./harness.js";

const cli = fileURLToPath(new URL("../../cli/main.js", import.meta.url));

function serve(world: World): ChildProcess {
  const env = { ...world.serveEnv, LOG_LEVEL: "warn" };
  return spawn(process.execPath, [cli, "serve", "--config", world.configFile], { env, stdio: ["ignore", "pipe", "pipe"] });
}

async function up(world: World, child: ChildProcess): Promise<void> {
  const url = `http://127.0.0.1:${world.config.listener.port}/healthz`;
  for (let i = 0; i < 400; i++) {
    if (child.exitCode !== null) throw new Error(`listener exited with ${child.exitCode} at start`);
    if (await fetch(url).then((r) => r.ok, () => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("listener did not come up");
}

function exit(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (b) => (stdout += b));
  child.stderr!.on("data", (b) => (stderr += b));
  return new Promise((r) => child.once("exit", (code) => r({ code, stdout, stderr })));
}

/** Every file under the state dir: content and mtime. `skip`: files not to open (see below). */
function snapshot(dir: string, skip: string[] = []): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const path = join(e.parentPath, e.name);
    const st = statSync(path);
    out.set(path, `${st.mtimeMs} ${st.size} ${skip.includes(e.name) ? "" : readFileSync(path, "base64")}`);
  }
  return out;
}

/** Waits until the listener's start-up init is done (its lock file written) and the state dir is still for 300 ms. */
async function settledDir(dir: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  const lockFile = join(dir, "terraform-init", ".terraform.lock.hcl");
  let last = "";
  for (;;) {
    const now = existsSync(lockFile) ? JSON.stringify([...snapshot(dir, [".terraform.lock.hcl"]).entries()].map(([k, v]) => [k, v.slice(0, 40)])) : "";
    if (now !== "" && now === last) return;
    if (Date.now() > deadline) throw new Error("the state dir did not settle after start");
    last = now;
    await new Promise((r) => setTimeout(r, 300));
  }
}

describe("one listener per state dir", { concurrency: 1 }, () => {
  test("a second `serve` on the same config exits 1 with one line (its port is held) and changes no file; after a SIGKILL a new one starts at once", async () => {
    // A fixed port: the second instance is started on the very same config (and port) as the first.
    const port = await freePort();
    const world = await startWorld({ timeScale: 0.02, logger: quietLogger(), configPatch: (c) => (c.listener = { host: "127.0.0.1", port }) });
    const children: ChildProcess[] = [];
    try {
      const first = serve(world);
      children.push(first);
      await up(world, first);
      assert.ok(readdirSync(world.config.stateDir).includes("clone-gate.pem"), "the clone gate made its certificate");
      // Its start-up `terraform init` (a child process, which SIGSTOP would not stop) ends first.
      await settledDir(world.config.stateDir);
      // Stopped (its lock held) so that nothing it does itself changes a file meanwhile.
      first.kill("SIGSTOP");
      const before = snapshot(world.config.stateDir);
      const second = serve(world);
      children.push(second);
      const r = await exit(second);
      assert.equal(r.code, 1);
      // Its ports are checked first: the same config means the same port, held by the first.
      assert.equal(r.stderr, `pve-runners: 127.0.0.1:${port} (webhook listener) is in use (is pve-runners already running?)\n`);
      assert.equal(r.stdout, "");
      assert.deepEqual(snapshot(world.config.stateDir), before, "the second instance changed no file");
      first.kill("SIGCONT");
      const killed = new Promise((res) => first.once("exit", res));
      first.kill("SIGKILL");
      await killed;
      const third = serve(world);
      children.push(third);
      await up(world, third);
      const stopped = exit(third);
      third.kill("SIGTERM");
      assert.equal((await stopped).code, 0);
    } finally {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
      await world.stop();
    }
  });

  test("a second startService in the same process is refused and changes no file; stop() lets the next one in", async () => {
    const e = await startE2E();
    try {
      const dir = e.world.config.stateDir;
      // The lock file is not opened here: closing any descriptor of it would drop this process's
      // POSIX locks on it (SQLite itself guards against that for its own connections).
      const before = snapshot(dir, [LOCK_FILE]);
      const second = await startService(e.world.config, e.world.secrets, quietLogger(), { helperEnv: e.world.helperEnv, terraformEnv: e.world.terraformEnv }).catch((err: unknown) => err);
      if (!(second instanceof StateDirBusyError)) {
        if (second && typeof second === "object" && "stop" in second) await (second as Service).stop();
        assert.fail(`a second startService on the same state dir was not refused: ${second instanceof Error ? second.message : "it started"}`);
      }
      assert.equal(second.holderPid, process.pid);
      assert.deepEqual(snapshot(dir, [LOCK_FILE]), before, "no file changed");
      await e.restart(); // stop() released the lock: the same process starts again
      assert.ok(e.service.url);
    } finally {
      await e.stop();
    }
  });
});
