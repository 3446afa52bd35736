// One long-lived provider process that every terraform run attaches to (terraform.sharedProvider,
// opt-in). Without it each apply starts bpg's provider 4 times and each destroy 5 times; with it,
// none: terraform reads TF_REATTACH_PROVIDERS and talks to this process instead.
//
// How (docs/upstream facts, restated in README "Shared provider"):
// - bpg's main.go serves with tf6server.WithManagedDebug when started with `-debug`: it prints
//   `TF_REATTACH_PROVIDERS='{"registry.terraform.io/bpg/proxmox":{…,"Test":true,"Addr":{…}}}'`
//   on stdout and serves until SIGINT (terraform-plugin-go tfprotov6/tf6server/server.go).
// - terraform treats a reattached provider as unmanaged: it does not install, lock-check, start or
//   kill it (go-plugin client.go reattach(): with Test set, the client never owns the process).
// - go-plugin makes the unix socket in $PLUGIN_UNIX_SOCKET_DIR (server_unix.go), writable by its
//   owner only; we also put it in a 0700 dir of ours, so no other local user can drive a provider
//   that holds the PVE token.
//
// Limits (README): one provider serves every run, so a StopProvider from one run (terraform sends it
// when interrupted: an apply that times out) cancels the calls in flight of all of them
// (tf6server's stop() cancels every context); those applies fail and are retried like any failed apply.
// A provider that dies is started again for the next run; the runs attached to it fail and retry.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { chmod, mkdir, readFile, readdir, realpath, writeFile } from "node:fs/promises";
import { join, relative, isAbsolute } from "node:path";
import type { Logger } from "pino";

export const BPG_PROVIDER_ADDRESS = "registry.terraform.io/bpg/proxmox";
/** tf6server waits 2 s for go-plugin's reattach config; we allow for a loaded host. */
const DEFAULT_START_TIMEOUT_MS = 30_000;
const DEFAULT_STOP_GRACE_MS = 5_000;
const STDERR_TAIL_CHARS = 2_000;
/** "<pid> <start time>" of the provider we started, to find one a dead listener left. */
const PID_FILE = "provider.pid";

export interface SharedProviderOptions {
  /** The provider executable terraform would start (in the shared init's .terraform/providers). */
  executable: () => Promise<string>;
  /** A 0700 dir of ours for the provider's unix socket (PLUGIN_UNIX_SOCKET_DIR). */
  socketDir: string;
  /** `sh -c` script that lowers the priority and execs "$0" "$@" (terraform.ts launchScript). */
  launchScript: string;
  /** Texts never to log (the PVE token's secret). */
  scrub: (text: string) => string;
  logger: Logger;
  startTimeoutMs?: number;
  stopGraceMs?: number;
}

interface Running {
  child: ChildProcess;
  reattach: string;
  /** The env it was started with: a change (the clone gate's endpoint) needs a new process. */
  envKey: string;
  users: number;
  exited: boolean;
  stderrTail: string;
}

export interface ProviderLease {
  /** The value for TF_REATTACH_PROVIDERS. */
  reattach: string;
  release(): void;
}

export class SharedProvider {
  private current: Promise<Running> | null = null;
  private readonly retired = new Set<Running>();
  private closed = false;
  /** Only the first start looks for a provider an earlier listener left: later ones are ours. */
  private staleChecked = false;

  constructor(private readonly opts: SharedProviderOptions) {}

  /** The running provider (started, or started again after a death or an env change) for one run. */
  async acquire(env: NodeJS.ProcessEnv): Promise<ProviderLease> {
    if (this.closed) throw new Error("the shared provider is stopped (the listener is shutting down)");
    const envKey = JSON.stringify(Object.entries(env).sort(([a], [b]) => a.localeCompare(b)));
    let running: Running | null;
    for (;;) {
      const pending = this.current;
      running = pending ? await pending.catch(() => null) : null;
      // Another run (re)started it while we waited: look at that one instead of starting a second.
      if (this.current !== pending) continue;
      if (running && !running.exited && running.envKey === envKey) break;
      if (running && !running.exited) this.retire(running);
      const starting = this.start(env, envKey);
      this.current = starting;
      starting.catch(() => {
        if (this.current === starting) this.current = null; // the next run tries again
      });
      running = await starting;
      break;
    }
    const r = running;
    r.users++;
    let released = false;
    return {
      reattach: r.reattach,
      release: () => {
        if (released) return;
        released = true;
        r.users--;
        if (r.users === 0 && this.retired.has(r)) void this.stopOne(r);
      },
    };
  }

