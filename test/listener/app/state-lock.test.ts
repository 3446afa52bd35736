// One listener per state dir: the lock is exclusive within a process and across processes, and
// the kernel drops it when its holder dies.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LOCK_FILE, PID_FILE, StateDirBusyError, lockStateDir } from "../../../listener/app/state-lock.js";

const moduleUrl = new URL("../../../listener/app/state-lock.js", import.meta.url).href;

describe("state dir lock", () => {
  test("a second lock in the same process fails, naming this pid; release lets the next one in", () => {
    const dir = mkdtempSync(join(tmpdir(), "state-lock-"));
    try {
      const first = lockStateDir(dir);
      assert.deepEqual(readdirSync(dir).sort(), [LOCK_FILE, PID_FILE], "no journal or other file beside the lock");
      assert.throws(() => lockStateDir(dir), (err: unknown) => {
        assert.ok(err instanceof StateDirBusyError);
        assert.equal(err.message, `pve-runners: state dir ${dir} is in use by pid ${process.pid} (is pve-runners already running?)`);
        return true;
      });
      first.release();
      first.release(); // idempotent
      const second = lockStateDir(dir);
      second.release();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("held by another process: refused with its pid; after a SIGKILL of it, taken at once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "state-lock-"));
    const holder = spawn(process.execPath, ["--input-type=module", "-e", `import { lockStateDir } from ${JSON.stringify(moduleUrl)}; lockStateDir(${JSON.stringify(dir)}); console.log("held"); setInterval(() => {}, 1000);`], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.once("data", () => resolve());
        holder.once("exit", (code) => reject(new Error(`holder exited with ${code}`)));
      });
      assert.equal(readFileSync(join(dir, PID_FILE), "utf8").trim(), String(holder.pid));
      assert.throws(() => lockStateDir(dir), (err: unknown) => err instanceof StateDirBusyError && err.holderPid === holder.pid);
      const exited = new Promise((r) => holder.once("exit", r));
      holder.kill("SIGKILL");
      await exited;
      const mine = lockStateDir(dir);
      assert.equal(readFileSync(join(dir, PID_FILE), "utf8").trim(), String(process.pid));
      mine.release();
    } finally {
      holder.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
