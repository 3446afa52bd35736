// `pve-runners template synth|deploy`: the LXC template the runners are cloned from, built by the
// template stack (stacks/template-stack.ts) with the same terraform adapter the listener uses.
import { Command } from "commander";
import { mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createLogger } from "./log.js";
import { SIMULATOR_PVE_ENV, loadConfig, orExit } from "../listener/app/config.js";
import { Terraform, TerraformError } from "../listener/adapters/terraform/terraform.js";
import { UntrustedPathError, assertRootOwned, assertRootOwnedParent, assertRootOwnedPath, runningAsRoot } from "../listener/adapters/terraform/trusted-path.js";
import { templateSpec, templateSpecFromConfig } from "../stacks/main.js";
import { synthTemplateStack, type TemplateStackSpec } from "../stacks/template-stack.js";
import { adminRequest } from "./admin.js";
import { replaceTemplates, templatesText } from "./template-replace.js";
import type { TemplatesView } from "../listener/templates/template-rotation.js";

const specOrExit = (path: string) => orExit(path, () => templateSpecFromConfig(path));

/**
 * Root's own work dir for the template stack: never under the listener's stateDir, which the
 * unprivileged pve-runners user owns and could plant a provider in (README: who runs what).
 */
export const DEFAULT_TEMPLATE_DIR = "/var/lib/pve-runners-template";

/**
 * As root: the config and the work dir (all in it) are root's alone, or one line and exit 1. A
 * missing work dir is made (0700) in a parent that is root's alone. Returns the dir's real path.
 */
async function rootOwnedWorkDir(configPath: string, dir: string): Promise<string> {
  try {
    await assertRootOwnedPath(configPath);
    await assertRootOwnedParent(dir);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return (await assertRootOwned(dir))!;
  } catch (err) {
    if (!(err instanceof UntrustedPathError)) throw err;
    process.stderr.write(`pve-runners template deploy: refusing to run as root: ${err.message} (use a directory only root can write, e.g. ${DEFAULT_TEMPLATE_DIR})\n`);
    process.exit(1);
  }
}

