// A runner's provisioning step: its vmid (reserved once, kept across attempts and restarts), its
// node and template copy (placement, on every attempt), a terraform run slot, its stack
// synthesized, and `terraform apply` through the template's clone lane. A failed apply is destroyed
// before the next attempt; a vmid another guest took at clone time gets a fresh one at once.
import { join } from "node:path";
import type { Logger } from "pino";
import { deleteTimeoutFor, synthRunnerStack } from "../../stacks/runner-stack.js";
import { isVmidClash } from "./clone-gate.js";
import { DEFAULT_NAME_PREFIX, newRunnerName } from "./ownership.js";
import { Placement, type TemplateCopy } from "./placement.js";
import { VmidAllocator } from "./vmids.js";
import { LIVE_STATES, UNCLAIMED, type RunnerRow } from "../store/store.js";
import { errMessage, sleep, Stopped } from "./abortable.js";
import type { LabelSetSpec, PipelineDeps } from "./pipeline-deps.js";

/** Clone-time vmid clashes a runner may meet (each gets a fresh vmid) before they count as failed attempts. */
const MAX_VMID_CLASHES = 5;

export class Provision {
  private placement: Placement;
  private readonly vmids: VmidAllocator;
  /** Clone-time clashes per runner (in memory: bounded per process, which is enough to stop a loop). */
  private readonly vmidClashes = new Map<string, number>();

  constructor(
    private readonly d: PipelineDeps,
    private readonly waitForEvent: (name: string, ms: number) => Promise<void>,
  ) {
    this.placement = this.makePlacement();
    this.vmids = new VmidAllocator(d.store, () => this.d.settings.proxmox.vmids, d.vmidProbe);
  }

  /** New settings (a config reload): placement follows the new template copies and node limits. */
  settingsChanged(): void {
    this.placement = this.makePlacement();
  }

  /** The runner is no longer driven: its clash count goes. */
  forget(name: string): void {
    this.vmidClashes.delete(name);
  }

  private makePlacement(): Placement {
    const s = this.d.settings;
    return new Placement({
      templates: s.proxmox.templates,
      limits: s.proxmox.nodeLimits,
      readNodes: this.d.readNodes ?? (async () => []),
      memoryOf: (labelSet) => s.labelSets.find((x) => x.name === labelSet)?.memoryMb ?? 0,
      logger: this.d.logger,
    });
  }

  /**
   * At start: `terraform init` into the shared dir now, so the first job after a (re)start does not
   * wait for it (about a second of the first burst's critical path). The stack is a stand-in
   * runner's: init reads only the provider requirements. With terraform.sharedProvider the provider
   * is started here too. A failure is left to the first job, whose prepare() runs init again (and
   * whose apply starts the provider).
   */
  async initTerraform(): Promise<void> {
    const s = this.d.settings;
    const copy = s.proxmox.templates[0];
    const set = s.labelSets[0];
    if (!copy || !set) return;
    const stack = synthRunnerStack(join(s.stateDir, "terraform-init-stack"), {
      runnerName: newRunnerName(s.namePrefix ?? DEFAULT_NAME_PREFIX),
      labelSet: set.name,
      controllerId: this.d.store.controllerId(),
      node: copy.node,
      templateVmid: copy.vmid,
      templateNode: copy.sourceNode,
      bridge: s.proxmox.bridge,
      linkedClone: s.proxmox.linkedClone,
      cores: set.cores,
      memoryMb: set.memoryMb,
      swapMb: set.swapMb,
    });
    await this.d.terraform.prepare(stack.file);
    await this.d.terraform.startSharedProvider?.();
  }

  /** provisioning → booting (or warm, for an unclaimed warm-pool member), or another attempt, or destroying. */
  async step(r: RunnerRow, log: Logger, signal: AbortSignal): Promise<void> {
    const s = this.d.settings;
    const set = s.labelSets.find((x) => x.name === r.labelSet);
    if (!set) throw new Error(`label set ${r.labelSet} is no longer configured`);
    const stackDir = r.stackDir ?? join(s.stateDir, "runners", r.name);
    // Chosen once, before the clone, and kept across attempts and restarts: the re-run after a
    // restart targets the same vmid. Only a clash at clone time gives the runner a fresh one.
    // The node loads are read meanwhile: two API round trips side by side, not one after the other.
    const loading = this.placement.loads();
    let vmid = r.vmid;
    if (vmid === null) {
      vmid = await this.vmids.allocate(r.name);
      log.info({ vmid }, "vmid reserved");
    }
    // Placed on every attempt: after a failure (a node down) the next attempt may go elsewhere.
    const loads = await loading;
    const placed = this.placement.choose(r, this.d.store.runners(LIVE_STATES), loads);
    if ("wait" in placed) {
      log.info({ why: placed.wait }, "no node can take this runner now: waiting");
      this.placement.invalidate();
      await this.waitForEvent(r.name, Math.max(s.retryBackoffMs, 1_000));
      return;
    }
    const copy = placed.copy;
    this.d.store.setPlacement(r.name, copy.node, copy.key);
    log.info({ node: copy.node, template: copy.key }, "runner placed");
    // With the clone gate, the terraform slot is taken before the stack is made: in a burst the
    // first applies run while later runners are still synthesized. (Around whole applies, the
    // lane is taken first and the slot inside it, as before.)
    const slot = this.d.lane ? undefined : await this.d.terraform.reserveSlot?.(copy.key, signal, r.name);
    try {
      await this.provisionPlaced(r, log, signal, { set, stackDir, vmid, copy, slot });
    } finally {
      slot?.release();
    }
  }

