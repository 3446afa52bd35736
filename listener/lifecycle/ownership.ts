// What marks a runner as this installation's. A name proves nothing: another team (or another
// pve-runners installation on the same cluster or org) may name its runners `runner-*` too. Ours
// carry this installation's controller id (made once, kept in the store): as a label on every GitHub
// registration we mint and as a tag (and in the description) on every container we clone. GARM
// marks its runners the same way (a controller id label).
import { randomBytes } from "node:crypto";

/** Every runner container carries it; PVE tags are lower-case (get_unique_tags). */
export const PVE_RUNNERS_TAG = "pve-runners";
/** The clone call sets the description (tags follow in the config PUT, so a clone cut short has none). */
export const RUNNER_DESCRIPTION_PREFIX = "pve-runners ephemeral runner ";

export const DEFAULT_NAME_PREFIX = "runner-";
/**
 * A runner's name is its container's hostname (a DNS label: at most 63 characters, PVE's dns-name
 * format) and its GitHub runner name: lower-case letters, digits and '-', starting with a letter.
 * The prefix leaves room for the 8 random hex digits and stays within what the root delivery
 * helpers (systemd/deliver-jit*) accept: ^[a-z][a-z0-9-]{1,62}$.
 */
export const NAME_PREFIX_PATTERN = /^[a-z][a-z0-9-]{0,31}$/;

const CONTROLLER_ID = /^[0-9a-f]{16}$/;

export function newControllerId(): string {
  return randomBytes(8).toString("hex");
}

export function isControllerId(s: string): boolean {
  return CONTROLLER_ID.test(s);
}

/**
 * The marker: a GitHub runner label and a PVE tag at once (both allow it: PVE's pve-tag format is
 * [a-z0-9_][a-z0-9_+.-]*). A job never asks for it, and GitHub gives a job to a runner whose
 * labels include all the job's, so an extra label changes no assignment.
 */
export function controllerMarker(controllerId: string): string {
  return `${CONTROLLER_MARKER_PREFIX}${controllerId}`;
}
export const CONTROLLER_MARKER_PREFIX = "pve-runners-ctl-";

export function newRunnerName(prefix: string): string {
  return `${prefix}${randomBytes(4).toString("hex")}`;
}

/** GitHub labels compare case-insensitively. */
export function hasLabel(labels: readonly string[], label: string): boolean {
  const want = label.toLowerCase();
  return labels.some((l) => l.toLowerCase() === want);
}

/** A container's tags as PVE lists them (';'-joined; ',' and ' ' are accepted on input). */
export function tagsOf(tags: string | undefined): string[] {
  return (tags ?? "").split(/[;,\s]+/).filter(Boolean).map((t) => t.toLowerCase());
}

/** What PVE says about the guest at a runner's recorded vmid (GET /nodes/{node}/lxc/{vmid}/config). */
export interface GuestConfig {
  hostname?: unknown;
  tags?: unknown;
  description?: unknown;
  template?: unknown;
}

/**
 * Whether the guest at a runner's recorded vmid is that runner's container, by the sweeper's rules
 * (sweeper/sweep.ts ourContainers) for a container at the vmid we recorded: tagged pve-runners with
 * the runner's name as hostname, or, for a clone cut short before its tags, described as this
 * runner's by the clone call. Never a template, never by the vmid alone.
 */
export function isRunnersContainer(conf: GuestConfig, runnerName: string): boolean {
  if (conf.template === 1 || conf.template === "1") return false;
  const tags = tagsOf(typeof conf.tags === "string" ? conf.tags : undefined);
  if (tags.includes(PVE_RUNNERS_TAG)) return conf.hostname === runnerName;
  const desc = typeof conf.description === "string" ? conf.description : "";
  return desc.startsWith(`${RUNNER_DESCRIPTION_PREFIX}${runnerName} `);
}
