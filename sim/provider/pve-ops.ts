// bpg's PVE operations with its retry and polling rules (proxmox/retry/retry.go,
// proxmox/nodes/tasks/tasks.go, proxmox/nodes/containers/containers.go, proxmox/cluster/
// id_generator.go), including its error texts. Every wait polls at `pollMs` (bpg: 1 s); every
// backoff is bpg's scaled by pollMs/1000, so tests can run bpg's timings fast.
import { mkdir, open, readFile, stat, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Log } from "./log.js";
import { httpErrorOf, isNotFound, wrap, type Params, type PveClient } from "./pve-client.js";

export interface OpContext {
  client: PveClient;
  /** Aborted by StopProvider (cancel) or by the resource's timeout_* (deadline). */
  signal: AbortSignal;
  pollMs: number;
  log: Log;
}

/** The Go context error an aborted signal stands for. */
export function ctxError(signal: AbortSignal): Error {
  const reason = signal.reason as Error | undefined;
  return new Error(reason?.name === "TimeoutError" ? "context deadline exceeded" : "context canceled");
}

const isDeadline = (signal: AbortSignal) => (signal.reason as Error | undefined)?.name === "TimeoutError";

/** Sleeps unless the context ends first; then throws the context's error. */
async function pause(ctx: OpContext, ms: number): Promise<void> {
  if (ctx.signal.aborted) throw ctxError(ctx.signal);
  try {
    await sleep(ms, undefined, { signal: ctx.signal });
  } catch {
    throw ctxError(ctx.signal);
  }
}

const scaled = (ctx: OpContext, bpgMs: number) => Math.max(1, Math.round((bpgMs * ctx.pollMs) / 1000));

