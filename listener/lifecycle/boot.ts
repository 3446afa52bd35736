// A runner's booting step: the container is started (outside the clone lane), a single-use JIT
// runner config is minted meanwhile (unused ones expire within minutes, so never earlier), handed
// to the container, and the runner is awaited online at GitHub. A failed start or hand-over is
// counted like a failed apply: retried with backoff, then the runner is given up.
import type { Logger } from "pino";
import { parseScopeKey } from "../adapters/github/github.js";
import type { RunnerRow, RunnerState } from "../store/store.js";
import { controllerMarker } from "./ownership.js";
import { errMessage, sleep, Stopped } from "./abortable.js";
import type { PipelineDeps } from "./pipeline-deps.js";

export class Boot {
  /** When each runner's JIT config went in (for the boot phase metric; lost on restart, harmlessly). */
  private readonly deliveredAt = new Map<string, number>();

  constructor(
    private readonly d: PipelineDeps,
    private readonly waitForEvent: (name: string, ms: number) => Promise<void>,
  ) {}

  /** Boot ends when the runner is first seen online, or a webhook names it first. */
  leftBooting(name: string): void {
    const delivered = this.deliveredAt.get(name);
    if (delivered === undefined) return;
    this.deliveredAt.delete(name);
    this.d.metrics?.phase("boot", (Date.now() - delivered) / 1000);
  }

  /** The runner is gone: nothing of its boot is kept. */
  forget(name: string): void {
    this.deliveredAt.delete(name);
  }

  /** booting → idle or busy (online), done (already ran its job), or destroying (boot timeout, given up). */
  async step(r: RunnerRow, log: Logger, signal: AbortSignal): Promise<void> {
    const s = this.d.settings;
    const set = s.labelSets.find((x) => x.name === r.labelSet)!;
    const scope = parseScopeKey(r.scope);
    const job = r.madeForJob ? this.d.store.getJob(r.madeForJob) : undefined;
    if (!r.githubRunnerId) {
      // Minted right before the container needs it (unused JIT configs expire within minutes), while
      // it starts: the start task and GitHub's answer overlap instead of adding up.
      // The controller label marks the registration as ours (the sweeper deletes no other).
      const labels = [...set.labels, controllerMarker(this.d.store.controllerId())];
      const minting = this.d.github.generateJitConfig(scope, r.name, labels, job?.installationId);
      minting.catch(() => undefined); // awaited below; a start failure must not leave it unhandled
      let mintStarted = Date.now();
      if (!this.d.delivery.startsContainer && this.d.startContainer) {
        const started = Date.now();
        try {
          await this.d.startContainer(r.node ?? s.proxmox.node, r.vmid!);
        } catch (err) {
          // The config minted meanwhile never reaches a container: its registration goes at once.
          const unused = await minting.catch(() => null);
          if (unused) await this.d.github.deleteRunner(scope, unused.runnerId).catch((e) => log.warn({ err: errMessage(e) }, "could not delete the unused registration; the next mint replaces it"));
          // Like a failed apply: counted, retried with backoff, then given up (and reported).
          const attempts = r.attempts + 1;
          log.warn({ attempt: attempts, err: errMessage(err) }, "container start failed");
          const next: RunnerState = attempts >= s.applyAttempts ? "destroying" : "booting";
          this.d.store.setRunnerState(r.name, next, { attempts, lastError: `start: ${errMessage(err)}` }, ["booting"]);
          if (next === "booting") await sleep(s.retryBackoffMs * 2 ** (attempts - 1), signal);
          return;
        }
        this.d.metrics?.phase("start", (Date.now() - started) / 1000);
        // jit_delivery: what the mint and the hand-over add after the start.
        mintStarted = Date.now();
      }
      const jit = await minting;
      this.d.store.setRunnerState(r.name, "booting", { githubRunnerId: jit.runnerId }, ["booting"]);
      log.info({ githubRunnerId: jit.runnerId }, "JIT runner config minted");
      try {
        // Boot is timed from the hand-over: a fast guest may be online before the helper returns.
        this.deliveredAt.set(r.name, Date.now());
        await this.d.delivery.deliver({ node: r.node ?? s.proxmox.node, vmid: r.vmid!, runner: r.name, jitConfig: jit.encodedJitConfig });
        this.d.metrics?.phase("jit_delivery", (Date.now() - mintStarted) / 1000);
      } catch (err) {
        // The config never reached the container: forget it (the next mint replaces the registration).
        const attempts = r.attempts + 1;
        log.warn({ attempt: attempts, err: errMessage(err) }, "JIT delivery failed");
        const next: RunnerState = attempts >= s.applyAttempts ? "destroying" : "booting";
        this.d.store.setRunnerState(r.name, next, { githubRunnerId: next === "booting" ? null : jit.runnerId, attempts, lastError: `JIT delivery: ${errMessage(err)}` }, ["booting"]);
        if (next === "booting") await sleep(s.retryBackoffMs * 2 ** (attempts - 1), signal);
        return;
      }
    }
    const cur = this.d.store.getRunner(r.name)!;
    const deadline = cur.stateSince + s.timeouts.bootMs;
    while (Date.now() < deadline) {
      if (signal.aborted) throw new Stopped();
      const now = this.d.store.getRunner(r.name)!;
      if (now.state !== "booting") return; // a webhook moved it on (busy/done)
      const info = await this.d.github.getRunner(scope, now.githubRunnerId!, job?.installationId).catch((err) => {
        log.warn({ err: errMessage(err) }, "could not read runner status");
        return null;
      });
      if (info?.status === "online") {
        const state: RunnerState = info.busy ? "busy" : "idle";
        if (this.d.store.setRunnerState(r.name, state, {}, ["booting"])) {
          this.leftBooting(r.name);
          log.info("runner online at GitHub");
        }
        return;
      }
      if (info === undefined && now.githubRunnerId) {
        // Registration gone while booting: it ran a job and was removed before we saw it online.
        log.info("registration already removed: the runner has run its job");
        this.d.store.setRunnerState(r.name, "done", {}, ["booting"]);
        return;
      }
      await this.waitForEvent(r.name, s.onlinePollMs);
    }
    log.warn({ bootMs: s.timeouts.bootMs }, "runner never came online: destroying it, demand is re-counted");
    this.d.store.setRunnerState(r.name, "destroying", { lastError: "boot timeout" }, ["booting"]);
  }
}
