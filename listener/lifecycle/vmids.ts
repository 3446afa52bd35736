// Each runner's vmid, chosen by the listener from proxmox.vmids before its clone, so bpg never
// picks one. bpg's own choice (GET /cluster/nextid, which reserves nothing) keeps parallel provider
// processes apart only within a 5 s window (bpg v0.111.1 proxmox/cluster/id_generator.go): a clone
// that waited longer in the clone lane was handed an id another runner then also got.
//
// Held: a vmid recorded on a live runner (the store's unique index keeps it one runner's). Released:
// the runner is gone or failed. Skipped: any guest PVE lists in /cluster/resources, and any vmid
// GET /cluster/nextid?vmid=N says exists ("VM N already exists": it checks the whole cluster's vmlist,
// unlike /cluster/resources, which shows only guests the token may audit — pve-manager
// PVE/API2/Cluster.pm). A rotating cursor, not lowest-free, so a just-released id is not reused at once.
import type { Store } from "../store/store.js";

export interface VmidRange {
  first: number;
  last: number;
}

/** What PVE says about vmids in use (absent in tests that have no PVE: only the store counts). */
export interface VmidProbe {
  /** The vmids of the guests /cluster/resources lists. */
  inUse(): Promise<Set<number>>;
  /** GET /cluster/nextid?vmid=N: false when a guest anywhere in the cluster has N. */
  isFree(vmid: number): Promise<boolean>;
}

export class VmidAllocator {
  constructor(
    private readonly store: Store,
    private readonly range: () => VmidRange,
    private readonly probe?: VmidProbe,
  ) {}

  /** Records a free vmid on the runner and returns it; throws when the range has none. */
  async allocate(runner: string): Promise<number> {
    const { first, last } = this.range();
    const skip = this.probe ? await this.probe.inUse() : new Set<number>();
    for (;;) {
      const candidate = this.nextCandidate(first, last, skip);
      if (candidate === null) throw new Error(`no free vmid left in proxmox.vmids (${first}-${last}): every id is held by a runner or used by a guest`);
      // Advanced before the probe: a refused id is not offered again on the next call either.
      this.store.setVmidCursor(candidate);
      if (this.probe && !(await this.probe.isFree(candidate))) {
        skip.add(candidate);
        continue;
      }
      if (this.store.assignVmid(runner, candidate)) return candidate;
      skip.add(candidate); // another runner took it while we asked PVE
    }
  }

  /** The first id after the cursor (wrapping) that no live runner holds and `skip` lacks. */
  private nextCandidate(first: number, last: number, skip: Set<number>): number | null {
    const held = this.store.heldVmids();
    const cursor = this.store.vmidCursor();
    const size = last - first + 1;
    const start = cursor !== null && cursor >= first && cursor <= last ? cursor - first + 1 : 0;
    for (let i = 0; i < size; i++) {
      const v = first + ((start + i) % size);
      if (!held.has(v) && !skip.has(v)) return v;
    }
    return null;
  }
}
