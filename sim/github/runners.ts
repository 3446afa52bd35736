// Self-hosted runner registrations (JIT only: every runner is ephemeral) and their
// session with the simulated guest: connect, state changes, disconnect.
import { randomBytes, randomUUID } from "node:crypto";
import { encodeJitConfig } from "./jit.js";
import type { Account, Repo, RunnerGroup } from "./world.js";

export type RunnerScope = { kind: "repo"; repo: Repo } | { kind: "org"; org: Account };

export interface RunnerLabel {
  id: number;
  name: string;
  type: "custom" | "read-only";
}

/** What the guest sees when it asks for its runner's state. */
export type RunnerSessionState = "idle" | "busy" | "done" | "gone";

export interface SimRunner {
  id: number;
  name: string;
  scope: "repo" | "org";
  /** "owner/repo" for repo runners, the org login for org runners. */
  owner: string;
  groupId: number;
  groupName: string;
  labels: RunnerLabel[];
  workFolder: string;
  os: string;
  status: "online" | "offline";
  busy: boolean;
  jobId: number | null;
  /** The JIT config has been used by a session. */
  connected: boolean;
  /** The session ended (guest disconnected) — a JIT config never reconnects. */
  disconnected: boolean;
  jobCompleted: boolean;
  createdAt: string;
  connectedAt: string | null;
  idleSince: number | null;
  removedAt: string | null;
  removedReason: "completed" | "deleted" | "expired" | "lost" | null;
}

// Labels GitHub manages itself; everything else a JIT caller passes is "custom".
const READ_ONLY_LABELS = new Set(["self-hosted", "linux", "windows", "macos", "x64", "arm", "arm64"]);

export const scopeKey = (scope: RunnerScope): string =>
  scope.kind === "repo" ? `repo:${scope.repo.fullName.toLowerCase()}` : `org:${scope.org.login.toLowerCase()}`;

export class RunnerRegistry {
  private readonly runners = new Map<number, SimRunner>();
  private readonly scopes = new Map<number, string>();
  private readonly secrets = new Map<number, string>();
  private readonly labelIds = new Map<string, number>();
  private readonly waiters = new Map<number, Set<() => void>>();
  private nextId = 21;

  mint(input: {
    scope: RunnerScope;
    name: string;
    group: RunnerGroup;
    labels: string[];
    workFolder: string;
    serverUrl: string;
  }): { runner: SimRunner; encodedJitConfig: string } {
    const id = this.nextId++;
    const secret = randomBytes(32).toString("hex");
    const owner = input.scope.kind === "repo" ? input.scope.repo.fullName : input.scope.org.login;
    const runner: SimRunner = {
      id,
      name: input.name,
      scope: input.scope.kind,
      owner,
      groupId: input.group.id,
      groupName: input.group.name,
      labels: dedupeLabels(input.labels).map((name) => this.label(name)),
      workFolder: input.workFolder,
      os: "unknown",
      status: "offline",
      busy: false,
      jobId: null,
      connected: false,
      disconnected: false,
      jobCompleted: false,
      createdAt: new Date().toISOString(),
      connectedAt: null,
      idleSince: null,
      removedAt: null,
      removedReason: null,
    };
    this.runners.set(id, runner);
    this.scopes.set(id, scopeKey(input.scope));
    this.secrets.set(id, secret);
    const encodedJitConfig = encodeJitConfig({
      runner: {
        agentId: id,
        agentName: input.name,
        poolId: input.group.id,
        serverUrl: input.serverUrl,
        gitHubUrl: `${input.serverUrl}/${owner}`,
        workFolder: input.workFolder,
        ephemeral: true,
      },
      credentials: {
        scheme: "OAuth",
        data: { clientId: randomUUID(), authorizationUrl: `${input.serverUrl}/_sim/runner/oauth`, token: secret },
      },
    });
    return { runner, encodedJitConfig };
  }

  private label(name: string): RunnerLabel {
    const key = name.toLowerCase();
    let id = this.labelIds.get(key);
    if (id === undefined) {
      id = this.labelIds.size + 1;
      this.labelIds.set(key, id);
    }
    return { id, name, type: READ_ONLY_LABELS.has(key) ? "read-only" : "custom" };
  }

  get(id: number): SimRunner | undefined {
    return this.runners.get(id);
  }

  /** Registered (not removed) runner in a scope. */
  live(scope: RunnerScope, id: number): SimRunner | undefined {
    const r = this.runners.get(id);
    return r && !r.removedAt && this.scopes.get(id) === scopeKey(scope) ? r : undefined;
  }

  listLive(scope: RunnerScope): SimRunner[] {
    const key = scopeKey(scope);
    return [...this.runners.values()].filter((r) => !r.removedAt && this.scopes.get(r.id) === key);
  }

  all(): SimRunner[] {
    return [...this.runners.values()];
  }

  scopeOf(runner: SimRunner): string {
    return this.scopes.get(runner.id) ?? "";
  }

  secretMatches(id: number, secret: string): boolean {
    return this.secrets.get(id) === secret;
  }

  /** Idle online runners in any of `scopeKeys`, longest idle first. */
  idleIn(scopeKeys: string[]): SimRunner[] {
    return [...this.runners.values()]
      .filter((r) => !r.removedAt && r.status === "online" && !r.busy && !r.jobCompleted && scopeKeys.includes(this.scopes.get(r.id) ?? ""))
      .sort((a, b) => (a.idleSince ?? 0) - (b.idleSince ?? 0) || a.id - b.id);
  }

  remove(runner: SimRunner, reason: NonNullable<SimRunner["removedReason"]>): void {
    if (runner.removedAt) return;
    runner.removedAt = new Date().toISOString();
    runner.removedReason = reason;
    runner.status = "offline";
    runner.busy = false;
    this.changed(runner);
  }

  sessionState(runner: SimRunner): RunnerSessionState {
    if (runner.jobCompleted) return "done";
    if (runner.removedAt) return "gone";
    return runner.busy ? "busy" : "idle";
  }

  /** Wakes long-polls waiting on this runner. */
  changed(runner: SimRunner): void {
    const set = this.waiters.get(runner.id);
    if (!set) return;
    this.waiters.delete(runner.id);
    for (const wake of set) wake();
  }

  /** Resolves on the next change to `id` (or when `cancel` is called). */
  waitForChange(id: number): { promise: Promise<void>; cancel: () => void } {
    let wake!: () => void;
    const promise = new Promise<void>((resolve) => (wake = resolve));
    let set = this.waiters.get(id);
    if (!set) this.waiters.set(id, (set = new Set()));
    set.add(wake);
    const cancel = () => {
      this.waiters.get(id)?.delete(wake);
      wake();
    };
    return { promise, cancel };
  }

  wakeAll(): void {
    for (const set of this.waiters.values()) for (const wake of set) wake();
    this.waiters.clear();
  }
}

function dedupeLabels(labels: string[]): string[] {
  const seen = new Set<string>();
  return labels.filter((l) => {
    const k = l.toLowerCase();
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
