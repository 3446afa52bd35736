// The simulated inside of a runner container, behaving like template/runner-once.sh: it boots;
// if a job already started in this container it powers off at once; otherwise it waits for the JIT
// config — the file /run/pve-runners/jitconfig (written by `pct exec`, see systemd/deliver-jit) or
// ACTIONS_RUNNER_INPUT_JITCONFIG in init's environment: the container's `env` option (PVE 9.1) as
// it was at start, so removing the option afterwards (the listener does) does not reach it — removes
// the file, writes its marker and, like `run.sh --jitconfig`, connects to the (fake) GitHub the config
// names, runs its one job and powers the container off, whatever the outcome. A stop or destroy
// aborts it: GitHub sees the runner vanish. The JIT config is a credential: it is never logged.
import type { Logger } from "pino";
import type { SimClock } from "../github/clock.js";
import { RunnerProtocolError, RunnerSession } from "../github/runner-client.js";
import type { GuestFs } from "./guest-fs.js";
import type { GuestHandle } from "./state.js";

export const JIT_FILE = "/run/pve-runners/jitconfig";
export const JIT_ENV = "ACTIONS_RUNNER_INPUT_JITCONFIG";
/** Persistent: a restarted container never runs a second job. */
export const JOB_MARKER = "/var/lib/pve-runners/job-started";

export interface GuestTimings {
  /** Container start to the runner unit running (systemd boot, network), simulated ms. */
  bootMs: number;
  /** `systemctl poweroff` to the container being stopped, simulated ms. */
  poweroffMs: number;
  /** The unit gives up (and powers off) after this long without a config; 0 waits for ever. */
  jitWaitMs: number;
  /** Long-poll wait for the runner's state, real ms (the fake GitHub answers on change). */
  runnerPollMs: number;
  /** Connection attempts when the GitHub endpoint is unreachable, and the pause between them (simulated ms). */
  connectAttempts: number;
  connectRetryMs: number;
}

export const DEFAULT_GUEST: GuestTimings = { bootMs: 3_000, poweroffMs: 1_500, jitWaitMs: 1_800_000, runnerPollMs: 5_000, connectAttempts: 5, connectRetryMs: 2_000 };

export type GuestPhase = "booting" | "waiting-for-jit" | "connecting" | "online" | "powering-off" | "off" | "hung" | "aborted";

class Aborted extends Error {}

export interface GuestDeps {
  vmid: number;
  fs: GuestFs;
  /** The `env` option as it was when the container started (lxc.environment.runtime). */
  env: Record<string, string>;
  clock: SimClock;
  log: Logger;
  timings: GuestTimings;
  /** Fault: the runner never connects (network down, broken image). */
  hang: boolean;
  /** The container stops by itself (no API task). */
  powerOff: () => void;
}

export class SimGuest implements GuestHandle {
  phase: GuestPhase = "booting";
  jitSource: "file" | "env" | null = null;
  runner: { id: number; name: string } | null = null;
  /** How the runner ended: "done", "gone", or why it could not run. */
  outcome: string | null = null;
  private readonly ac = new AbortController();
  private session: RunnerSession | null = null;
  private finished = false;

  constructor(private readonly d: GuestDeps) {}

  /** Runs the guest to its end; never rejects. */
  async run(): Promise<void> {
    const log = this.d.log;
    try {
      await this.sleep(this.d.timings.bootMs);
      if (this.d.hang) {
        this.phase = "hung";
        log.info("guest booted; its runner will never connect (fault)");
        await this.sleep(Number.POSITIVE_INFINITY);
      }
      if (this.d.fs.isFile(JOB_MARKER)) {
        this.outcome = "a job already started in this container: never a second one";
        log.info("job marker present; powering off");
        return await this.shutdown();
      }
      this.phase = "waiting-for-jit";
      const raw = await this.waitForJit();
      // A trailing newline is not part of the config; blanks never are.
      const jit = raw?.replace(/\s+/g, "");
      if (!jit) {
        this.outcome = "no JIT config: gave up waiting";
        log.warn("no JIT config in time; powering off");
        return await this.shutdown();
      }
      // The file goes first (single use), then the marker, then the runner.
      if (this.d.fs.isFile(JIT_FILE)) this.d.fs.remove(JIT_FILE);
      this.d.fs.mkdir("/var/lib/pve-runners", 0o755, true);
      this.d.fs.write(JOB_MARKER, "job started\n", 0o600);
      log.info({ source: this.jitSource, bytes: jit.length }, "JIT config received; starting the runner once");
      this.phase = "connecting";
      this.session = await this.connect(jit);
      if (!this.session) return await this.shutdown();
      this.runner = { id: this.session.runnerId, name: this.session.name };
      this.phase = "online";
      log.info({ runnerId: this.runner.id, runner: this.runner.name }, "runner online");
      const end = await this.session.untilFinished(this.d.timings.runnerPollMs, this.ac.signal).catch((err: unknown) => {
        if (this.ac.signal.aborted) throw new Aborted();
        return { state: `lost contact: ${(err as Error).message}`, job_id: null };
      });
      this.outcome = end.state;
      this.finished = true;
      log.info({ runner: this.runner.name, state: end.state, jobId: end.job_id }, "runner finished");
      await this.session.disconnect().catch(() => {});
      await this.shutdown();
    } catch (err) {
      if (err instanceof Aborted || this.ac.signal.aborted) return;
      log.warn({ err: (err as Error).message }, "guest failed; powering off");
      this.outcome = `guest error: ${(err as Error).message}`;
      await this.shutdown().catch(() => {});
    }
  }

