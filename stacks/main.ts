// The cdktf.json app (`"app": "node dist/stacks/main.js"`): `npx cdktn synth` runs it and it
// synthesizes the template stack from the pve-runners config. The runner stacks are synthesized by
// the listener itself, one per runner, never here.
//
//   PVE_RUNNERS_CONFIG            config file (default /etc/pve-runners/config.yaml); no secret is read
//   PVE_RUNNERS_TEMPLATE_STORAGE  root volume storage of the template (default proxmox.storage, else local-lvm)
//   PVE_RUNNERS_TEMPLATE_DIR      template/ scripts on this host (default: the ones next to this program)
//   PVE_RUNNERS_TEMPLATE_DISK_GB  root volume size in GiB (default 16)
//   PVE_RUNNERS_IMAGE_STORAGE     storage the CT image is downloaded to (default local)
//   PVE_RUNNERS_TEMPLATE_COPY     which of proxmox.templates to build, as node/vmid (default the first)
//   CDKTF_OUTDIR                  set by the cdktn CLI (default cdktf.out)
//
// Then, on the PVE host as root: cd cdktf.out/stacks/template && terraform init && terraform apply
// with PROXMOX_VE_USERNAME=root@pam and PROXMOX_VE_PASSWORD in the environment (see template-stack.ts).
import { fileURLToPath } from "node:url";
import { basename, dirname, resolve } from "node:path";
import { ConfigError, loadConfig, orExit, type Config } from "../listener/app/config.js";
import { templateCopies } from "../listener/lifecycle/placement.js";
import { synthTemplateStack, type TemplateStackSpec } from "./template-stack.js";

/** The template stack's spec from the config file and the environment (no secret is read). */
export function templateSpecFromConfig(configPath: string, env: NodeJS.ProcessEnv = process.env): TemplateStackSpec {
  return templateSpec(loadConfig(configPath, { readSecrets: false, env }).config, env);
}

export function templateSpec(config: Config, env: NodeJS.ProcessEnv = process.env): TemplateStackSpec {
  const p = config.proxmox;
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/stacks/main.js when built, stacks/main.ts under tsx: template/ is at the repository root.
  const templateDir = env.PVE_RUNNERS_TEMPLATE_DIR ?? resolve(here, basename(dirname(here)) === "dist" ? "../../template" : "../template");
  const diskGb = env.PVE_RUNNERS_TEMPLATE_DISK_GB ? Number(env.PVE_RUNNERS_TEMPLATE_DISK_GB) : undefined;
  if (diskGb !== undefined && !(Number.isInteger(diskGb) && diskGb >= 4)) throw new ConfigError([`PVE_RUNNERS_TEMPLATE_DISK_GB: "${env.PVE_RUNNERS_TEMPLATE_DISK_GB}" is not a whole number of GiB >= 4`]);
  const copies = templateCopies(p);
  const wanted = env.PVE_RUNNERS_TEMPLATE_COPY;
  const copy = wanted ? copies.find((c) => c.key === wanted) : copies[0];
  if (!copy) throw new ConfigError([`PVE_RUNNERS_TEMPLATE_COPY: "${wanted}" is none of ${copies.map((c) => c.key).join(", ")}`]);
  return {
    endpoint: p.endpoint,
    insecure: p.insecure,
    node: copy.sourceNode,
    vmid: copy.vmid,
    pool: p.pool,
    bridge: p.bridge,
    vlan: p.vlan,
    datastore: env.PVE_RUNNERS_TEMPLATE_STORAGE ?? p.storage ?? "local-lvm",
    diskGb,
    imageDatastore: env.PVE_RUNNERS_IMAGE_STORAGE ?? "local",
    templateDir,
  };
}

function main(): void {
  const configPath = process.env.PVE_RUNNERS_CONFIG ?? "/etc/pve-runners/config.yaml";
  const spec = orExit(configPath, () => templateSpecFromConfig(configPath));
  const out = synthTemplateStack(process.env.CDKTF_OUTDIR ?? "cdktf.out", spec);
  // stdout: the cdktn CLI shows the app's stderr as [ERROR].
  process.stdout.write(`pve-runners: template stack (build ${out.fingerprint.slice(0, 12)}) in ${out.workingDir}\n`);
}

// Only when run as the program, not when a test imports templateSpecFromConfig.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
