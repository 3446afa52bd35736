// Worker tasks (fork_worker): a UPID handed back at once, a log, and an exit status read later
// through /nodes/{node}/tasks/{upid}/status, formatted like src/PVE/UPID.pm. Each node keeps its
// own tasks (/var/log/pve/tasks is node-local); a task of an offline node ends only once it is back.
import type { Logger } from "pino";
import { errorText, paramError } from "./errors.js";
import type { SimNode } from "./state.js";

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

  constructor(private readonly log: Logger) {}

  /** The node's daemon process start (clock ticks since boot), constant per node. */
  private pstart(node: SimNode): number {
    return 0x1f3a2c + node.index * 0x1d4c;
  }

  /**
   * Starts a worker and returns its UPID at once. The worker's rejection becomes the exit status
   * ("TASK ERROR: <message>"), like PVE's fork_worker. `onEnd` hears the exit status once the task is stopped.
   */
  spawn(node: SimNode, type: string, id: string | number, user: string, work: (log: TaskLog) => Promise<void>, onEnd?: (exitstatus: string) => void): string {
    const info = { node: node.name, pid: this.nextPid++, pstart: this.pstart(node), starttime: Math.floor(Date.now() / 1000), type, id: String(id), user };
    const upid = encodeUpid(info);
    const task: SimTask = { ...info, upid, status: "running", log: [] };
    this.tasks.set(upid, task);
    const tlog: TaskLog = { print: (l) => task.log.push(l), warn: (l) => task.log.push(`WARN: ${l}`) };
    this.log.debug({ upid }, "task started");
    const done = (async () => {
      let error: unknown = null;
      try {
        await work(tlog);
      } catch (err) {
        error = err ?? new Error("died");
      }
      await node.untilOnline();
      if (error === null) {
        const warnings = task.log.filter((l) => l.startsWith("WARN: ")).length;
        task.exitstatus = warnings ? `WARNINGS: ${warnings}` : "OK";
        task.log.push(warnings ? `TASK WARNINGS: ${warnings}` : "TASK OK");
      } else {
        task.exitstatus = errorText(error).split("\n")[0];
        task.log.push(`TASK ERROR: ${errorText(error)}`);
      }
      task.status = "stopped";
      task.endtime = Math.floor(Date.now() / 1000);
      this.log.info({ upid, exitstatus: task.exitstatus }, "task finished");
      onEnd?.(task.exitstatus);
    })();
    this.running.add(done);
    void done.finally(() => this.running.delete(done));
    return upid;
  }

  /** The task for a UPID on `node` (its own task log only); 400 like PVE for unparsable or unknown ones. */
  get(upid: string, node: string): SimTask {
    if (!decodeUpid(upid)) throw paramError({ upid: "unable to parse worker upid" });
    const t = this.tasks.get(upid);
    if (!t || t.node !== node) throw paramError({ upid: "no such task" });
    return t;
  }

  /** Newest first; one node's, or the whole cluster's. */
  list(node?: string): SimTask[] {
    return [...this.tasks.values()].filter((t) => node === undefined || t.node === node).sort((a, b) => b.starttime - a.starttime || b.pid - a.pid);
  }

  /** Resolves when no task is running. */
  async settle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running]);
  }
}
