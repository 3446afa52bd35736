// Blue/green template replacement. `pve-runners template deploy --replace` builds a new template
// under a new vmid next to the old one and then tells the running listener (admin API,
// POST /api/templates/replace). From then on runners are placed on the new template; the old one
// stays while any runner depends on it (a linked clone keeps its base volume: PVE refuses to delete
// it, pve-storage PVE/Storage.pm vdisk_free: "base volume … is still in use by linked clones") and is destroyed through the
// API once none does.
//
// Config and records: proxmox.templateVmid / proxmox.templates name each copy as first built. The
// store records each replacement ("from" → node/vmid); the copy runners clone from is the configured
// one followed through its replacements, so a restart keeps the new template, and a config edited to
// name the new vmid itself resolves to it as well.
//
// A vmid given over the API is trusted only after PVE shows it as a template on the replaced copy's
// own node, with our template tag, in our pool, outside the runners' vmid range, and held by no
// runner. The same is checked again before anything is destroyed.
import type { Logger } from "pino";
import type { TemplateCopy } from "../lifecycle/placement.js";
import type { Store, TemplateReplacement } from "../store/store.js";
import type { VmidRange } from "../lifecycle/vmids.js";
import { TEMPLATE_TAG } from "../../stacks/template-stack.js";


/** What rotation needs of PVE (listener/adapters/proxmox/proxmox.ts ProxmoxApi). */
export interface TemplatePve {
  containerConfig(node: string, vmid: number): Promise<Record<string, string | number>>;
  clusterResources(type: "vm"): Promise<Array<Record<string, unknown>>>;
  /** GET /pools?poolid=X&type=lxc: the pool's containers (PVE answers it without Pool.Audit). */
  poolMembers(pool: string): Promise<Array<Record<string, unknown>>>;
  vmidFree(vmid: number): Promise<boolean>;
  /** GET /nodes/{node}/lxc/{vmid}/firewall/rules (VM.Audit). */
  firewallRules(node: string, vmid: number): Promise<Array<Record<string, unknown>>>;
  destroy(node: string, vmid: number): Promise<void>;
}

export interface TemplateRotationOptions {
  store: Store;
  pve: TemplatePve;
  /** The copies the config names (placement.ts templateCopies). */
  configured: () => TemplateCopy[];
  /** proxmox.pool: a template must be in it (unset: not checked). */
  pool?: string;
  /** proxmox.vmids: never a template's. */
  runnerVmids: () => VmidRange;
  logger: Logger;
}

/** A refusal of bad input: one line, for a 4xx answer. */
export class TemplateRefused extends Error {}

export interface TemplatesView {
  copies: Array<{ configured: string; active: string; node: string; sourceNode: string; vmid: number }>;
  replacements: Array<TemplateReplacement & { to: string; runners: number }>;
}

const keyOf = (node: string, vmid: number) => `${node}/${vmid}`;

/** Each configured copy followed through its recorded replacements (the listener; `pve-runners check`). */
export function followReplacements(configured: TemplateCopy[], replacements: Array<{ from: string; toNode: string; toVmid: number }>): TemplateCopy[] {
  const next = new Map(replacements.map((r) => [r.from, r]));
  return configured.map((c) => {
    let copy = c;
    const seen = new Set<string>();
    for (let r = next.get(copy.key); r && !seen.has(copy.key); r = next.get(copy.key)) {
      seen.add(copy.key);
      // A new build is made on the node of the template it replaces: runners still land where they did.
      copy = { node: copy.node, sourceNode: r.toNode, vmid: r.toVmid, key: keyOf(r.toNode, r.toVmid) };
    }
    return copy;
  });
}

export class TemplateRotation {
  private readonly log: Logger;
  private retiring: Promise<string[]> | null = null;

  constructor(private readonly o: TemplateRotationOptions) {
    this.log = o.logger;
  }

