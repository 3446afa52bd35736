// A record of every clone request the simulator answered: when it came, what it asked for, whether
// a task started or the call was refused (and with what), and the task's start and end. Tests use
// it to see clones of one template overlap (PVE refuses the second with "CT is locked (disk)") and
// to count refusals.
export interface CloneRecord {
  /** Order of arrival, from 1. */
  seq: number;
  /** Date.now() when the node's handler received the call. */
  at: number;
  /** The clone source: the node in the path and the template's vmid. */
  node: string;
  vmid: number;
  newid: number | null;
  outcome: "started" | "refused";
  /** Refused: the HTTP status and PVE's message (first line). */
  status?: number;
  message?: string;
  /** Started: the vzclone task, its start and (once stopped) its end and exit status. */
  upid?: string;
  taskStart?: number;
  taskEnd?: number;
  exitstatus?: string;
}

export interface CloneCounts {
  requested: number;
  started: number;
  refused: number;
  /** Refusals with "CT is locked (…)": the source was busy (or a fault said so). */
  refusedLocked: number;
}

/** A clone request that reached a source while a clone task of that source was running. */
export interface CloneOverlap {
  node: string;
  vmid: number;
  /** seq of the running clone. */
  running: number;
  /** seq of the request that came while it ran (refused by PVE with "CT is locked (disk)"). */
  request: number;
}

export class CloneLog {
  private readonly records: CloneRecord[] = [];

  request(node: string, vmid: number, newid: number | null): CloneRecord {
    const r: CloneRecord = { seq: this.records.length + 1, at: Date.now(), node, vmid, newid, outcome: "refused" };
    this.records.push(r);
    return r;
  }

  started(r: CloneRecord, upid: string, taskStart: number): void {
    r.outcome = "started";
    r.upid = upid;
    r.taskStart = taskStart;
  }

  ended(r: CloneRecord, exitstatus: string): void {
    r.taskEnd = Date.now();
    r.exitstatus = exitstatus;
  }

  refused(r: CloneRecord, status: number, message: string): void {
    r.outcome = "refused";
    r.status = status;
    r.message = message.split("\n")[0];
  }

  list(): CloneRecord[] {
    return this.records.map((r) => ({ ...r }));
  }

  counts(): CloneCounts {
    const refused = this.records.filter((r) => r.outcome === "refused");
    return {
      requested: this.records.length,
      started: this.records.length - refused.length,
      refused: refused.length,
      refusedLocked: refused.filter((r) => /^CT is locked \(/.test(r.message ?? "")).length,
    };
  }
}

/**
 * Per source (node, vmid): every clone request that arrived while another clone task of the same
 * source was running (a task not yet ended runs until `now`). PVE refuses those at once with
 * "CT is locked (disk)"; a client that serializes clones per template (the clone gate) has none.
 * Refusals injected by `cloneLockedRate` are not overlaps: no task was running.
 */
export function cloneOverlaps(records: readonly CloneRecord[], now = Date.now()): CloneOverlap[] {
  const out: CloneOverlap[] = [];
  for (const s of records) {
    if (s.outcome !== "started" || s.taskStart === undefined) continue;
    const end = s.taskEnd ?? now;
    for (const r of records) {
      if (r.seq <= s.seq || r.node !== s.node || r.vmid !== s.vmid) continue;
      if (r.at >= s.taskStart && r.at < end) out.push({ node: s.node, vmid: s.vmid, running: s.seq, request: r.seq });
    }
  }
  return out.sort((a, b) => a.request - b.request || a.running - b.running);
}
