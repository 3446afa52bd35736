// The terraform/tofu CLI adapter: the only code that runs the engine.
//
// - No shell, a minimal environment (secrets only by env, never argv, never logged).
// - `init` runs once into a shared dir; each runner's stack dir gets a copy of its .terraform and
//   lock file, so per-runner applies need no init (the backend block is byte-identical).
// - apply/destroy stream their -json UI lines into the log with the runner name.
// - Cancel (AbortSignal or timeout): SIGINT once, so terraform stops its providers and persists
//   state; SIGKILL to the whole process group after a grace period.
// - Each stack has its own dir, state and state lock: nothing here serializes two stacks.
import { TerraformSlots, type SlotLease } from "./terraform-slots.js";
import { spawn } from "node:child_process";
import { constants, existsSync } from "node:fs";
import { access, cp, copyFile, mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { dirname, isAbsolute, join, resolve } from "node:path";
import type { Logger } from "pino";
import {
  changeSummaryOf,
  diagnosticOf,
  logFieldsOf,
  parseUiLine,
  pinoLevelOf,
  unsupportedUiVersion,
  type ChangeSummary,
  type TerraformDiagnostic,
} from "./terraform-json.js";
import { SharedProvider, installedProvider } from "./shared-provider.js";
import { UntrustedPathError, assertRootOwned, assertRootOwnedPath, realFs, runningAsRoot, type FsView } from "./trusted-path.js";

export type { TerraformDiagnostic } from "./terraform-json.js";

export interface TerraformOptions {
  /** "terraform" or "tofu" (from config), or a path to either. */
  binary: string;
  /** TF_CLI_CONFIG_FILE: the provider_installation (filesystem mirror) for the provider. */
  cliConfigFile?: string;
  /** Where `init` runs once; its .terraform and .terraform.lock.hcl are reused per stack. */
  sharedInitDir: string;
  /** Extra env for terraform, e.g. PROXMOX_VE_API_TOKEN. Values are secrets: never logged. */
  env?: Record<string, string>;
  logger: Logger;
  /** After SIGINT, how long terraform gets to persist state before SIGKILL. Default 20 s. */
  killGraceMs?: number;
  /**
   * Applies and destroys running at once (each is terraform plus a provider process). With the
   * clone gate nothing else bounds them, and a burst would starve the host's CPU — and the
   * listener's own event loop. Default 8.
   */
  maxConcurrent?: number;
  /**
   * Applies on their way to their clone lane (started, not yet reachedLane) at once, at most; one
   * per lane always may. The clone gate's mode, where it reports the arrivals; off when absent.
   */
  approachCap?: number;
  /**
   * Run apply/destroy (terraform and the provider processes it starts) under SCHED_IDLE (default
   * true): a burst of applies is throughput work and must not take the CPU from the listener, whose
   * webhook answers and lifecycle steps are latency work. See launchScript().
   */
  schedIdle?: boolean;
  /** Scheduling niceness of the same processes (0–19, default 10; 0 leaves it). */
  nice?: number;
  /**
   * Run terraform only from what root alone can have written (default: when running as root). Before
   * each command: the binary, the CLI config and every absolute path it names (filesystem mirror,
   * plugin cache, dev overrides), the working dir's path from / and everything in it (.terraform,
   * the lock file, terraform.d) are owned by root and writable by nobody else (listener/adapters/terraform/trusted-path.ts);
   * otherwise the command fails before anything starts. The binary is run by its checked absolute path.
   */
  requireRootOwned?: boolean;
  /**
   * Re-create .terraform and the lock file every time: init from scratch in the shared dir, and a
   * fresh copy of its result in each working dir (never one found there). For root-run commands.
   */
  freshInit?: boolean;
  /** Filesystem view for the ownership checks (tests fake owners with it). */
  fsView?: FsView;
  /**
   * One long-lived provider process for every run (TF_REATTACH_PROVIDERS; listener/adapters/terraform/shared-provider.ts),
   * its unix socket in this 0700 dir. Off (each run starts its own providers) when absent.
   */
  sharedProviderDir?: string;
}

export interface RunContext {
  runner: string;
  /** The clone lane (template key) an apply will wait in: slots are handed out to keep every lane fed. */
  lane?: string;
  /** A slot reserved beforehand (reserveSlot): the run uses it and releases it when it ends. */
  slot?: SlotLease;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface ApplyResult {
  durationMs: number;
  /** The apply's own change_summary (not the plan's), when terraform printed one. */
  changes: ChangeSummary | null;
  /** Resources whose create/update finished, with the id terraform reported. */
  applied: Array<{ address: string; action?: string; id?: string }>;
}

export interface StateResource {
  address: string;
  tainted: boolean;
  id?: string;
  /** Attribute values as `show -json` reports them. May hold sensitive values: do not log. */
  attributes?: Record<string, unknown>;
}

/** A terraform command that failed, was cancelled or timed out; the message is meant for an operator. */
export class TerraformError extends Error {
  override readonly name = "TerraformError";
  constructor(
    message: string,
    readonly command: string,
    readonly exitCode: number | null,
    readonly diagnostics: TerraformDiagnostic[],
    readonly cancelled: boolean,
    readonly timedOut: boolean,
  ) {
    super(message);
  }
}

/** Env inherited from our own process; everything else (TF_LOG, stray TF_* settings, secrets of ours) is not. */
const INHERITED_ENV = [
  "PATH", "HOME", "TMPDIR", "TMP", "TEMP", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ",
  "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
];

/**
 * The terraform provider stand-in's knobs (sim/provider, docs/sim.md), all named PVE_SIM_PROVIDER_*:
 * a listener run as its own process (`pve-runners serve` against the stand-in world) hands them on
 * to terraform, which hands its environment to the provider. Only this prefix: never other PVE_SIM_*
 * variables (the `pct` stand-in's root token) or anything else of ours.
 */
const SIM_PROVIDER_ENV = /^PVE_SIM_PROVIDER_[A-Z0-9_]+$/;

/**
 * After a listener crash, the terraform it started goes on (see run()) until its next call to PVE,
 * which went through the dead listener's clone gate and fails; it then saves what it made. The
 * restarted listener's apply of the same stack waits here for its state lock while that one is
 * still running. Local state locks are fcntl locks: a dead holder never blocks.
 */
const LOCK_TIMEOUT = "-lock-timeout=5m";
const DEFAULT_KILL_GRACE_MS = 20_000;
const NOT_FOUND = "not found (is terraform/tofu installed and on PATH? set terraform.binary in the config)";
/** How much stderr we keep for an error message when terraform printed no diagnostic. */
const STDERR_TAIL_CHARS = 4_000;
/** If a grandchild keeps our pipes open after terraform exited, stop waiting for them after this. */
const PIPE_DRAIN_MS = 2_000;

interface RunSpec {
  args: string[];
  cwd: string;
  /** More environment for this one run (TF_REATTACH_PROVIDERS). */
  env?: Record<string, string>;
  /** Parse stdout as the -json UI stream and log it; otherwise collect stdout as text. */
  uiStream: boolean;
  log: Logger;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** RunContext.lane: the slot group. */
  lane?: string;
  /** RunContext.runner: names the run to the slots (reachedLane). */
  runner?: string;
  /** RunContext.slot. */
  slot?: SlotLease;
}

interface RunOutcome {
  exitCode: number | null;
  exitSignal: NodeJS.Signals | null;
  stdout: string;
  stderrTail: string;
  diagnostics: TerraformDiagnostic[];
  changes: ChangeSummary[];
  applied: ApplyResult["applied"];
  cancelled: boolean;
  timedOut: boolean;
  /** Set when the stream was refused (unknown UI major version). */
  refused: string | null;
  durationMs: number;
}

export class Terraform {
  private readonly killGraceMs: number;
  private preparing: Promise<void> | null = null;
  private versionInfo: Promise<{ version: string; engine: "terraform" | "tofu" }> | null = null;

  private readonly slots: TerraformSlots;
  private readonly requireRootOwned: boolean;
  /** What the shell execs: the configured binary, or (requireRootOwned) its checked absolute path. */
  private binaryToRun: string;
  private toolchainChecked: Promise<void> | null = null;

  constructor(private readonly opts: TerraformOptions) {
    this.killGraceMs = opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
    this.slots = new TerraformSlots(opts.maxConcurrent ?? 8, { approachCap: opts.approachCap });
    this.requireRootOwned = opts.requireRootOwned ?? runningAsRoot();
    this.binaryToRun = opts.binary;
    if (opts.sharedProviderDir) {
      this.shared = new SharedProvider({
        executable: async () => {
          const exe = await installedProvider(opts.sharedInitDir);
          // As root, the provider runs from what root alone can have written, like terraform itself.
          if (this.requireRootOwned) await assertRootOwnedPath(exe, opts.fsView);
          return exe;
        },
        socketDir: opts.sharedProviderDir,
        launchScript: launchScript(this.lowering()),
        scrub: (t) => this.scrub(t),
        logger: opts.logger.child({ part: "shared-provider" }),
      });
    }
  }

  private readonly shared: SharedProvider | null = null;

  /** Stops the shared provider (if any). Call once no terraform command runs any more. */
  async close(): Promise<void> {
    await this.shared?.stop();
  }

  /** The shared provider's pid, when terraform.sharedProvider is on and it runs. */
  sharedProviderPid(): Promise<number | undefined> {
    return this.shared?.pid() ?? Promise.resolve(undefined);
  }


  /** The engine and its version: OpenTofu prints "OpenTofu v1.x", terraform "Terraform v1.x". */
  version(): Promise<{ version: string; engine: "terraform" | "tofu" }> {
    this.versionInfo ??= (async () => {
      const out = await this.runChecked({ args: ["version"], cwd: "/", uiStream: false, log: this.opts.logger });
      const m = /^(Terraform|OpenTofu) v(\S+)/m.exec(out.stdout);
      if (!m) throw new TerraformError(`"${this.opts.binary} version" printed neither "Terraform v…" nor "OpenTofu v…": is it terraform or tofu?`, this.commandName(["version"]), out.exitCode, [], false, false);
      return { version: m[2], engine: m[1] === "OpenTofu" ? ("tofu" as const) : ("terraform" as const) };
    })();
    // A failed probe (binary missing) should be retried after the operator fixes it.
    this.versionInfo.catch(() => (this.versionInfo = null));
    return this.versionInfo;
  }

  /** `init` once into sharedInitDir with `stackFile` as the config; concurrent callers share one run. */
  prepare(stackFile: string): Promise<void> {
    if (!this.preparing) {
      this.preparing = this.initShared(stackFile);
      this.preparing.catch(() => (this.preparing = null)); // retry on the next call
    }
    return this.preparing;
  }

  /**
   * Holds a terraform slot before the work that leads to a run (the stack's synthesis): in a burst
   * the first applies start while later runners are still being prepared, instead of after all of
   * them. Pass it to apply() as `slot`, or release it.
   */
  reserveSlot(lane: string | undefined, signal?: AbortSignal, runner?: string): Promise<SlotLease> {
    return this.slots.acquire(lane, signal, runner);
  }

  /** Starts the shared provider (when on) so that the first apply does not wait for its start. */
  async startSharedProvider(): Promise<void> {
    if (this.shared) (await this.shared.acquire(this.env())).release();
  }

  /** The slots' counts (tests, logs). */
  slotStats(): ReturnType<TerraformSlots["stats"]> {
    return this.slots.stats();
  }

  /** The runner's clone request is queued in its clone lane (the clone gate saw it). */
  reachedLane(runner: string): void {
    this.slots.reachedLane(runner);
  }

  /** `apply` in one stack dir (copying the shared .terraform in first if the dir has none). */
  async apply(workingDir: string, ctx: RunContext): Promise<ApplyResult> {
    const log = this.opts.logger.child({ runner: ctx.runner });
    await this.ensureInitialised(workingDir, log);
    const out = await this.runChecked({
      args: ["apply", "-auto-approve", "-input=false", "-json", LOCK_TIMEOUT],
      cwd: workingDir,
      uiStream: true,
      log,
      signal: ctx.signal,
      timeoutMs: ctx.timeoutMs,
      lane: ctx.lane,
      runner: ctx.runner,
      slot: ctx.slot,
    });
    const changes = out.changes.find((c) => c.operation === "apply") ?? null;
    log.info({ ms: out.durationMs, changes }, "terraform apply complete");
    return { durationMs: out.durationMs, changes, applied: out.applied };
  }

  /**
   * `destroy` in one stack dir. Works on a tainted resource (a failed or cancelled apply leaves one)
   * and on an empty state; a dir with no state file at all has nothing to destroy.
   *
   * `refresh: false` (-refresh=false) only once the caller has seen through the API that the
   * container is there (listener/adapters/proxmox/container-check.ts): the refresh is what turns a container deleted
   * out-of-band into "nothing to destroy" (the provider's read drops it from state); without it bpg's
   * Delete fails on a vanished vmid (containerDelete's first call, GetContainerStatus, returns its
   * "does not exist" as an error), so the caller checks again after a failure. Default: refresh on.
   */
  async destroy(workingDir: string, ctx: RunContext & { refresh?: boolean }): Promise<void> {
    const log = this.opts.logger.child({ runner: ctx.runner });
    if (!(await exists(join(workingDir, "terraform.tfstate")))) {
      log.info({ workingDir }, "no terraform state in the stack dir: nothing to destroy");
      return;
    }
    await this.ensureInitialised(workingDir, log);
    const out = await this.runChecked({
      args: ["destroy", "-auto-approve", "-input=false", "-json", LOCK_TIMEOUT, ...(ctx.refresh === false ? ["-refresh=false"] : [])],
      cwd: workingDir,
      uiStream: true,
      log,
      signal: ctx.signal,
      timeoutMs: ctx.timeoutMs,
    });
    const changes = out.changes.find((c) => c.operation === "destroy") ?? null;
    log.info({ ms: out.durationMs, destroyed: changes?.remove ?? 0 }, "terraform destroy complete");
  }

  /**
   * The stack's outputs as `output -json` gives them (name → { sensitive, type, value }), read from
   * its state file: the stacks use the local backend with "terraform.tfstate" in the stack dir
   * (stacks/runner-stack.ts), and terraform's state format 4 keeps `outputs` in that shape. No
   * terraform process per runner for it (issue 17). Empty when nothing was applied; a state in
   * another format is left to `terraform output -json`.
   */
  async output(workingDir: string): Promise<Record<string, unknown>> {
    await this.assertTrustedDir(workingDir, "output", true);
    const command = this.commandName(["output"]);
    let text: string;
    try {
      text = await readFile(join(workingDir, "terraform.tfstate"), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      if (!existsSync(workingDir)) throw new TerraformError(`${command} failed (in ${workingDir}): stack dir ${workingDir} does not exist`, command, null, [], false, false);
      return {};
    }
    if (text.trim() === "") return {}; // terraform reads an empty state file as no state
    let state: { version?: unknown; outputs?: Record<string, { value?: unknown; type?: unknown; sensitive?: unknown }> };
    try {
      state = JSON.parse(text);
    } catch {
      throw new TerraformError(`${command} failed (in ${workingDir}): terraform.tfstate is not JSON`, command, null, [], false, false);
    }
    if (state.version !== 4 || typeof state.outputs !== "object" || state.outputs === null) {
      const out = await this.runChecked({ args: ["output", "-json"], cwd: workingDir, uiStream: false, log: this.opts.logger });
      return parseJsonOutput(out.stdout, "output -json") as Record<string, unknown>;
    }
    const outputs: Record<string, unknown> = {};
    for (const [name, o] of Object.entries(state.outputs)) outputs[name] = { sensitive: o.sensitive === true, type: o.type, value: o.value };
    return outputs;
  }

  /** Resources in the stack's state (`show -json`), e.g. a tainted or partial one after a failed apply. */
  async stateResources(workingDir: string): Promise<StateResource[]> {
    const out = await this.runChecked({ args: ["show", "-json"], cwd: workingDir, uiStream: false, log: this.opts.logger });
    const doc = parseJsonOutput(out.stdout, "show -json") as { values?: { root_module?: ShowModule } };
    const found: StateResource[] = [];
    const walk = (m: ShowModule | undefined) => {
      for (const r of m?.resources ?? []) {
        const values = r.values && typeof r.values === "object" ? r.values : undefined;
        const id = values && (typeof values.id === "string" || typeof values.id === "number") ? String(values.id) : undefined;
        found.push({ address: r.address, tainted: r.tainted === true, ...(id !== undefined ? { id } : {}), ...(values ? { attributes: values } : {}) });
      }
      for (const child of m?.child_modules ?? []) walk(child);
    };
    walk(doc.values?.root_module);
    return found;
  }

  // ---------------------------------------------------------------- init and the shared dir

  private async initShared(stackFile: string): Promise<void> {
    const dir = this.opts.sharedInitDir;
    const log = this.opts.logger.child({ sharedInitDir: dir });
    await mkdir(dir, { recursive: true });
    await this.assertTrustedDir(dir, "init", false);
    if (this.opts.freshInit) await removeInit(dir);
    // Only the config matters to init (providers, backend); state never lives here.
    await copyFile(stackFile, join(dir, "cdk.tf.json"));
    const out = await this.runChecked({ args: ["init", "-input=false", "-no-color"], cwd: dir, uiStream: false, log });
    log.info({ ms: out.durationMs }, "terraform init done in the shared dir");
    log.debug({ tf: "init" }, lastLines(out.stdout));
  }

  /** Gives a stack dir the shared .terraform and lock file, unless it has its own already. */
  private async ensureInitialised(workingDir: string, log: Logger): Promise<void> {
    // Checked before anything is written into it.
    await this.assertTrustedDir(workingDir, "init", false);
    if (this.opts.freshInit) {
      // Never one found there: only the copy of this process's own init.
      await removeInit(workingDir);
      if (!this.preparing) throw new TerraformError("terraform is not initialised by this run (prepare() runs init from scratch)", this.commandName(["init"]), null, [], false, false);
    }
    if (await exists(join(workingDir, ".terraform"))) return;
    if (this.preparing) await this.preparing;
    const shared = this.opts.sharedInitDir;
    // A shared dir initialised by an earlier run of the daemon is as good (destroy after a restart).
    if (!(await exists(join(shared, ".terraform")))) {
      throw new TerraformError(`terraform is not initialised: ${shared}/.terraform is missing (prepare() runs init once)`, this.commandName(["init"]), null, [], false, false);
    }
    // Copy under a temporary name and rename, so a crash mid-copy never leaves a half .terraform.
    const tmp = join(workingDir, `.terraform.copy-${randomBytes(4).toString("hex")}`);
    try {
      // verbatimSymlinks: init from a filesystem mirror symlinks the provider into .terraform/providers.
      await cp(join(shared, ".terraform"), tmp, { recursive: true, verbatimSymlinks: true });
      await rename(tmp, join(workingDir, ".terraform"));
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    const lock = join(workingDir, ".terraform.lock.hcl");
    if ((await exists(join(shared, ".terraform.lock.hcl"))) && !(await exists(lock))) await copyFile(join(shared, ".terraform.lock.hcl"), lock);
    log.debug({ workingDir }, "copied the shared .terraform into the stack dir");
  }

  // ---------------------------------------------------------------- what root may run

  /**
   * requireRootOwned: `dir` (and, with `tree`, all in it) and the toolchain are root's alone, or
   * the command fails with one line and nothing runs.
   */
  private async assertTrustedDir(dir: string, subcommand: string, tree: boolean): Promise<void> {
    if (!this.requireRootOwned) return;
    const fs = this.opts.fsView ?? realFs;
    try {
      this.toolchainChecked ??= this.checkToolchain(fs);
      await this.toolchainChecked;
      // A missing dir (the command then fails on its own): nobody but root can make it in a root-only parent.
      let at = resolve(dir);
      while (at !== "/" && !(await fs.lstat(at).then(() => true, () => false))) at = dirname(at);
      if (tree && at === resolve(dir)) await assertRootOwned(at, { fs });
      else await assertRootOwnedPath(at, fs);
    } catch (err) {
      this.toolchainChecked = null; // checked again once the operator fixed it
      if (!(err instanceof UntrustedPathError)) throw err;
      throw new TerraformError(`refusing to run terraform as root: ${err.message}`, this.commandName([subcommand]), null, [], false, false);
    }
  }

  /** The binary (by PATH, as the shell would find it), the CLI config and every absolute path it names. */
  private async checkToolchain(fs: FsView): Promise<void> {
    const binary = await findExecutable(this.opts.binary, this.env().PATH ?? "");
    if (!binary) throw new TerraformError(`${this.opts.binary}: ${NOT_FOUND}`, this.commandName(["version"]), null, [], false, false);
    this.binaryToRun = await assertRootOwnedPath(binary, fs);
    const rc = this.opts.cliConfigFile;
    if (!rc) return;
    await assertRootOwnedPath(rc, fs);
    for (const m of (await readFile(rc, "utf8")).matchAll(/"(\/[^"]*)"/g)) await assertRootOwned(m[1], { fs, optional: true });
  }

  // ---------------------------------------------------------------- running the engine

  private commandName(args: string[]): string {
    return `${this.opts.binary} ${args[0] ?? ""}`.trim();
  }

  private env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const k of INHERITED_ENV) if (process.env[k] !== undefined) env[k] = process.env[k];
    for (const [k, v] of Object.entries(process.env)) if (SIM_PROVIDER_ENV.test(k) && v !== undefined) env[k] = v;
    env.TF_IN_AUTOMATION = "1";
    env.TF_INPUT = "0";
    env.CHECKPOINT_DISABLE = "1";
    if (this.opts.cliConfigFile) env.TF_CLI_CONFIG_FILE = this.opts.cliConfigFile;
    return { ...env, ...this.opts.env, ...this.extraEnv };
  }

  private extraEnv: Record<string, string> = {};
  private readonly hidden: string[] = [];

  private lowering(): Lowering {
    return { schedIdle: this.opts.schedIdle ?? true, nice: this.opts.nice ?? 10 };
  }

  /**
   * Starts `cat /proc/self/stat` the way apply and destroy start terraform and reports the priority
   * it really got: a unit or kernel that refuses the lowering is one warning at start, not a
   * listener that silently competes with its own terraform for the CPU.
   */
  async checkPriority(): Promise<PriorityCheck> {
    const want = this.lowering();
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn("/bin/sh", ["-c", launchScript(want), "cat", "/proc/self/stat"], { stdio: ["ignore", "pipe", "pipe"] });
      let text = "";
      child.stdout.on("data", (d: Buffer) => (text += d.toString()));
      child.stderr.resume();
      child.on("error", reject);
      child.on("close", () => resolve(text));
    });
    const got = parseProcStat(out);
    const ok = got !== null && (!want.schedIdle || got.policy === SCHED_IDLE) && got.nice >= want.nice;
    const check = { ok, wanted: want, got };
    if (!ok) {
      this.opts.logger.warn(
        { wanted: want, got },
        "terraform runs at a higher CPU priority than configured (terraform.schedIdle / terraform.nice): the system call filter or the kernel refused to lower it, so a burst of applies slows webhook answers. The shipped unit allows it (SystemCallFilter=setpriority sched_setscheduler)",
      );
    } else {
      this.opts.logger.info({ schedIdle: want.schedIdle, nice: got?.nice }, "terraform runs at lowered CPU priority");
    }
    return check;
  }

  /**
   * More environment for every later run (the clone gate's endpoint, known only once it listens).
   * `hide`: texts never to pass on from terraform's output (logs, errors), e.g. the PVE token's
   * secret, should a provider print it.
   */
  setEnv(vars: Record<string, string>, opts: { hide?: string[] } = {}): void {
    this.extraEnv = { ...this.extraEnv, ...vars };
    this.hidden.push(...(opts.hide ?? []).filter((t) => t.length > 0));
  }

  private scrub(text: string): string {
    for (const h of this.hidden) if (text.includes(h)) text = text.split(h).join("<redacted>");
    return text;
  }

  /** Runs one command and turns a failure (exit ≠ 0, cancel, timeout, refused stream) into a TerraformError. */
  private async runChecked(spec: RunSpec): Promise<RunOutcome> {
    const command = this.commandName(spec.args);
    // `version` runs in / and reads nothing there; every other command reads its working dir.
    await this.assertTrustedDir(spec.cwd, spec.args[0] ?? "", spec.args[0] !== "version");
    // A slot reserved beforehand (reserveSlot) is used and released here like one taken now.
    const slot = spec.slot ?? (isHeavy(spec.args) ? await this.slots.acquire(spec.lane, undefined, spec.runner) : undefined);
    let out: RunOutcome;
    try {
      out = await this.runAttached(spec);
    } finally {
      slot?.release();
    }
    if (out.exitCode === 0 && !out.cancelled && !out.timedOut && !out.refused) return out;
    const firstError = out.diagnostics.find((d) => d.severity === "error");
    let why: string;
    if (out.refused) why = out.refused;
    else if (firstError) why = describeDiagnostic(firstError);
    else why = lastLines(out.stderrTail) || lastLines(out.stdout) || (out.exitCode === null ? `killed by ${out.exitSignal}` : `exit code ${out.exitCode}`);
    const where = spec.cwd;
    const what = out.timedOut ? `timed out after ${formatMs(spec.timeoutMs ?? 0)}` : out.cancelled ? "was cancelled" : "failed";
    // terraform writes errored.tfstate when it could not persist state: resources may exist that the
    // state file does not know about, so the operator (or the sweeper, by tag) must look.
    if (spec.uiStream && (await exists(join(spec.cwd, "errored.tfstate")))) why += " (state could not be saved: see errored.tfstate in the stack dir)";
    const err = new TerraformError(`${command} ${what} (in ${where}): ${why}`, command, out.exitCode, out.diagnostics, out.cancelled, out.timedOut);
    spec.log.warn({ command, exitCode: out.exitCode, cancelled: out.cancelled, timedOut: out.timedOut, ms: out.durationMs, err: err.message }, "terraform command failed");
    return Promise.reject(err);
  }

  /** With the shared provider, every command that loads providers attaches to it; init installs them, version needs none. */
  private async runAttached(spec: RunSpec): Promise<RunOutcome> {
    const verb = spec.args[0];
    if (!this.shared || verb === "init" || verb === "version" || spec.signal?.aborted) return this.run(spec);
    const lease = await this.shared.acquire(this.env());
    try {
      return await this.run({ ...spec, env: { ...spec.env, TF_REATTACH_PROVIDERS: lease.reattach } });
    } finally {
      lease.release();
    }
  }

  private run(spec: RunSpec): Promise<RunOutcome> {
    const command = this.commandName(spec.args);
    const started = Date.now();
    if (spec.signal?.aborted) {
      return Promise.reject(new TerraformError(`${command} was cancelled before it started`, command, null, [], true, false));
    }
    return new Promise<RunOutcome>((resolve, reject) => {
      const outcome: RunOutcome = {
        exitCode: null, exitSignal: null, stdout: "", stderrTail: "", diagnostics: [], changes: [], applied: [],
        cancelled: false, timedOut: false, refused: null, durationMs: 0,
      };
      spec.log.debug({ command, args: spec.args, cwd: spec.cwd }, "terraform command starting");
      // Not detached (no new session): the script gives terraform a process group of its own, so
      // SIGKILL reaches the provider plugins terraform started, and lowers the priority of apply
      // and destroy while they stay in the listener's session: see launchScript().
      const script = launchScript(isHeavy(spec.args) ? this.lowering() : NO_LOWERING);
      const child = spawn("/bin/sh", ["-c", script, this.binaryToRun, ...spec.args], { cwd: spec.cwd, env: { ...this.env(), ...spec.env }, stdio: ["ignore", "pipe", "pipe"] });
      let interrupted = false;
      let killTimer: NodeJS.Timeout | undefined;
      let timeoutTimer: NodeJS.Timeout | undefined;
      let drainTimer: NodeJS.Timeout | undefined;
      let exited = false;

      const killGroup = () => {
        if (child.pid === undefined) return;
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          // ESRCH: the group is already gone.
        }
      };
      const interrupt = (reason: "cancelled" | "timedOut" | "refused") => {
        if (reason === "cancelled") outcome.cancelled = true;
        if (reason === "timedOut") outcome.timedOut = true;
        if (interrupted || exited || child.pid === undefined) return;
        interrupted = true;
        spec.log.warn({ command, reason, killGraceMs: this.killGraceMs }, "interrupting terraform (SIGINT)");
        // One SIGINT only: a second one makes terraform exit at once without persisting state.
        try {
          child.kill("SIGINT");
        } catch {
          // already exited
        }
        killTimer = setTimeout(() => {
          spec.log.error({ command, killGraceMs: this.killGraceMs }, "terraform did not stop after SIGINT: SIGKILL to its process group");
          killGroup();
        }, this.killGraceMs);
      };
      const onAbort = () => interrupt("cancelled");
      spec.signal?.addEventListener("abort", onAbort, { once: true });
      if (spec.timeoutMs !== undefined && spec.timeoutMs > 0) timeoutTimer = setTimeout(() => interrupt("timedOut"), spec.timeoutMs);

      let pending = "";
      const onLine = (raw: string) => {
        if (!spec.uiStream) return;
        const line = this.scrub(raw);
        const msg = parseUiLine(line);
        if (!msg) {
          if (line.trim()) spec.log.info({ tf: "text" }, line.trim());
          return;
        }
        if (msg.type === "version") {
          const refused = unsupportedUiVersion(msg);
          if (refused && !outcome.refused) {
            outcome.refused = refused;
            interrupt("refused");
          }
        }
        const diag = diagnosticOf(msg);
        if (diag) outcome.diagnostics.push(diag);
        const summary = changeSummaryOf(msg);
        if (summary) outcome.changes.push(summary);
        if (msg.type === "apply_complete") {
          const f = logFieldsOf(msg);
          if (typeof f.address === "string") outcome.applied.push({ address: f.address, ...(typeof f.action === "string" ? { action: f.action } : {}), ...(typeof f.id === "string" ? { id: f.id } : {}) });
        }
        spec.log[pinoLevelOf(msg["@level"])]({ tf: msg.type, ...logFieldsOf(msg) }, msg["@message"].trim());
      };
      child.stdout.setEncoding("utf8");
      child.stdout.on("data", (chunk: string) => {
        if (!spec.uiStream) {
          outcome.stdout += chunk;
          return;
        }
        pending += chunk;
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          onLine(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
        }
      });
      child.stderr.setEncoding("utf8");
      child.stderr.on("data", (chunk: string) => {
        outcome.stderrTail = this.scrub(outcome.stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
      });

      let settled = false;
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(killTimer);
        clearTimeout(timeoutTimer);
        clearTimeout(drainTimer);
        spec.signal?.removeEventListener("abort", onAbort);
        if (pending) onLine(pending);
        outcome.stdout = this.scrub(outcome.stdout);
        outcome.durationMs = Date.now() - started;
        // After an interrupted run, leftovers in the group (a provisioner's child, a stuck plugin) go too.
        if (interrupted) killGroup();
        if (outcome.stderrTail.trim()) {
          spec.log[outcome.exitCode === 0 ? "debug" : "warn"]({ tf: "stderr", command }, lastLines(outcome.stderrTail, 20));
        }
        // The /bin/sh wrapper: 127 is its "exec: <binary>: not found", 126 "Permission denied".
        if (!err && (outcome.exitCode === 127 || outcome.exitCode === 126) && /exec: .*(not found|Permission denied)/.test(outcome.stderrTail)) {
          const why = outcome.exitCode === 127 ? NOT_FOUND : "not executable";
          err = new TerraformError(`${this.opts.binary}: ${why}`, command, outcome.exitCode, [], outcome.cancelled, outcome.timedOut);
        }
        if (err) reject(err);
        else resolve(outcome);
      };
      child.on("error", (err: NodeJS.ErrnoException) => {
        exited = true;
        // spawn reports a missing cwd as ENOENT too: tell the two apart for the operator.
        const msg =
          err.code === "ENOENT" && !existsSync(spec.cwd)
            ? `stack dir ${spec.cwd} does not exist`
            : err.code === "ENOENT"
            ? `${this.opts.binary}: ${NOT_FOUND}`
            : `could not run ${this.opts.binary}: ${err.message}`;
        finish(new TerraformError(msg, command, null, [], outcome.cancelled, outcome.timedOut));
      });
      child.on("exit", (code, signal) => {
        exited = true;
        outcome.exitCode = code;
        outcome.exitSignal = signal;
        clearTimeout(killTimer);
        // 'close' waits for our pipes; a grandchild holding them must not hang us.
        drainTimer = setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
          finish();
        }, PIPE_DRAIN_MS);
      });
      child.on("close", () => {
        if (exited) finish();
      });
    });
  }
}

