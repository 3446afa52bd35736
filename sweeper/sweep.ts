// The sweeper: reconciles our records × Proxmox (containers marked as ours) × GitHub registrations
// we made × stack dirs, so nothing leaks whatever failed. One pass is idempotent; every finding is
// logged with what was done about it and why. Nothing is ours by its name (listener/lifecycle/ownership.ts):
// a registration is ours by the id we recorded or our controller label, a container by our
// controller tag (or description) or the vmid we recorded for it.
import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { parseScopeKey, type GitHubAdapter } from "../listener/adapters/github/github.js";
import type { ProxmoxApi, ContainerStatus } from "../listener/adapters/proxmox/proxmox.js";
import { LIVE_STATES, type RunnerRow, type Store } from "../listener/store/store.js";
import type { TerraformLike } from "../listener/lifecycle/pipeline.js";
import { controllerMarker, hasLabel, PVE_RUNNERS_TAG, RUNNER_DESCRIPTION_PREFIX, tagsOf } from "../listener/lifecycle/ownership.js";

export interface SweepSettings {
  /** Nodes to look for runner containers on: the template copies' and every live runner's. */
  nodes: () => string[];
  stateDir: string;
  /** Every registration scope we may have runners in (e.g. "repo:acme/app", "org:acme"). */
  scopes: () => string[];
  /** No container lives longer than this, busy or not. */
  hardTtlMs: number;
  /** A lock held longer than this is reported (never forced). */
  lockLimitMs: number;
  /** Registrations and containers younger than this are left alone: they may be mid-creation. */
  graceMs: number;
}

export interface SweepDeps {
  store: Store;
  github: GitHubAdapter;
  pve: ProxmoxApi;
  terraform: TerraformLike;
  settings: SweepSettings;
  logger: Logger;
  /** Hands a runner back to the pipeline (it drives done → destroying → gone). */
  wake?: (runner: string) => void;
  /** Before a container's stack is destroyed (env delivery: remove a JIT config a refresh would read into state). */
  beforeStackDestroy?: (node: string, vmid: number) => Promise<void>;
}

export type SweepAction =
  | { kind: "destroy-container"; vmid: number; name: string; reason: string; via: "stack" | "api" }
  | { kind: "mark-done"; runner: string; reason: string }
  | { kind: "delete-registration"; scope: string; id: number; name: string; reason: string }
  | { kind: "remove-stack"; dir: string; reason: string }
  | { kind: "report-lock"; vmid: number; lock: string; reason: string };

/** What an action is about: a runner name, a stack dir or a vmid. */
export function sweepActionTarget(a: SweepAction): string {
  return "name" in a ? a.name : "runner" in a ? a.runner : "dir" in a ? a.dir : String(a.vmid);
}

export interface SweepReport {
  dryRun: boolean;
  containers: number;
  registrations: number;
  stackDirs: number;
  /** Containers tagged pve-runners and registrations seen that are not ours: left alone. */
  foreign: number;
  actions: SweepAction[];
  errors: string[];
}

/**
 * Ours: marked with our controller id (tags; or the description, for a clone cut short before its
 * tags), or at the vmid we recorded for a runner of that name and tagged or described as a runner
 * (containers made before the controller id existed). A container is never ours by its name alone.
 */
async function ourContainers(d: SweepDeps, node: string, marker: string, foreign: { n: number }): Promise<Array<ContainerStatus & { node: string }>> {
  const out: Array<ContainerStatus & { node: string }> = [];
  for (const c of await d.pve.listContainers(node)) {
    if (c.template || typeof c.name !== "string") continue;
    const tags = tagsOf(c.tags);
    const tagged = tags.includes(PVE_RUNNERS_TAG);
    if (tagged && tags.includes(marker)) {
      out.push({ ...c, node });
      continue;
    }
    // Only a runner name we recorded can be ours without the marker tag (one API call per container).
    const r = d.store.getRunner(c.name);
    if (r && tagged && r.vmid === c.vmid) {
      out.push({ ...c, node });
      continue;
    }
    if (r && !tagged) {
      // No tags yet: a clone cut short before its config PUT. Its description came with the clone.
      const conf = await d.pve.containerConfig(node, c.vmid).catch(() => ({}) as Record<string, string | number>);
      const desc = String(conf.description ?? "");
      if (desc.startsWith(`${RUNNER_DESCRIPTION_PREFIX}${c.name} `) && (r.vmid === c.vmid || desc.includes(marker))) {
        out.push({ ...c, node });
        continue;
      }
    }
    if (tagged) foreign.n++;
  }
  return out;
}