  /** The provider's pid (tests and the bench read its CPU from /proc). */
  async pid(): Promise<number | undefined> {
    const r = this.current ? await this.current.catch(() => null) : null;
    return r && !r.exited ? r.child.pid : undefined;
  }

  /** SIGINT (the managed-debug stop signal), then SIGKILL after a grace. Call after the last run. */
  async stop(): Promise<void> {
    this.closed = true;
    const r = this.current ? await this.current.catch(() => null) : null;
    this.current = null;
    await Promise.all([...this.retired, ...(r ? [r] : [])].map((x) => this.stopOne(x)));
  }

  /** The provider's last stderr lines, scrubbed, for a log line or an error. */
  private lastLines(r: Running): string {
    return this.opts.scrub(r.stderrTail.trim().split("\n").slice(-5).join("\n"));
  }

  private retire(r: Running): void {
    this.retired.add(r);
    if (r.users === 0) void this.stopOne(r);
  }

  private stopOne(r: Running): Promise<void> {
    this.retired.delete(r);
    if (r.exited) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const kill = setTimeout(() => signalGroup(r.child, "SIGKILL"), this.opts.stopGraceMs ?? DEFAULT_STOP_GRACE_MS);
      r.child.once("exit", () => {
        clearTimeout(kill);
        resolve();
      });
      signalGroup(r.child, "SIGINT");
    });
  }

  private async start(env: NodeJS.ProcessEnv, envKey: string): Promise<Running> {
    const log = this.opts.logger;
    const executable = await this.opts.executable();
    await mkdir(this.opts.socketDir, { recursive: true, mode: 0o700 });
    await chmod(this.opts.socketDir, 0o700);
    // A provider left by a listener that died without stopping it (outside systemd: under the unit,
    // KillMode= takes the whole cgroup) still holds the token: stop it before starting ours.
    if (!this.staleChecked) await killStale(join(this.opts.socketDir, PID_FILE), log);
    this.staleChecked = true;
    // `-debug` servers run until SIGINT and do not watch their parent. (setpriv --pdeathsig cannot
    // be used: it calls capset, which the unit's system call filter refuses.)
    const child = spawn("/bin/sh", ["-c", this.opts.launchScript, executable, "-debug"], {
      // Not detached: launchScript gives it a process group of its own inside the listener's session,
      // so SCHED_IDLE ranks it below the listener (a new session would be an autogroup of its own).
      env: { ...env, PLUGIN_UNIX_SOCKET_DIR: this.opts.socketDir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    if (child.pid !== undefined) await writeFile(join(this.opts.socketDir, PID_FILE), `${child.pid} ${startTime(child.pid) ?? ""}\n`, { mode: 0o600 });
    const r: Running = { child, reattach: "", envKey, users: 0, exited: false, stderrTail: "" };
    child.stderr!.on("data", (d: Buffer) => (r.stderrTail = (r.stderrTail + d.toString()).slice(-STDERR_TAIL_CHARS)));
    r.reattach = await new Promise<string>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => fail(`printed no TF_REATTACH_PROVIDERS line within ${(this.opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS) / 1000} s`), this.opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
      const fail = (why: string) => {
        clearTimeout(timer);
        signalGroup(child, "SIGKILL");
        const tail = this.lastLines(r);
        reject(new Error(`the shared provider (${executable} -debug) ${why}${tail ? `: ${tail}` : ""}`));
      };
      child.on("error", (err) => fail(`could not start: ${err.message}`));
      child.on("exit", (code, signal) => fail(`exited before it was ready (${signal ?? `exit code ${code}`})`));
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const line = /^\s*TF_REATTACH_PROVIDERS='(.*)'\s*$/m.exec(out);
        if (!line) return;
        clearTimeout(timer);
        child.removeAllListeners("error");
        child.stdout!.resume();
        try {
          resolve(checkedReattach(line[1].replaceAll(`'"'"'`, "'"), this.opts.socketDir));
        } catch (err) {
          fail((err as Error).message);
        }
      });
    });
    child.removeAllListeners("exit");
    // Runs attached to a provider that dies fail (terraform reports the broken connection) and are retried.
    child.on("exit", (code, signal) => {
      r.exited = true;
      this.retired.delete(r);
      if (!this.closed) log.warn({ providerPid: child.pid, code, signal, users: r.users, stderr: this.lastLines(r) }, "shared terraform provider exited: the next run starts a new one");
    });
    log.info({ providerPid: child.pid }, "shared terraform provider started: terraform runs attach to it (terraform.sharedProvider)");
    return r;
  }
}