interface ShowModule {
  resources?: Array<{ address: string; tainted?: boolean; values?: Record<string, unknown> }>;
  child_modules?: ShowModule[];
}

function formatMs(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}

function describeDiagnostic(d: TerraformDiagnostic): string {
  const detail = d.detail.trim().replace(/\s+/g, " ");
  const clipped = detail.length > 600 ? `${detail.slice(0, 600)}…` : detail;
  return `${d.summary}${clipped ? `: ${clipped}` : ""}${d.address ? ` [${d.address}]` : ""}`;
}

/** The last few non-empty lines of a text, box-drawing characters of terraform's text UI removed. */
function lastLines(text: string, n = 6): string {
  return text
    .split("\n")
    .map((l) => l.replace(/^[│╷╵\s]+/, "").trimEnd())
    .filter((l) => l.trim() !== "")
    .slice(-n)
    .join(" | ");
}

function parseJsonOutput(stdout: string, what: string): unknown {
  try {
    return JSON.parse(stdout.trim() || "{}");
  } catch {
    throw new Error(`terraform ${what} printed something that is not JSON: ${stdout.slice(0, 200)}`);
  }
}

/** How apply and destroy lower the priority of terraform and everything it starts. */
export interface Lowering {
  schedIdle: boolean;
  nice: number;
}

