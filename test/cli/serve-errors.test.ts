// `pve-runners serve` with a port another process holds: one line naming the port, exit 1, and the
// state dir untouched (the ports are checked before anything is written).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startWorld } from "../../sim/world.js";
import { freePort } from "../../sim/fault-run.js";
import { quietLogger } from "../e2e/harness.js";

const cli = fileURLToPath(new URL("../../cli/main.js", import.meta.url));

const hold = (port: number): Promise<Server> =>
  new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(port, "127.0.0.1", () => resolve(s));
  });

function serve(configFile: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [cli, "serve", "--config", configFile], { env: { ...env, LOG_LEVEL: "warn" }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b) => (stdout += b));
  child.stderr.on("data", (b) => (stderr += b));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  return new Promise((r) => child.once("exit", (code) => (clearTimeout(timer), r({ code, stdout, stderr }))));
}

/** Every entry under dir with its mtime, or null when dir does not exist. */
const listing = (dir: string) => (existsSync(dir) ? readdirSync(dir, { recursive: true }).map((f) => `${f} ${statSync(join(dir, String(f))).mtimeMs}`).sort() : null);

describe("serve: a busy port", () => {
  for (const which of ["webhook listener", "admin API"] as const) {
    test(`the ${which}'s port held by another process: one line, exit 1, state dir untouched`, async () => {
      const port = await freePort();
      const world = await startWorld({
        timeScale: 0.05,
        logger: quietLogger(),
        configPatch: (c) => {
          if (which === "webhook listener") c.listener = { host: "127.0.0.1", port };
          else c.admin = { host: "127.0.0.1", port };
        },
      });
      const busy = await hold(port);
      try {
        const before = listing(world.config.stateDir);
        const r = await serve(world.configFile, world.serveEnv);
        assert.equal(r.code, 1, r.stderr);
        assert.equal(r.stderr, `pve-runners: 127.0.0.1:${port} (${which}) is in use (is pve-runners already running?)\n`);
        assert.equal(r.stdout, "");
        assert.deepEqual(listing(world.config.stateDir), before, "nothing written to the state dir");
      } finally {
        busy.close();
        await world.stop();
      }
    });
  }
});
