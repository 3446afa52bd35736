// Client side of the fake GitHub's runner protocol: what `run.sh --jitconfig` does in the
// simulated guest. Used by tests here and available to the PVE simulator's guest.
import { decodeJitConfig } from "./jit.js";

export type RunnerState = "idle" | "busy" | "done" | "gone";

export class RunnerProtocolError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class RunnerSession {
  private constructor(
    readonly serverUrl: string,
    readonly runnerId: number,
    readonly name: string,
    private readonly token: string,
  ) {}

  /** Registers the session; throws RunnerProtocolError (401 bad config, 410 expired/used/deleted). */
  static async connect(encodedJitConfig: string, signal?: AbortSignal): Promise<RunnerSession> {
    const cfg = decodeJitConfig(encodedJitConfig);
    const res = await fetch(`${cfg.runner.serverUrl}/_sim/runner/connect`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jitconfig: encodedJitConfig }),
      signal,
    });
    const body = (await res.json()) as { runner_id?: number; name?: string; message?: string };
    if (!res.ok) throw new RunnerProtocolError(res.status, body.message ?? res.statusText);
    return new RunnerSession(cfg.runner.serverUrl, body.runner_id as number, body.name as string, cfg.credentials.data.token);
  }

  /** Long-polls up to `waitMs` for the state to differ from `known` (default: the state now). */
  async state(waitMs = 0, known?: RunnerState, signal?: AbortSignal): Promise<{ state: RunnerState; job_id: number | null }> {
    const q = new URLSearchParams({ wait: String(waitMs) });
    if (known) q.set("known", known);
    const res = await fetch(`${this.serverUrl}/_sim/runner/${this.runnerId}/state?${q}`, { headers: this.auth(), signal });
    const body = (await res.json()) as { state: RunnerState; job_id: number | null; message?: string };
    if (!res.ok) throw new RunnerProtocolError(res.status, body.message ?? res.statusText);
    return body;
  }

  /** Polls until the runner is done (ran its job) or gone (deleted/expired). */
  async untilFinished(pollMs = 5_000, signal?: AbortSignal): Promise<{ state: "done" | "gone"; job_id: number | null }> {
    let known: RunnerState | undefined;
    for (;;) {
      const s = await this.state(pollMs, known, signal);
      if (s.state === "done" || s.state === "gone") return { state: s.state, job_id: s.job_id };
      known = s.state;
    }
  }

  async disconnect(): Promise<void> {
    const res = await fetch(`${this.serverUrl}/_sim/runner/${this.runnerId}/disconnect`, { method: "POST", headers: this.auth() });
    if (!res.ok) throw new RunnerProtocolError(res.status, res.statusText);
    await res.body?.cancel();
  }

  private auth(): Record<string, string> {
    return { authorization: `RemoteAuth ${this.token}` };
  }
}