  /** The copy each configured copy is now: followed through its recorded replacements. */
  effective(configured: TemplateCopy[] = this.o.configured()): TemplateCopy[] {
    return followReplacements(configured, this.o.store.templateReplacements());
  }

  /** Every template key a runner may be cloned from or still depend on: active and not yet destroyed. */
  knownKeys(): string[] {
    const reps = this.o.store.templateReplacements();
    return [...new Set([...this.o.configured().map((c) => c.key), ...this.effective().map((c) => c.key), ...reps.filter((r) => r.destroyedAt === null).map((r) => r.from), ...reps.map((r) => keyOf(r.toNode, r.toVmid))])];
  }

  view(): TemplatesView {
    const configured = this.o.configured();
    const active = this.effective(configured);
    return {
      copies: configured.map((c, i) => ({ configured: c.key, active: active[i].key, node: active[i].node, sourceNode: active[i].sourceNode, vmid: active[i].vmid })),
      replacements: this.o.store.templateReplacements().map((r) => ({ ...r, to: keyOf(r.toNode, r.toVmid), runners: this.o.store.runnersOnTemplate(r.from) })),
    };
  }

  /** A vmid for a new build of `copy` (an active key): the first free one above it outside the runners' range. */
  async suggestVmid(copy: string): Promise<number> {
    const c = this.effective().find((x) => x.key === copy);
    if (!c) throw new TemplateRefused(`${copy} is not an active template copy`);
    const range = this.o.runnerVmids();
    const taken = new Set([...this.knownKeys().map((k) => Number(k.split("/")[1])), ...this.o.store.heldVmids()]);
    for (let vmid = c.vmid + 1, tries = 0; vmid <= 999_999_999 && tries < 200; vmid++) {
      if (vmid >= range.first && vmid <= range.last) vmid = range.last + 1;
      if (taken.has(vmid)) continue;
      tries++;
      if (await this.o.pve.vmidFree(vmid)) return vmid;
    }
    throw new TemplateRefused(`no free vmid found above ${c.vmid}: give one with --vmid`);
  }

  /**
   * Records that runners clone from `vmid` (on the node of the active copy `from`) from now on,
   * once PVE shows it is one of our templates. Returns the new copy.
   */
  async replace(from: string, vmid: number): Promise<TemplateCopy> {
    const copies = this.effective();
    const old = copies.find((c) => c.key === from);
    if (!old) throw new TemplateRefused(`${from} is not an active template copy (active: ${copies.map((c) => c.key).join(", ")})`);
    if (!Number.isInteger(vmid) || vmid < 100 || vmid > 999_999_999) throw new TemplateRefused(`vmid must be an integer from 100 to 999999999`);
    const range = this.o.runnerVmids();
    if (vmid >= range.first && vmid <= range.last) throw new TemplateRefused(`vmid ${vmid} is in the runners' range ${range.first}-${range.last}`);
    if (this.knownKeys().some((k) => Number(k.split("/")[1]) === vmid)) throw new TemplateRefused(`vmid ${vmid} is a template copy already recorded`);
    if (this.o.store.heldVmids().has(vmid)) throw new TemplateRefused(`vmid ${vmid} is a runner's`);
    await this.assertOurTemplate(old.sourceNode, vmid);
    await this.assertSameGroups(old, vmid);
    // Another replacement of the same copy may have been recorded while PVE was asked.
    if (!this.effective().some((c) => c.key === from)) throw new TemplateRefused(`${from} was replaced meanwhile`);
    if (this.knownKeys().some((k) => Number(k.split("/")[1]) === vmid)) throw new TemplateRefused(`vmid ${vmid} is a template copy already recorded`);
    this.o.store.recordTemplateReplacement(from, old.sourceNode, vmid);
    const now = this.effective().find((c) => c.sourceNode === old.sourceNode && c.vmid === vmid)!;
    this.log.info({ from, to: now.key }, "template replaced: new runners are cloned from the new one; the old one goes once no runner depends on it");
    return now;
  }