export async function sweep(d: SweepDeps, opts: { dryRun?: boolean } = {}): Promise<SweepReport> {
  const dryRun = opts.dryRun ?? false;
  const log = d.logger.child({ part: "sweeper", dryRun });
  const s = d.settings;
  const now = Date.now();
  const report: SweepReport = { dryRun, containers: 0, registrations: 0, stackDirs: 0, foreign: 0, actions: [], errors: [] };
  const marker = controllerMarker(d.store.controllerId());
  const foreign = { n: 0 };
  const act = async (a: SweepAction, fn: () => Promise<void>) => {
    report.actions.push(a);
    log.info({ ...a }, dryRun ? `would ${a.kind}` : a.kind);
    if (dryRun) return;
    try {
      await fn();
    } catch (err) {
      const msg = `${a.kind} ${sweepActionTarget(a)}: ${(err as Error).message}`;
      report.errors.push(msg);
      log.warn({ err: (err as Error).message }, `${a.kind} failed; the next pass retries`);
    }
  };
  const live = (r?: RunnerRow) => !!r && (LIVE_STATES as string[]).includes(r.state);
  // Sightings of unrecorded things of ours, kept across passes (and restarts) in the store.
  const seen = new Set<string>();
  const young = (key: string) => {
    seen.add(key);
    return now - d.store.firstSeen(key, now) < s.graceMs;
  };

  // 1. Containers.
  // Node by node: one node down must not stop the sweep of the others.
  const containers: Array<ContainerStatus & { node: string }> = [];
  const unreachable = new Set<string>();
  for (const node of s.nodes()) {
    try {
      containers.push(...(await ourContainers(d, node, marker, foreign)));
    } catch (err) {
      unreachable.add(node);
      report.errors.push(`list containers on ${node}: ${(err as Error).message}`);
      log.warn({ node, err: (err as Error).message }, "could not list a node's containers; skipped this pass");
    }
  }
  report.containers = containers.length;
  // A node that did not answer keeps its sightings: its containers' clocks run on.
  const reachable = s.nodes().filter((n) => !unreachable.has(n));
  const containerNames = new Set(containers.map((c) => c.name!));
  for (const c of containers) {
    const name = c.name!;
    const r = d.store.getRunner(name);
    const stackDir = join(s.stateDir, "runners", name);
    const hasStack = await stat(join(stackDir, "stacks", "runner", "terraform.tfstate")).then(() => true, () => false);
    const destroy = (reason: string) =>
      act({ kind: "destroy-container", vmid: c.vmid, name, reason, via: hasStack ? "stack" : "api" }, async () => {
        if (hasStack) {
          await d.beforeStackDestroy?.(c.node, c.vmid);
          await d.terraform.destroy(join(stackDir, "stacks", "runner"), { runner: name });
          await rm(stackDir, { recursive: true, force: true });
        } else {
          if (c.status === "running") await d.pve.stop(c.node, c.vmid);
          await d.pve.destroy(c.node, c.vmid);
        }
      });
    if (c.lock) {
      const since = r ? now - r.stateSince : Infinity;
      if (since > s.lockLimitMs) await act({ kind: "report-lock", vmid: c.vmid, lock: c.lock, reason: `locked (${c.lock}) past ${Math.round(s.lockLimitMs / 1000)} s: needs an operator` }, async () => {});
      continue; // never force a lock
    }
    if (live(r) && r!.vmid !== null && c.vmid !== r!.vmid) {
      // Named like a live runner but not at its vmid (recorded before its clone): a duplicate, e.g.
      // an earlier clone cut short by a restart. Removed through the API at once (the stack is the
      // live runner's and must not be touched); no grace, as the vmid was recorded before any clone.
      await act({ kind: "destroy-container", vmid: c.vmid, name, reason: `not the vmid of live runner ${name} (${r!.vmid})`, via: "api" }, async () => {
        if (c.status === "running") await d.pve.stop(c.node, c.vmid);
        await d.pve.destroy(c.node, c.vmid);
      });
      continue;
    }
    if (!live(r)) {
      // A record that just left its live states is younger than the grace. A container of ours
      // with no record may be mid-creation by a listener that just restarted: it too gets the
      // grace, counted from the first sweep that saw it (PVE tells no creation time).
      if (r && now - r.stateSince < s.graceMs) continue;
      if (!r && young(`container:${c.node}:${c.vmid}:${name}`)) {
        log.info({ runner: name, vmid: c.vmid, node: c.node }, "container of ours with no record: left alone until it is older than sweeper.grace");
        continue;
      }
      await destroy(r ? `runner record is ${r.state}` : "no record of this container");
      continue;
    }
    if (now - r!.createdAt > s.hardTtlMs) {
      await act({ kind: "mark-done", runner: name, reason: "older than the hard TTL" }, async () => {
        d.store.setRunnerState(name, "done", { lastError: "hard TTL" });
        d.wake?.(name);
      });
      continue;
    }
    if (c.status === "stopped" && ["booting", "idle", "busy"].includes(r!.state) && now - r!.stateSince > s.graceMs) {
      // The template's unit powers the guest off after its one job: the job is over, whatever the webhooks said.
      await act({ kind: "mark-done", runner: name, reason: "guest powered off" }, async () => {
        d.store.setRunnerState(name, "done", {}, ["booting", "idle", "busy"]);
        d.wake?.(name);
      });
    }
  }

  for (const node of reachable) d.store.forgetSightings(`container:${node}:`, seen);

  // 2. GitHub registrations we made: our controller label, or an id we minted and recorded.
  for (const key of s.scopes()) {
    let regs;
    try {
      regs = await d.github.listRunners(parseScopeKey(key));
    } catch (err) {
      report.errors.push(`list runners of ${key}: ${(err as Error).message}`);
      continue;
    }
    for (const g of regs) {
      if (!hasLabel(g.labels, marker) && !d.store.mintedGithubRunnerId(g.id)) {
        foreign.n++;
        continue;
      }
      report.registrations++;
      const r = d.store.getRunner(g.name);
      if (live(r) && (containerNames.has(g.name) || ["requested", "provisioning"].includes(r!.state))) continue;
      // Its node did not answer: its container may well be there.
      if (live(r) && r!.node && unreachable.has(r!.node)) continue;
      if (r && live(r) && now - r.stateSince < s.graceMs) continue;
      // Ours by our label with no record at all: it may be one a listener minted just before a restart.
      if (!r && young(`registration:${key}:${g.id}`)) {
        log.info({ runner: g.name, scope: key }, "registration of ours with no record: left alone until it is older than sweeper.grace");
        continue;
      }
      await act({ kind: "delete-registration", scope: key, id: g.id, name: g.name, reason: live(r) ? "its container is gone" : "no live runner of ours has this name" }, async () => {
        const outcome = await d.github.deleteRunner(parseScopeKey(key), g.id);
        if (outcome === "busy") log.warn({ runner: g.name }, "registration is running a job: kept");
      });
    }
    d.store.forgetSightings(`registration:${key}:`, seen);
  }

  // 3. Stack dirs with neither a live record nor a container.
  const dirs = await readdir(join(s.stateDir, "runners")).catch(() => [] as string[]);
  report.stackDirs = dirs.length;
  for (const name of dirs) {
    const r = d.store.getRunner(name);
    if (live(r) || containerNames.has(name)) continue;
    const dir = join(s.stateDir, "runners", name);
    await act({ kind: "remove-stack", dir, reason: r ? `runner record is ${r.state}` : "no record" }, async () => {
      await d.terraform.destroy(join(dir, "stacks", "runner"), { runner: name });
      await rm(dir, { recursive: true, force: true });
    });
  }
  report.foreign = foreign.n;
  log.info({ containers: report.containers, registrations: report.registrations, stackDirs: report.stackDirs, foreign: report.foreign, actions: report.actions.length, errors: report.errors.length }, "sweep done");
  return report;
}