const NO_LOWERING: Lowering = { schedIdle: false, nice: 0 };
/** The policy number in /proc/<pid>/stat and sched_setscheduler(2). */
export const SCHED_IDLE = 5;

export interface PriorityCheck {
  ok: boolean;
  wanted: Lowering;
  got: { policy: number; nice: number } | null;
}

/**
 * Puts the process in a process group of its own (setpgid, not setsid), then execs its arguments;
 * a missing or non-executable program is reported as sh reports it (exit 127 / 126). perl-base is
 * Essential in Debian, so it is on every PVE host; it is the one common tool that calls setpgid.
 */
const OWN_GROUP_EXEC =
  'setpgrp(0, 0) or die "setpgid: $!\\n"; exec { $ARGV[0] } @ARGV; ' +
  'my $missing = $! == 2; print STDERR "exec: $ARGV[0]: ", ($missing ? "not found" : "Permission denied"), "\\n"; exit($missing ? 127 : 126)';

/**
 * The `sh -c` script that starts terraform ("$0", args "$@"). Every setting is inherited across
 * exec and fork, so the provider processes terraform starts get them too.
 *
 * - SIGPIPE ignored (kept across exec): if the listener dies, terraform's next write to our pipe
 *   fails with EPIPE instead of killing it mid-apply (Go exits on SIGPIPE for fds 1 and 2 unless it
 *   was ignored at start), so it ends through its own error handling and writes its state (what
 *   it made, tainted) instead of dying with a clone it never recorded. Its PVE calls go through
 *   the listener's clone gate, so they fail once the listener is gone: the re-run after the
 *   restart targets the same recorded vmid (see listener/lifecycle/vmids.ts).
 * - SCHED_IDLE (`chrt --idle`, util-linux): CFS weight 3 against the listener's 1024 and a wakeup of
 *   the listener preempts it at once, so however many applies run, the listener's thread gets the
 *   CPU when it needs it. nice 10 alone (weight 110) is outweighed by 16 terraform and provider
 *   processes. The shell lowers itself, then execs: a refusal (an old unit's system call filter)
 *   must not stop terraform, and checkPriority() reports it once at start.
 * - nice after that: coreutils' nice warns and runs the command anyway when refused.
 * - A process group of its own (perl's setpgrp, OWN_GROUP_EXEC) but the listener's session: a new
 *   session (setsid, what spawn's `detached` does) is a new autogroup when the kernel schedules
 *   by autogroup (sched(7), "The autogroup feature": CONFIG_SCHED_AUTOGROUP, on in Debian's and
 *   PVE's kernels, used whenever the cpu controller does not place the service in a cgroup of its
 *   own). Each autogroup then gets a nice-0 share of the CPU against the listener's, whatever
 *   policy its tasks have, and SCHED_IDLE only ranks tasks within one group: 8 applies took 8/9 of
 *   the CPU from the listener. Within the listener's session they share its autogroup.
 * Lowering one's own priority needs no capability (sched(7)); raising it back does.
 */
