// `pve-runners template deploy --replace`: blue/green. Each template copy is built again under a new
// vmid, in a work dir (and so a terraform state) of its own, next to the old one, which this apply
// never touches; then the running listener is told (admin API), places new runners on it at once,
// and destroys the old template once no runner depends on it (listener/templates/template-rotation.ts).
import { join } from "node:path";
import type { TemplateStackSpec } from "../stacks/template-stack.js";
import type { TemplatesView } from "../listener/templates/template-rotation.js";
import { table } from "./admin.js";

export interface ReplaceDeps {
  /** One admin API call to the running listener (cli/admin.ts adminRequest). */
  admin<T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T>;
  /** Synthesizes the template stack for `spec` into `dir` and applies it. */
  build(spec: TemplateStackSpec, dir: string): Promise<void>;
  out(line: string): void;
}

export interface ReplaceOptions {
  /** The template spec from the config (its node and vmid are replaced per copy). */
  spec: TemplateStackSpec;
  /** The template work dir: each new build goes to <workDir>/template-<vmid>. */
  workDir: string;
  /** Only this copy ("node/vmid", as configured or as active now); default every copy. */
  copy?: string;
  /** The new vmid (only with one copy); default the first free one above the old (the listener finds it). */
  vmid?: number;
}

/** The work dir of the build of template `vmid`: its own terraform state, so no apply ever plans to destroy another template. */
export const replacementDir = (workDir: string, vmid: number) => join(workDir, `template-${vmid}`);

export async function replaceTemplates(deps: ReplaceDeps, o: ReplaceOptions): Promise<string[]> {
  const view = await deps.admin<TemplatesView>("GET", "/api/templates");
  const targets = o.copy ? view.copies.filter((c) => c.configured === o.copy || c.active === o.copy) : view.copies;
  if (targets.length === 0) throw new Error(`--copy ${o.copy} is none of the template copies (${view.copies.map((c) => c.active).join(", ")})`);
  if (o.vmid !== undefined && targets.length > 1) throw new Error(`--vmid names one template: add --copy (one of ${targets.map((c) => c.active).join(", ")})`);
  const replaced: string[] = [];
  // One copy after the other: each new vmid is asked for once the previous one exists.
  for (const c of targets) {
    const vmid = o.vmid ?? (await deps.admin<{ vmid: number }>("GET", `/api/templates/vmid?copy=${encodeURIComponent(c.active)}`)).vmid;
    deps.out(`template: building ${c.sourceNode}/${vmid} to replace ${c.active}`);
    await deps.build({ ...o.spec, node: c.sourceNode, vmid }, replacementDir(o.workDir, vmid));
    const r = await deps.admin<{ to: string }>("POST", "/api/templates/replace", { from: c.active, vmid });
    deps.out(`template: ${c.active} replaced by ${r.to}: new runners are cloned from it; the old one is destroyed once no runner depends on it`);
    replaced.push(r.to);
  }
  return replaced;
}

/** `pve-runners template list`: each copy as configured and as active now, then each replacement and what still holds it. */
export function templatesText(v: TemplatesView): string {
  const copies = table(["CONFIGURED", "ACTIVE", "RUNNERS LAND ON"], v.copies.map((c) => [c.configured, c.active, c.node]));
  if (v.replacements.length === 0) return copies;
  const reps = table(
    ["REPLACED", "BY", "AT", "STATE"],
    v.replacements.map((r) => [r.from, r.to, new Date(r.replacedAt).toISOString(), r.destroyedAt !== null ? `destroyed ${new Date(r.destroyedAt).toISOString()}` : `kept: ${r.runners} runner(s) on it`]),
  );
  return `${copies}\n${reps}`;
}