/** retry-go's Error for lastErrorOnly=false: every attempt's error, numbered. */
export class AllAttemptsFailed extends Error {
  constructor(readonly errors: Error[]) {
    // The last error is the cause, so "is it gone / is it an HTTP error" looks through (retry-go's Error.Is).
    super(`All attempts fail:\n${errors.map((e, i) => `#${i + 1}: ${e.message}`).join("\n")}`, { cause: errors.at(-1) });
  }
}

export interface TaskResult {
  warnings: string[];
}

// ---------------------------------------------------------------- tasks

/** Go's url.PathEscape (UPIDs of token users contain "!", "@" and ":"). */
function pathEscape(s: string): string {
  return s.replace(/[^A-Za-z0-9\-_.~$&+:=@]/g, (c) =>
    [...Buffer.from(c, "utf8")].map((b) => "%" + b.toString(16).toUpperCase().padStart(2, "0")).join(""),
  );
}

function taskPath(upid: string, what: string): string {
  const node = upid.split(":")[1];
  if (!upid.startsWith("UPID:") || !node) throw new Error(`unable to parse task ID "${upid}"`);
  return `nodes/${pathEscape(node)}/tasks/${pathEscape(upid)}/${what}`;
}

/** tasks.WaitForTask: poll the task status until it stops; OK or "WARNINGS: n" pass, anything else fails with the task log. */
export async function waitForTask(ctx: OpContext, upid: string): Promise<TaskResult> {
  let status: { status?: string; exitstatus?: string };
  for (;;) {
    try {
      status = await ctx.client.request("GET", taskPath(upid, "status"), undefined, ctx.signal);
    } catch (err) {
      if (ctx.signal.aborted) throw taskWaitAborted(ctx, upid);
      // A 400 right after dispatch ("no such task") is retried, like bpg.
      if (httpErrorOf(err)?.code !== 400) throw wrap(`error while waiting for task "${upid}" to complete`, wrap("error retrieving task status", err));
      status = { status: "running" };
    }
    if (status.status !== "running") break;
    try {
      await pause(ctx, ctx.pollMs);
    } catch {
      throw taskWaitAborted(ctx, upid);
    }
  }
  const exit = status.exitstatus ?? "";
  if (exit === "OK") return { warnings: [] };
  const lines = await taskLog(ctx, upid);
  if (exit.startsWith("WARNINGS: ") && !exit.includes("ERROR")) {
    const warnings = (lines ?? []).filter((l) => l.includes("WARN:"));
    return { warnings: warnings.length > 0 ? warnings : [`task "${upid}" completed with warnings (exit code: ${exit})`] };
  }
  if (!lines || lines.length === 0) throw new Error(`task "${upid}" failed to complete with exit code: ${exit}`);
  throw new Error(`task "${upid}" failed to complete with exit code: ${exit}\ntask log:\n  ${lines.join("\n  ")}`);
}

function taskWaitAborted(ctx: OpContext, upid: string): Error {
  return isDeadline(ctx.signal)
    ? new Error(`timeout while waiting for task "${upid}" to complete`)
    : new Error(`error while waiting for task "${upid}" to complete: context canceled`);
}

async function taskLog(ctx: OpContext, upid: string): Promise<string[] | null> {
  try {
    const data = await ctx.client.request<Array<{ t?: string }>>("GET", taskPath(upid, "log"), undefined, ctx.signal);
    return (data ?? []).map((l) => l.t ?? "");
  } catch (err) {
    ctx.log("warn", "failed to fetch task log for error details", { task_id: upid, error: (err as Error).message });
    return null;
  }
}

interface TaskOp {
  name: string;
  attempts?: number;
  /** bpg's base delay before the exponential backoff (1 s unless said otherwise). */
  baseDelayMs?: number;
  retryIf: (err: Error) => boolean;
  /** On a retry, an error that means the first attempt had in fact succeeded ("already exists"). */
  alreadyDone?: (err: Error) => boolean;
}

/** retry.Operation.DoTask + tasks.DoTask: dispatch (retried), then wait for the task (never retried; its node comes from the UPID). */
export async function doTask(ctx: OpContext, op: TaskOp, dispatch: () => Promise<string | null>): Promise<TaskResult> {
  const attempts = op.attempts ?? 3;
  const errors: Error[] = [];
  let retrying = false;
  for (let n = 0; n < attempts; n++) {
    let upid: string | null;
    try {
      upid = await dispatch();
    } catch (e) {
      const err = e as Error;
      if (retrying && op.alreadyDone?.(err)) return { warnings: [] };
      errors.push(err);
      if (!op.retryIf(err)) break;
      retrying = true;
      ctx.log("warn", `retrying ${op.name}`, { attempt: n, error: err.message });
      if (n === attempts - 1) break;
      try {
        await pause(ctx, scaled(ctx, (op.baseDelayMs ?? 1000) * 2 ** n));
      } catch (abort) {
        errors.push(abort as Error);
        break;
      }
      continue;
    }
    if (upid === null) return { warnings: [] };
    return waitForTask(ctx, upid);
  }
  throw new AllAttemptsFailed(errors);
}

/** retry.IsTransientAPIError: any 5xx, or PVE's "got no worker upid" / "got timeout". */
export function isTransient(err: Error): boolean {
  const h = httpErrorOf(err);
  if (h) return h.code >= 500;
  return /got no worker upid|got timeout/.test(err.message);
}

/** retry.NewAPICallOperation(...).Do: 3 attempts, 1 s exponential backoff, all errors reported. */
export async function doApiCall(ctx: OpContext, name: string, retryIf: (err: Error) => boolean, fn: () => Promise<unknown>): Promise<void> {
  const errors: Error[] = [];
  for (let n = 0; n < 3; n++) {
    try {
      await fn();
      return;
    } catch (e) {
      errors.push(e as Error);
      if (!retryIf(e as Error)) break;
      ctx.log("warn", `retrying ${name}`, { attempt: n, error: (e as Error).message });
      if (n === 2) break;
      try {
        await pause(ctx, scaled(ctx, 1000 * 2 ** n));
      } catch (abort) {
        errors.push(abort as Error);
        break;
      }
    }
  }
  throw new AllAttemptsFailed(errors);
}

// ---------------------------------------------------------------- containers

export interface ContainerStatus {
  status?: string;
  lock?: string;
  name?: string;
  template?: number;
}

export const ctPath = (node: string, vmid: number, sub = "") => `nodes/${encodeURIComponent(node)}/lxc/${vmid}${sub ? "/" + sub : ""}`;

export async function getStatus(ctx: OpContext, node: string, vmid: number): Promise<ContainerStatus> {
  try {
    const data = await ctx.client.request<ContainerStatus | null>("GET", ctPath(node, vmid, "status/current"), undefined, ctx.signal);
    if (!data) throw new Error("the server did not include a data object in the response");
    return data;
  } catch (err) {
    throw wrap("error retrieving container status", err);
  }
}

export async function getConfig(ctx: OpContext, node: string, vmid: number): Promise<Record<string, unknown>> {
  try {
    const data = await ctx.client.request<Record<string, unknown> | null>("GET", ctPath(node, vmid, "config"), undefined, ctx.signal);
    if (!data) throw new Error("the server did not include a data object in the response");
    return data;
  } catch (err) {
    throw wrap("error retrieving container", err);
  }
}

/** containers.CloneContainer: 5xx retried (3 attempts, 10 s backoff); "already exists" on a retry counts as done. */
export function cloneContainer(ctx: OpContext, node: string, sourceVmid: number, body: Params): Promise<TaskResult> {
  return doTask(ctx, { name: "container clone", baseDelayMs: 10_000, retryIf: isTransient, alreadyDone: (e) => e.message.includes("already exists") }, async () => {
    try {
      const upid = await ctx.client.request<string | null>("POST", ctPath(node, sourceVmid, "clone"), body, ctx.signal);
      if (!upid) throw new Error("the server did not include a data object in the response");
      return upid;
    } catch (err) {
      throw wrap("error cloning container", err);
    }
  });
}

/** containers.CreateContainer: POST /nodes/{node}/lxc (5xx retried; "already exists" on a retry counts as done), then its task. */
export function createContainerTask(ctx: OpContext, node: string, body: Params): Promise<TaskResult> {
  return doTask(ctx, { name: "container create", retryIf: isTransient, alreadyDone: (e) => e.message.includes("already exists") }, async () => {
    try {
      const upid = await ctx.client.request<string | null>("POST", `nodes/${encodeURIComponent(node)}/lxc`, body, ctx.signal);
      if (!upid) throw new Error("the server did not include a data object in the response");
      return upid;
    } catch (err) {
      throw wrap("error creating container", err);
    }
  });
}

/** containers.UpdateContainer: one PUT /config, retried only on "got timeout". */
export function updateContainer(ctx: OpContext, node: string, vmid: number, body: Params): Promise<void> {
  return doApiCall(ctx, "container config update", (e) => e.message.includes("got timeout"), () =>
    ctx.client.request("PUT", ctPath(node, vmid, "config"), body, ctx.signal),
  );
}

/** A poll that ends on success, on an error `retryIf` rejects, or with the context. */
async function poll(ctx: OpContext, retryIf: (err: Error) => boolean, fn: () => Promise<void>): Promise<void> {
  for (;;) {
    try {
      await fn();
      return;
    } catch (err) {
      if (!retryIf(err as Error) || ctx.signal.aborted) throw ctx.signal.aborted ? ctxError(ctx.signal) : err;
    }
    await pause(ctx, ctx.pollMs);
  }
}

const STILL_LOCKED = new Error("still locked");

/** WaitForContainerConfigUnlock(ignoreErrorResponse=true), as the clone path calls it: errors are polled through. */
export async function waitForUnlock(ctx: OpContext, node: string, vmid: number): Promise<void> {
  try {
    await poll(ctx, () => true, async () => {
      const s = await getStatus(ctx, node, vmid);
      if (s.lock) throw STILL_LOCKED;
    });
  } catch (err) {
    if (isDeadline(ctx.signal)) throw new Error(`timeout while waiting for container ${vmid} configuration to become unlocked`);
    if (ctx.signal.aborted) throw err;
    // ignoreErrorResponse: bpg gives up silently on other errors
  }
}

/** WaitForContainerStatus; status "" polls until the status call fails (the container is gone). */
export async function waitForStatus(ctx: OpContext, node: string, vmid: number, want: string): Promise<void> {
  const unexpected = new Error(`unexpected status "${want}"`);
  try {
    await poll(ctx, (e) => e === unexpected, async () => {
      const s = await getStatus(ctx, node, vmid);
      if ((s.status ?? "") !== want) throw unexpected;
    });
  } catch (err) {
    if (isDeadline(ctx.signal)) throw new Error(`timeout while waiting for container ${vmid} to enter the status "${want}"`);
    throw wrap(`error waiting for container ${vmid} to enter the status "${want}"`, err);
  }
}

/** containers.StartContainer: nothing when running; POST status/start, wait for the task, poll until running. */
export async function startContainer(ctx: OpContext, node: string, vmid: number): Promise<TaskResult> {
  const s = await getStatus(ctx, node, vmid).catch((err) => {
    throw wrap("error retrieving container status", err);
  });
  if (s.status === "running") return { warnings: [] };
  let already = false;
  const result = await doTask(ctx, { name: "container start", retryIf: (e) => e.message.includes("got no worker upid") }, async () => {
    try {
      const upid = await ctx.client.request<string | null>("POST", ctPath(node, vmid, "status/start"), undefined, ctx.signal);
      if (!upid) throw new Error("the server did not include a data object in the response");
      return upid;
    } catch (err) {
      if (/already running/.test((err as Error).message)) {
        already = true;
        return null;
      }
      throw wrap("error starting container", err);
    }
  });
  if (already) return { warnings: [] };
  await waitForStatus(ctx, node, vmid, "running");
  return result;
}

/** containers.ShutdownContainer (forceStop: the delete path's way of stopping). */
export async function shutdownContainer(ctx: OpContext, node: string, vmid: number, timeoutSec: number): Promise<TaskResult> {
  let upid: string | null;
  try {
    upid = await ctx.client.request<string | null>("POST", ctPath(node, vmid, "status/shutdown"), { forceStop: true, timeout: timeoutSec }, ctx.signal);
  } catch (err) {
    throw wrap("error shutting down container", err);
  }
  if (!upid) throw new Error("the server did not include a data object in the response");
  return waitForTask(ctx, upid);
}

/** containers.DeleteContainer: plain DELETE; transient errors retried unless the container is gone. */
export function deleteContainer(ctx: OpContext, node: string, vmid: number): Promise<TaskResult> {
  return doTask(ctx, { name: "container delete", retryIf: (e) => isTransient(e) && !isNotFound(e) }, async () => {
    try {
      return await ctx.client.request<string | null>("DELETE", ctPath(node, vmid), undefined, ctx.signal);
    } catch (err) {
      throw wrap("error deleting container", err);
    }
  });
}

export interface NetIface {
  name: string;
  "ip-addresses"?: Array<{ "ip-address": string; "ip-address-type": string }>;
}

/** WaitForContainerNetworkInterfaces: poll /interfaces until a global unicast address shows (bpg: 10 s). */
export async function waitForInterfaces(ctx: OpContext, node: string, vmid: number): Promise<NetIface[]> {
  const deadline = Date.now() + scaled(ctx, 10_000);
  for (;;) {
    let ifaces: NetIface[] | null = null;
    let retry = false;
    try {
      ifaces = await ctx.client.request<NetIface[] | null>("GET", ctPath(node, vmid, "interfaces"), undefined, ctx.signal);
      if (!ifaces) retry = true;
      else if (!ifaces.some((i) => i.name !== "lo" && (i["ip-addresses"] ?? []).some((a) => isGlobalUnicast(a["ip-address"])))) retry = true;
    } catch (err) {
      if (httpErrorOf(err)?.code !== 400) throw wrap("error while waiting for container IP addresses", wrap("error retrieving container network interfaces", err));
      retry = true;
    }
    if (!retry && ifaces) return ifaces;
    if (Date.now() >= deadline) throw new Error("timeout while waiting for container IP addresses");
    await pause(ctx, ctx.pollMs);
  }
}

function isGlobalUnicast(ip: string): boolean {
  const a = ip.split("/")[0].toLowerCase();
  if (a.includes(":")) return !(a === "::1" || a.startsWith("fe80") || a === "::");
  return !(a.startsWith("127.") || a.startsWith("169.254.") || a === "0.0.0.0" || a.startsWith("224."));
}

// ---------------------------------------------------------------- VM ids

const ID_LOCK = "pve-sim-provider-id-gen.lock";
const ID_SEQ = "pve-sim-provider-id-gen.seq";
/** bpg's idGeneratorContentionWindow: a sequence file older than this is forgotten. */
const CONTENTION_WINDOW_MS = 5_000;

/**
 * IDGenerator.NextID: /cluster/nextid does not reserve anything, so bpg serialises id allocation
 * across provider processes on one machine with a lock file and remembers the last id it handed
 * out, asking PVE for that + 1 while the contention window lasts.
 */
export async function nextVmid(ctx: OpContext): Promise<number> {
  const dir = tmpdir();
  const release = await lockFile(join(dir, ID_LOCK));
  try {
    let want: number | null = null;
    try {
      const st = await stat(join(dir, ID_SEQ));
      if (Date.now() - st.mtimeMs <= CONTENTION_WINDOW_MS) want = Number.parseInt(await readFile(join(dir, ID_SEQ), "utf8"), 10) + 1;
    } catch {
      // no sequence yet
    }
    const deadline = Date.now() + CONTENTION_WINDOW_MS + 1_000;
    const errors: Error[] = [];
    for (;;) {
      try {
        const id = await getNextId(ctx, Number.isFinite(want) ? want : null);
        await writeFile(join(dir, ID_SEQ), String(id));
        return id;
      } catch (err) {
        const e = err as Error;
        errors.push(e);
        if (httpErrorOf(e)?.code === 403 || Date.now() > deadline || ctx.signal.aborted) {
          throw new Error(`unable to retrieve the next available VM identifier: ${errors.map((x) => x.message).join("\n")}`);
        }
        if (e.message.includes("already exists") && want !== null) want = await getNextId(ctx, null).catch(() => want);
        await pause(ctx, 200);
      }
    }
  } finally {
    await release();
  }
}

async function getNextId(ctx: OpContext, vmid: number | null): Promise<number> {
  try {
    const data = await ctx.client.request<string | number | null>("GET", "cluster/nextid", vmid !== null ? { vmid } : undefined, ctx.signal);
    const id = Number(data);
    if (!Number.isInteger(id)) throw new Error("the server did not include a data object in the response");
    return id;
  } catch (err) {
    throw wrap("error retrieving next VM ID", err);
  }
}

/** An exclusive lock by O_EXCL create; a lock older than 30 s is taken to be left by a dead process. */
async function lockFile(path: string): Promise<() => Promise<void>> {
  await mkdir(tmpdir(), { recursive: true });
  for (;;) {
    try {
      const fh = await open(path, "wx");
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => unlink(path).catch(() => undefined);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const st = await stat(path).catch(() => null);
      if (st && Date.now() - st.mtimeMs > 30_000) await unlink(path).catch(() => undefined);
      await sleep(10);
    }
  }
}