export function launchScript(l: Lowering): string {
  const steps = ['trap "" PIPE'];
  if (l.schedIdle) steps.push("chrt --idle -p 0 $$ >/dev/null 2>&1 || :");
  const nice = l.nice > 0 ? `nice -n ${l.nice} ` : "";
  // Without perl (not a Debian host): a session of its own as before (util-linux setsid, which
  // calls setsid(2) in place since the shell leads no group), so the group kill still works.
  steps.push(`if command -v perl >/dev/null 2>&1; then exec ${nice}perl -e '${OWN_GROUP_EXEC}' "$0" "$@"; else exec ${nice}setsid "$0" "$@"; fi`);
  return steps.join("; ");
}

/** Scheduling policy (field 41) and nice (field 19) of a /proc/<pid>/stat line; null if it is not one. */
export function parseProcStat(text: string): { policy: number; nice: number } | null {
  // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
  const close = text.lastIndexOf(")");
  if (close < 0) return null;
  const rest = text.slice(close + 2).trim().split(/\s+/); // rest[0] is field 3
  const nice = Number(rest[19 - 3]);
  const policy = Number(rest[41 - 3]);
  return Number.isInteger(nice) && Number.isInteger(policy) ? { policy, nice } : null;
}

/** apply and destroy start the provider (4-5 times each): they take a slot and run niced. */
function isHeavy(args: string[]): boolean {
  return args[0] === "apply" || args[0] === "destroy";
}

/** .terraform and the lock file of a dir, for an init from scratch. */
async function removeInit(dir: string): Promise<void> {
  await rm(join(dir, ".terraform"), { recursive: true, force: true });
  await rm(join(dir, ".terraform.lock.hcl"), { force: true });
}

/** The file `sh -c 'exec "$0"'` would run: a path as given, a bare name searched on PATH. */
async function findExecutable(binary: string, path: string): Promise<string | null> {
  if (binary.includes("/")) return resolve(binary);
  for (const dir of path.split(":")) {
    if (!isAbsolute(dir)) continue; // a relative PATH entry is never searched for root's terraform
    const candidate = join(dir, binary);
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return candidate;
  }
  return null;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
