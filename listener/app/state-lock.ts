// One listener per state dir. A second `serve` on the same config must not touch anything: before
// this lock it rewrote the clone gate's certificate, and the running listener's terraform then
// failed with "self-signed certificate" until a restart.
//
// Node has no flock(2). SQLite's unix VFS takes POSIX (fcntl) locks, which the kernel drops when
// the process dies (a SIGKILLed listener restarts at once), and it detects conflicts between
// connections of one process too (POSIX locks alone would not). So the lock is an SQLite file used
// for nothing else, held by an exclusive transaction that stays open; the holder's pid sits beside
// it so a second instance can say who holds it.
import Database from "better-sqlite3";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const LOCK_FILE = "pve-runners.lock";
export const PID_FILE = "pve-runners.pid";

export class StateDirBusyError extends Error {
  constructor(
    readonly stateDir: string,
    readonly holderPid: number | null,
  ) {
    super(`pve-runners: state dir ${stateDir} is in use by ${holderPid ? `pid ${holderPid}` : "another process"} (is pve-runners already running?)`);
    this.name = "StateDirBusyError";
  }
}

export interface StateDirLock {
  /** Lets go of the lock (idempotent); the kernel does the same if the process dies. */
  release(): void;
}

/** Takes the state dir for this process, or throws StateDirBusyError having changed no file. */
export function lockStateDir(stateDir: string): StateDirLock {
  mkdirSync(stateDir, { recursive: true });
  // timeout 0: a busy lock fails at once instead of after better-sqlite3's 5 s busy wait.
  const db = new Database(join(stateDir, LOCK_FILE), { timeout: 0 });
  try {
    db.pragma("locking_mode = EXCLUSIVE");
    // Nothing is ever written: no journal file beside it (both pragmas are per connection).
    db.pragma("journal_mode = MEMORY");
    // Takes SQLite's EXCLUSIVE lock now and holds it until the connection closes.
    db.exec("BEGIN EXCLUSIVE");
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === "SQLITE_BUSY") throw new StateDirBusyError(stateDir, holderPid(stateDir));
    throw err;
  }
  const pidFile = join(stateDir, PID_FILE);
  writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o600 });
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      // Before letting go: once released, the pid file is the next holder's to write.
      rmSync(pidFile, { force: true });
      db.close();
    },
  };
}

function holderPid(stateDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(stateDir, PID_FILE), "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}