  private async provisionPlaced(
    r: RunnerRow,
    log: Logger,
    signal: AbortSignal,
    { set, stackDir, vmid, copy, slot }: { set: LabelSetSpec; stackDir: string; vmid: number; copy: TemplateCopy; slot?: { release(): void } },
  ): Promise<void> {
    const s = this.d.settings;
    const stack = synthRunnerStack(stackDir, {
      runnerName: r.name,
      labelSet: set.name,
      controllerId: this.d.store.controllerId(),
      endpoint: this.d.lane ? s.proxmox.endpoint : undefined,
      insecure: this.d.lane ? s.proxmox.insecure : undefined,
      node: copy.node,
      vmid,
      templateVmid: copy.vmid,
      templateNode: copy.sourceNode,
      pool: s.proxmox.pool,
      bridge: s.proxmox.bridge,
      vlan: s.proxmox.vlan,
      linkedClone: s.proxmox.linkedClone,
      datastore: s.proxmox.storage,
      cores: set.cores,
      memoryMb: set.memoryMb,
      swapMb: set.swapMb,
      // Started outside the lane (boot.ts) when we can; the env delivery starts it itself.
      start: !this.d.delivery.startsContainer && !this.d.startContainer,
      deleteTimeoutSec: deleteTimeoutFor(s.timeouts.destroyMs / 1000),
    });
    try {
      await this.d.terraform.prepare(stack.file);
      const started = Date.now();
      const apply = async () => {
        const entered = Date.now();
        if (this.d.lane) this.d.metrics?.phase("lane_wait", (entered - started) / 1000);
        try {
          const out = await this.d.terraform.apply(stack.workingDir, { runner: r.name, lane: copy.key, slot, signal, timeoutMs: s.timeouts.applyMs });
          this.d.metrics?.terraformRun("apply", (Date.now() - entered) / 1000, true);
          this.d.metrics?.phase("apply", (Date.now() - entered) / 1000);
          return out;
        } catch (err) {
          this.d.metrics?.terraformRun("apply", (Date.now() - entered) / 1000, false);
          throw err;
        }
      };
      await (this.d.lane ? this.d.lane.run(copy.key, r.name, apply) : apply());
      const made = await this.vmidOf(stack.workingDir);
      if (made !== vmid) throw new Error(`the stack made vmid ${made}, not the reserved ${vmid}`);
      this.vmidClashes.delete(r.name);
      log.info({ vmid, node: copy.node, ms: Date.now() - started }, "container cloned");
      // Read again: a job may have claimed this warm-pool member while it was being cloned.
      const unclaimed = this.d.store.getRunner(r.name)?.scope === UNCLAIMED;
      this.d.store.setRunnerState(r.name, unclaimed ? "warm" : "booting", { vmid, stackDir, lastError: null }, ["provisioning"]);
      if (unclaimed) log.info("warm-pool runner ready (stopped)");
    } catch (err) {
      if (signal.aborted) throw new Stopped();
      const clashes = this.vmidClashes.get(r.name) ?? 0;
      const clash = isVmidClash(err) && clashes < MAX_VMID_CLASHES;
      const attempts = clash ? r.attempts : r.attempts + 1;
      this.placement.invalidate();
      log.warn({ attempt: attempts, node: copy.node, err: errMessage(err) }, "apply failed: destroying what was made");
      const cleaned = await this.d.terraform.destroy(stack.workingDir, { runner: r.name, signal, timeoutMs: s.timeouts.destroyMs }).then(
        () => true,
        (e) => (log.warn({ err: errMessage(e) }, "cleanup destroy failed"), false),
      );
      if (!cleaned) {
        // Its state still holds what was made there (a node may be down): this runner is retired
        // with its stack, and demand is re-counted, so a fresh runner is placed elsewhere.
        this.d.store.setRunnerState(r.name, "destroying", { attempts, lastError: errMessage(err) }, ["provisioning"]);
        return;
      }
      if (clash) {
        // Another guest has this vmid (PVE's vmlist changed after we checked): a fresh one, at once.
        this.vmidClashes.set(r.name, clashes + 1);
        log.warn({ vmid, clashes: clashes + 1 }, "vmid taken by another guest at clone time: picking a fresh one");
        this.d.store.assignVmid(r.name, null);
        this.d.store.setRunnerState(r.name, "provisioning", { lastError: errMessage(err) }, ["provisioning"]);
        return;
      }
      if (attempts >= s.applyAttempts) {
        log.error({ attempts }, "giving up on this runner; demand is re-counted");
        this.d.store.setRunnerState(r.name, "destroying", { attempts, lastError: errMessage(err) }, ["provisioning"]);
        return;
      }
      this.d.store.setRunnerState(r.name, "provisioning", { attempts, lastError: errMessage(err) }, ["provisioning"]);
      await sleep(s.retryBackoffMs * 2 ** (attempts - 1), signal);
    }
  }

  private async vmidOf(workingDir: string): Promise<number> {
    const out = await this.d.terraform.output(workingDir);
    const v = out.vm_id as unknown;
    const value = typeof v === "object" && v !== null && "value" in v ? (v as { value: unknown }).value : v;
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`stack has no vm_id output (got ${JSON.stringify(v)})`);
    return n;
  }
}