  /** Destroys every replaced template no runner depends on any more (one pass at a time). Returns the keys destroyed. */
  retireUnused(): Promise<string[]> {
    this.retiring ??= this.retirePass().finally(() => (this.retiring = null));
    return this.retiring;
  }

  /** Waits for a pass in flight (stop: it must not outlive the store). */
  async settle(): Promise<void> {
    await this.retiring?.catch(() => undefined);
  }

  private async retirePass(): Promise<string[]> {
    const active = new Set(this.effective().map((c) => c.key));
    const done: string[] = [];
    for (const r of this.o.store.templateReplacements()) {
      if (r.destroyedAt !== null || active.has(r.from)) continue;
      const users = this.o.store.runnersOnTemplate(r.from);
      if (users > 0) continue;
      const [node, id] = r.from.split("/");
      const vmid = Number(id);
      try {
        try {
          await this.assertOurTemplate(node, vmid);
        } catch (err) {
          if (err instanceof TemplateRefused && /does not exist/.test(err.message)) {
            this.o.store.markTemplateDestroyed(r.from);
            this.log.info({ template: r.from }, "replaced template already gone");
            continue;
          }
          throw err;
        }
        await this.o.pve.destroy(node, vmid);
        this.o.store.markTemplateDestroyed(r.from);
        done.push(r.from);
        this.log.info({ template: r.from }, "replaced template destroyed: no runner depends on it any more");
      } catch (err) {
        // Linked clones we do not know of (an orphan the sweeper has yet to remove) keep it: next pass.
        this.log.warn({ template: r.from, err: err instanceof Error ? err.message : String(err) }, "replaced template not destroyed yet; retrying later");
      }
    }
    return done;
  }

  /**
   * Clones take their template's firewall file (pve-container clone_vm → clone_vmfw_conf): a new
   * template without the security groups of the old one (pveum-setup --firewall) would let its
   * runners out to the private ranges. Refused until it has them.
   */
  private async assertSameGroups(old: TemplateCopy, vmid: number): Promise<void> {
    const groups = async (v: number) =>
      new Set((await this.o.pve.firewallRules(old.sourceNode, v)).filter((r) => r.type === "group" && Number(r.enable ?? 1) === 1).map((r) => `${String(r.action)} ${String(r.iface ?? "")}`.trim()));
    const want = await groups(old.vmid);
    const have = await groups(vmid);
    const missing = [...want].filter((g) => !have.has(g));
    if (missing.length) throw new TemplateRefused(`CT ${vmid} lacks the firewall security group(s) ${missing.join(", ")} of ${old.key}: run pveum-setup --firewall --template-vmid ${vmid} first`);
  }

  /** Throws TemplateRefused unless node/vmid is a template with our tag, on that node, in our pool. */
  private async assertOurTemplate(node: string, vmid: number): Promise<void> {
    const rows = this.o.pool ? await this.o.pve.poolMembers(this.o.pool) : await this.o.pve.clusterResources("vm");
    const row = rows.find((g) => Number(g.vmid) === vmid);
    if (!row) throw new TemplateRefused(`CT ${vmid} does not exist${this.o.pool ? ` in pool ${this.o.pool}` : ""}`);
    if (row.type !== "lxc") throw new TemplateRefused(`guest ${vmid} is not a container`);
    if (row.node !== node) throw new TemplateRefused(`CT ${vmid} is on ${String(row.node)}, not on ${node}`);
    const conf = await this.o.pve.containerConfig(node, vmid);
    if (String(conf.template) !== "1") throw new TemplateRefused(`CT ${vmid} is not a template`);
    const tags = String(conf.tags ?? "").split(/[;, ]/);
    if (!tags.includes(TEMPLATE_TAG)) throw new TemplateRefused(`CT ${vmid} has no ${TEMPLATE_TAG} tag`);
  }
}