  /** The container is being stopped or destroyed under the guest. */
  abort(reason: string): void {
    if (this.ac.signal.aborted) return;
    if (this.phase !== "off") {
      this.phase = "aborted";
      this.outcome ??= `aborted: ${reason}`;
    }
    this.ac.abort();
    // The runner process dies with the container; GitHub notices its session is gone.
    if (this.session && !this.finished) void this.session.disconnect().catch(() => {});
  }

  describe(): Record<string, unknown> {
    return { phase: this.phase, jitSource: this.jitSource, runner: this.runner, outcome: this.outcome };
  }

  private async shutdown(): Promise<void> {
    this.phase = "powering-off";
    await this.sleep(this.d.timings.poweroffMs);
    this.phase = "off";
    this.d.log.info("guest powered off");
    this.d.powerOff();
  }

  /**
   * The runner unit's wait: the file (non-empty) or the variable in init's environment, whichever
   * shows first; null when the unit's wait timeout passes first.
   */
  private waitForJit(): Promise<string | null> {
    const fs = this.d.fs;
    const fileReady = () => fs.isFile(JIT_FILE) && fs.read(JIT_FILE).trim() !== "";
    if (!fileReady() && this.d.env[JIT_ENV]) {
      this.jitSource = "env";
      return Promise.resolve(this.d.env[JIT_ENV]);
    }
    return new Promise((resolve, reject) => {
      const done = (v: string | null) => {
        off();
        cancelTimeout();
        this.ac.signal.removeEventListener("abort", onAbort);
        resolve(v);
      };
      const take = () => {
        this.jitSource = "file";
        done(fs.read(JIT_FILE));
      };
      const onAbort = () => {
        off();
        cancelTimeout();
        reject(new Aborted());
      };
      const off = fs.onChange((p) => {
        if (p === JIT_FILE && fileReady()) take();
      });
      const cancelTimeout = this.d.timings.jitWaitMs > 0 ? this.d.clock.after(this.d.timings.jitWaitMs, () => done(null)) : () => {};
      this.ac.signal.addEventListener("abort", onAbort, { once: true });
      if (fileReady()) take();
    });
  }

  /** run.sh --jitconfig: a refused config (401/410/garbage) ends the runner; an unreachable server is retried. */
  private async connect(jit: string): Promise<RunnerSession | null> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await RunnerSession.connect(jit, this.ac.signal);
      } catch (err) {
        if (this.ac.signal.aborted) throw new Aborted();
        const refused = err instanceof RunnerProtocolError || /not a JIT runner config/.test((err as Error).message);
        const why = err instanceof RunnerProtocolError ? `${err.status} ${err.message}` : (err as Error).message;
        if (refused || attempt >= this.d.timings.connectAttempts) {
          this.outcome = `connect failed: ${why}`;
          this.d.log.warn({ reason: why, attempt }, "runner could not connect");
          return null;
        }
        await this.sleep(this.d.timings.connectRetryMs);
      }
    }
  }

  /** Simulated sleep that ends early (rejecting) when the guest is aborted. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.ac.signal.aborted) return reject(new Aborted());
      const onAbort = () => {
        cancel();
        reject(new Aborted());
      };
      const cancel = Number.isFinite(ms)
        ? this.d.clock.after(ms, () => {
            this.ac.signal.removeEventListener("abort", onAbort);
            resolve();
          })
        : () => {};
      this.ac.signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}