/**
 * The reattach JSON, rebuilt from checked fields: bpg's provider only, over a unix socket inside our
 * socket dir (what we pass to terraform names no other process and no TCP port another user can reach).
 */
export function checkedReattach(json: string, socketDir: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new Error("printed a TF_REATTACH_PROVIDERS value that is not JSON");
  }
  const entry = (parsed as Record<string, unknown> | null)?.[BPG_PROVIDER_ADDRESS] as
    | { Protocol?: unknown; ProtocolVersion?: unknown; Pid?: unknown; Test?: unknown; Addr?: { Network?: unknown; String?: unknown } }
    | undefined;
  if (!entry || typeof entry !== "object") throw new Error(`printed reattach settings without ${BPG_PROVIDER_ADDRESS}`);
  if (entry.Protocol !== "grpc" || entry.ProtocolVersion !== 6) throw new Error("does not serve plugin protocol 6 over grpc");
  const addr = entry.Addr;
  if (addr?.Network !== "unix" || typeof addr.String !== "string") throw new Error("does not listen on a unix socket (set PLUGIN_UNIX_SOCKET_DIR support: go-plugin ≥ 1.5)");
  const rel = relative(socketDir, addr.String);
  if (rel.startsWith("..") || isAbsolute(rel)) throw new Error(`listens on ${addr.String}, outside ${socketDir}`);
  if (typeof entry.Pid !== "number" || !Number.isInteger(entry.Pid)) throw new Error("printed no pid");
  return JSON.stringify({
    [BPG_PROVIDER_ADDRESS]: { Protocol: "grpc", ProtocolVersion: 6, Pid: entry.Pid, Test: true, Addr: { Network: "unix", String: addr.String } },
  });
}

/** The provider binary `terraform init` put in a dir's .terraform (a copy or a link into the mirror or plugin cache). */
export async function installedProvider(initDir: string): Promise<string> {
  const base = join(initDir, ".terraform", "providers", BPG_PROVIDER_ADDRESS);
  const found: string[] = [];
  for (const version of await readdir(base).catch(() => [] as string[])) {
    for (const platform of await readdir(join(base, version)).catch(() => [] as string[])) {
      for (const f of await readdir(join(base, version, platform)).catch(() => [] as string[])) {
        if (f.startsWith("terraform-provider-proxmox")) found.push(join(base, version, platform, f));
      }
    }
  }
  if (found.length !== 1) throw new Error(`expected one bpg/proxmox provider in ${base}, found ${found.length}: run terraform init there`);
  return realpath(found[0]);
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** A process's start time (/proc/<pid>/stat field 22): a pid alone may have been reused. */
function startTime(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

async function killStale(pidFile: string, log: Logger): Promise<void> {
  const text = await readFile(pidFile, "utf8").catch(() => "");
  const [pidText, started] = text.trim().split(" ");
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 1 || !started || startTime(pid) !== started) return;
  log.warn({ providerPid: pid }, "a shared provider left by an earlier listener still runs: stopping it");
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // gone meanwhile
  }
}
