// `demo --build-template`: the runner template built the way an operator builds it — the template
// stack (stacks/template-stack.ts) synthesized from the world's config and applied by the real
// terraform as root@pam with a password, through the provider stand-in and the `pct` stand-in —
// against a simulator that starts without any template.
import { join } from "node:path";
import type { Logger } from "pino";
import { Terraform, TerraformError } from "../listener/adapters/terraform/terraform.js";
import { SIM_ROOT_PASSWORD, TEMPLATE_BUILD_MARKER } from "../sim/pve/index.js";
import type { World } from "../sim/world.js";
import { templateSpec } from "../stacks/main.js";
import { synthTemplateStack, type TemplateStackSpec } from "../stacks/template-stack.js";

export interface BuiltTemplate {
  node: string;
  vmid: number;
  /** The runner version provision.sh installed (its record in the template). */
  runnerVersion: string;
}

/**
 * Synthesizes the template stack for `spec` into `dir` and applies it on the world as an operator
 * does: real terraform, root@pam with the password, the world's `pct` stand-in first on PATH.
 */
export async function applyTemplateStack(world: World, spec: TemplateStackSpec, dir: string, logger: Logger): Promise<void> {
  const stack = synthTemplateStack(dir, spec);
  const terraform = new Terraform({
    binary: world.config.terraform.binary,
    cliConfigFile: world.config.terraform.cliConfigFile,
    sharedInitDir: join(dir, "terraform-init"),
    // The provisioners' `pct` is the world's stand-in (first on PATH); credentials by env only.
    env: { ...world.terraformEnv, PATH: world.helperEnv.PATH ?? "", PROXMOX_VE_USERNAME: "root@pam", PROXMOX_VE_PASSWORD: SIM_ROOT_PASSWORD },
    logger,
  });
  await terraform.prepare(stack.file);
  await terraform.apply(stack.workingDir, { runner: `template-${spec.vmid}`, timeoutMs: 600_000 });
}

export async function buildDemoTemplate(world: World, logger: Logger): Promise<BuiltTemplate> {
  const spec = templateSpec(world.config);
  try {
    await applyTemplateStack(world, spec, join(world.dir, "template"), logger);
  } catch (err) {
    if (err instanceof TerraformError) throw new Error(`the template build failed: ${err.message}`, { cause: err });
    throw err;
  }
  const ct = world.pve.container(spec.vmid);
  if (!ct?.template) throw new Error(`the template build left no template ${spec.node}/${spec.vmid}`);
  const record = world.pve.guestFile(spec.vmid, TEMPLATE_BUILD_MARKER);
  const runnerVersion = /^runner (\S+)/.exec(record ?? "")?.[1];
  if (!runnerVersion) throw new Error(`template ${spec.node}/${spec.vmid} has no record of its runner (${TEMPLATE_BUILD_MARKER}): provision.sh did not finish`);
  return { node: spec.node, vmid: spec.vmid, runnerVersion };
}