export function registerTemplateCommands(program: Command): void {
  const template = program.command("template").description("build the unprivileged LXC template the runners are cloned from");

  template
    .command("synth")
    .description("synthesize the template stack (cdk.tf.json) from the config, for inspection or a manual terraform apply")
    .option("--config <path>", "config file", "/etc/pve-runners/config.yaml")
    .option("--out <dir>", "write the stack here instead of printing it")
    .action((o: { config: string; out?: string }) => {
      const spec = specOrExit(o.config);
      const dir = resolve(o.out ?? join(process.env.TMPDIR ?? "/tmp", `pve-runners-template-${process.pid}`));
      const r = synthTemplateStack(dir, spec);
      process.stdout.write(o.out ? `${r.file}\n` : readFileSync(r.file, "utf8") + "\n");
    });

  template
    .command("list")
    .description("the template copies the running listener clones from, and the replaced ones (admin API)")
    .option("--config <path>", "config file (for the admin address and token)", "/etc/pve-runners/config.yaml")
    .option("--json", "print JSON", false)
    .action(async (o: { config: string; json: boolean }) => {
      const v = await adminRequest<TemplatesView>({ config: o.config }, "GET", "/api/templates");
      process.stdout.write(o.json ? JSON.stringify(v, null, 2) + "\n" : templatesText(v));
    });

  template
    .command("deploy")
    .description("synthesize and apply the template stack on this PVE host (as root: it runs pct push/exec/template)")
    .option("--config <path>", "config file", "/etc/pve-runners/config.yaml")
    .option("--dir <dir>", "where the template stack and its state live; as root, only root may write it and its parents", DEFAULT_TEMPLATE_DIR)
    .option("--replace", "blue/green: build each copy again under a new vmid next to the old one and switch the running listener to it; the old one goes once no runner depends on it")
    .option("--copy <node/vmid>", "with --replace: only this template copy")
    .option("--vmid <n>", "with --replace: the new template's vmid (default: the first free one above the old)", (v) => Number(v))
    .action(async (o: { config: string; dir: string; replace?: boolean; copy?: string; vmid?: number }) => {
      const { config, spec } = orExit(o.config, () => {
        // The simulator world's plain-http PVE is the one endpoint exempt from the https rule (as for serve).
        const { config } = loadConfig(o.config, { readSecrets: false, simulatorPveEndpoint: process.env[SIMULATOR_PVE_ENV] || undefined });
        return { config, spec: templateSpec(config) };
      });
      const log = createLogger({ level: config.log.level }).child({ part: "template" });
      // PVE lets only root@pam set the keyctl feature, never a token: the operator gives the root
      // password by env for this one apply; it is passed to terraform by env and nowhere else.
      const user = process.env.PROXMOX_VE_USERNAME;
      const password = process.env.PROXMOX_VE_PASSWORD;
      if (!user || !password) {
        process.stderr.write("pve-runners template deploy: set PROXMOX_VE_USERNAME=root@pam and PROXMOX_VE_PASSWORD (read -rs) in the environment\n");
        process.exit(2);
      }
      const asRoot = runningAsRoot();
      // Before anything is written or run there.
      const dir = asRoot ? await rootOwnedWorkDir(o.config, resolve(o.dir)) : resolve(o.dir);
      if (o.vmid !== undefined && !Number.isInteger(o.vmid)) {
        process.stderr.write("pve-runners template deploy: --vmid must be a whole number\n");
        process.exit(2);
      }
      if (o.replace) {
        await replaceTemplates(
          {
            admin: (method, path, body) => adminRequest({ config: o.config }, method, path, body),
            build: (s, d) => buildTemplate(config, s, d, dir, { user, password, asRoot, log }),
            out: (line) => process.stdout.write(`${line}\n`),
          },
          { spec, workDir: dir, copy: o.copy, vmid: o.vmid },
        ).catch((err: Error) => {
          process.stderr.write(`pve-runners template deploy --replace: ${err.message}\n`);
          process.exit(1);
        });
        return;
      }
      await buildTemplate(config, spec, dir, dir, { user, password, asRoot, log });
    });
}

/** Synthesizes the template stack for `spec` into `stackDir` and applies it; one line and exit 1 when terraform fails. */
async function buildTemplate(
  config: ReturnType<typeof loadConfig>["config"],
  spec: TemplateStackSpec,
  stackDir: string,
  dir: string,
  c: { user: string; password: string; asRoot: boolean; log: ReturnType<typeof createLogger> },
): Promise<void> {
  const { user, password, asRoot, log } = c;
  const stack = synthTemplateStack(stackDir, spec);
  log.info({ dir: stack.workingDir, fingerprint: stack.fingerprint, vmid: spec.vmid }, "template stack synthesized");
  const terraform = new Terraform({
    binary: config.terraform.binary,
    cliConfigFile: config.terraform.cliConfigFile,
    sharedInitDir: join(dir, "terraform-init"),
    env: { PROXMOX_VE_USERNAME: user, PROXMOX_VE_PASSWORD: password },
    logger: log,
    // As root: binary, CLI config, mirror and dirs checked before each command, and .terraform
    // and the lock file made afresh by this run's own init, never taken from the dir.
    requireRootOwned: asRoot,
    freshInit: asRoot,
  });
  let r;
  try {
    await terraform.prepare(stack.file);
    r = await terraform.apply(stack.workingDir, { runner: `template-${spec.vmid}`, timeoutMs: 3_600_000 });
  } catch (err) {
    if (!(err instanceof TerraformError)) throw err;
    process.stderr.write(`pve-runners template deploy: ${err.message}\n`);
    process.exit(1);
  }
  log.info({ ms: r.durationMs, changes: r.changes, vmid: spec.vmid }, "template ready: runners can be cloned from it");
}
