// A runner's destroying step: its GitHub registration is deleted, then its stack destroyed. One API
// read first (container-check.ts) decides how: no refresh when the container is there as recorded,
// no terraform at all when it is gone, a refresh when the API cannot tell. A destroy that cannot
// succeed because the container is gone does not pin the runner.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { parseScopeKey } from "../adapters/github/github.js";
import type { ContainerPresence } from "../adapters/proxmox/container-check.js";
import { RETIREMENT_REASONS, type RunnerRow, type RunnerState } from "../store/store.js";
import type { FailureReport } from "./failure-report.js";
import { errMessage, sleep, Stopped } from "./abortable.js";
import type { PipelineDeps } from "./pipeline-deps.js";

export class Teardown {
  constructor(
    private readonly d: PipelineDeps,
    private readonly o: { failures: FailureReport; onGone: (name: string) => void },
  ) {}

  /** destroying → gone, or failed when the runner was given up; retried while it cannot finish. */
  async step(r: RunnerRow, log: Logger, signal: AbortSignal): Promise<void> {
    const s = this.d.settings;
    try {
      if (r.githubRunnerId) {
        const outcome = await this.d.github.deleteRunner(parseScopeKey(r.scope), r.githubRunnerId).catch((err) => {
          log.warn({ err: errMessage(err) }, "could not delete registration; the sweeper removes stale ones");
          return "error";
        });
        if (outcome === "busy") log.warn("registration busy at GitHub while destroying; the payloads say its job is over");
      }
      if (r.stackDir) {
        const started = Date.now();
        const presence = await this.presenceOf(r);
        if (presence.kind === "gone") {
          // Nothing of the stack is left on PVE: its state is retired with the stack dir, as after a destroy.
          await rm(r.stackDir, { recursive: true, force: true });
          log.info({ vmid: r.vmid, node: r.node, why: presence.why }, "container already gone: stack removed without running terraform");
        } else {
          // Nothing secret may be left where a refresh would read it into state (env delivery).
          if (r.vmid && this.d.delivery.beforeDestroy) await this.d.delivery.beforeDestroy(r.node ?? s.proxmox.node, r.vmid);
          if (presence.kind === "unknown") log.info({ why: presence.why }, "container presence unknown: destroying with a refresh");
          // Destroy does not wait behind clones: it never takes the clone lane.
          await this.d.terraform.destroy(join(r.stackDir, "stacks", "runner"), { runner: r.name, signal, timeoutMs: s.timeouts.destroyMs, refresh: presence.kind !== "present" }).catch((err) => {
            this.d.metrics?.terraformRun("destroy", (Date.now() - started) / 1000, false);
            throw err;
          });
          this.d.metrics?.terraformRun("destroy", (Date.now() - started) / 1000, true);
          this.d.metrics?.phase("destroy", (Date.now() - started) / 1000);
          await rm(r.stackDir, { recursive: true, force: true });
          log.info({ ms: Date.now() - started }, "container destroyed, stack removed");
        }
      }
      this.destroyed(r, log);
    } catch (err) {
      if (signal.aborted) throw new Stopped();
      // A destroy that cannot succeed must not pin the runner: without a refresh, bpg's Delete fails
      // on a container deleted since the check (its status read says "does not exist"); with one, PVE
      // checks privileges before existence, so a vmid that left our pool answers 403.
      const presence = await this.presenceOf(r);
      const gone = presence.kind === "gone" || (presence.kind === "unknown" && this.d.containerExists ? !(await this.d.containerExists(r.name).catch(() => true)) : false);
      if (gone && r.stackDir) {
        log.warn({ err: errMessage(err), why: presence.kind === "gone" ? presence.why : "no container of this name on the cluster" }, "destroy failed but no container of this runner exists: stack removed");
        await rm(r.stackDir, { recursive: true, force: true });
        this.destroyed(r, log);
        return;
      }
      log.warn({ err: errMessage(err) }, "destroy failed: retrying");
      await sleep(s.retryBackoffMs, signal);
    }
  }

  /** The container check before and after a destroy; "unknown" when there is none or it throws. */
  private async presenceOf(r: RunnerRow): Promise<ContainerPresence> {
    if (!this.d.containerPresence) return { kind: "unknown", why: "no container check configured" };
    return this.d.containerPresence({ name: r.name, node: r.node, vmid: r.vmid }).catch((err) => ({ kind: "unknown" as const, why: errMessage(err) }));
  }

  /** The runner's container and stack are gone: its final state (failed when it was given up). */
  private destroyed(r: RunnerRow, log: Logger): void {
    const s = this.d.settings;
    const final: RunnerState = r.lastError && !RETIREMENT_REASONS.includes(r.lastError) && r.attempts >= s.applyAttempts ? "failed" : "gone";
    if (this.d.store.setRunnerState(r.name, final, {}, ["destroying"])) this.d.metrics?.phase("runner_lifetime", (Date.now() - r.createdAt) / 1000);
    if (final === "failed") void this.o.failures.report(r, log);
    this.o.onGone(r.name);
  }
}
