// Worker tasks (fork_worker): a UPID handed back at once, a log, and an exit status read later
// through /nodes/{node}/tasks/{upid}/status, formatted like src/PVE/UPID.pm.
import type { Logger } from "pino";
import { errorText, paramError } from "./errors.js";

export interface TaskInfo {
  upid: string;
  node: string;
  pid: number;
  pstart: number;
  starttime: number;
  type: string;
  id: string;
  /** user@realm!tokenid as it appears in the UPID. */
  user: string;
}

export interface SimTask extends TaskInfo {
  status: "running" | "stopped";
  exitstatus?: string;
  endtime?: number;
  log: string[];
}

/** What a running task can do: print lines to its log. */
export interface TaskLog {
  print(line: string): void;
  warn(line: string): void;
}

const UPID_RE = /^UPID:([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$/;

export function encodeUpid(t: Omit<TaskInfo, "upid">): string {
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(8, "0");
  return `UPID:${t.node}:${hex(t.pid)}:${hex(t.pstart)}:${hex(t.starttime)}:${t.type}:${t.id}:${t.user}:`;
}

export function decodeUpid(upid: string): TaskInfo | undefined {
  const m = UPID_RE.exec(upid);
  if (!m) return undefined;
  return { upid, node: m[1], pid: parseInt(m[3], 16), pstart: parseInt(m[4], 16), starttime: parseInt(m[5], 16), type: m[6], id: m[7], user: m[8] };
}

export class TaskRegistry {
  private readonly tasks = new Map<string, SimTask>();
  private readonly running = new Set<Promise<void>>();
  private nextPid = 0x2a0f1;
  // The daemon's process start (in clock ticks since boot), constant per sim.
  private readonly pstart = 0x1f3a2c;

  constructor(
    private readonly node: string,
    private readonly log: Logger,
  ) {}

  /**
   * Starts a worker and returns its UPID at once. The worker's rejection becomes the exit status
   * ("TASK ERROR: <message>"), like PVE's fork_worker.
   */
  spawn(type: string, id: string | number, user: string, work: (log: TaskLog) => Promise<void>): string {
    const info = { node: this.node, pid: this.nextPid++, pstart: this.pstart, starttime: Math.floor(Date.now() / 1000), type, id: String(id), user };
    const upid = encodeUpid(info);
    const task: SimTask = { ...info, upid, status: "running", log: [] };
    this.tasks.set(upid, task);
    const tlog: TaskLog = { print: (l) => task.log.push(l), warn: (l) => task.log.push(`WARN: ${l}`) };
    this.log.debug({ upid }, "task started");
    const done = (async () => {
      try {
        await work(tlog);
        const warnings = task.log.filter((l) => l.startsWith("WARN: ")).length;
        task.exitstatus = warnings ? `WARNINGS: ${warnings}` : "OK";
        task.log.push(warnings ? `TASK WARNINGS: ${warnings}` : "TASK OK");
      } catch (err) {
        task.exitstatus = errorText(err).split("\n")[0];
        task.log.push(`TASK ERROR: ${errorText(err)}`);
      }
      task.status = "stopped";
      task.endtime = Math.floor(Date.now() / 1000);
      this.log.info({ upid, exitstatus: task.exitstatus }, "task finished");
    })();
    this.running.add(done);
    void done.finally(() => this.running.delete(done));
    return upid;
  }

  /** The task for a UPID; 400 like PVE for unparsable or unknown ones. */
  get(upid: string): SimTask {
    if (!decodeUpid(upid)) throw paramError({ upid: "unable to parse worker upid" });
    const t = this.tasks.get(upid);
    if (!t) throw paramError({ upid: "no such task" });
    return t;
  }

  list(): SimTask[] {
    return [...this.tasks.values()].sort((a, b) => b.starttime - a.starttime || b.pid - a.pid);
  }

  /** Resolves when no task is running. */
  async settle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running]);
  }
}
