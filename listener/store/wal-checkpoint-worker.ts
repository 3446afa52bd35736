// The store's checkpoints, on a thread of their own. A checkpoint copies the WAL into the database
// file and syncs both; run by the committing connection (SQLite's autocheckpoint) it stalls the
// event loop for the copy and two fsyncs every ~4 MB of WAL. PASSIVE never blocks the writer.
import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";

const { file, intervalMs } = workerData as { file: string; intervalMs: number };
const db = new Database(file, { fileMustExist: true });
const timer = setInterval(() => {
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
  } catch (err) {
    // Told to the store, which hands checkpoints back to the writer.
    parentPort?.postMessage({ error: err instanceof Error ? err.message : String(err) });
  }
}, intervalMs);
parentPort?.on("message", (m: unknown) => {
  if (m !== "close") return;
  clearInterval(timer);
  db.close();
  parentPort?.close();
});
