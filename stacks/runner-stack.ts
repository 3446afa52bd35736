// The runner stack: one per runner, in its own directory, with its state beside it.
// It clones the unprivileged template (linked by default) onto the CI bridge/VLAN and starts it.
// No secret is ever part of it: the PVE token reaches terraform through PROXMOX_VE_API_TOKEN.
import { App, LocalBackend, TerraformOutput, TerraformStack } from "cdktn";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { Container, FirewallOptions, ProxmoxProvider } from "./bpg-proxmox.js";
import { controllerMarker, PVE_RUNNERS_TAG, RUNNER_DESCRIPTION_PREFIX } from "../listener/lifecycle/ownership.js";

export { PVE_RUNNERS_TAG };
/** cdktn writes each stack under <outdir>/stacks/<stack name>/. */
export const RUNNER_STACK_NAME = "runner";

export interface RunnerStackSpec {
  /** <namePrefix><id>: also the container hostname and the GitHub runner name. */
  readonly runnerName: string;
  readonly labelSet: string;
  /** This installation's (listener/lifecycle/ownership.ts): tagged and described, so the sweeper knows the container is ours. */
  readonly controllerId: string;
  /** Absent: terraform gets it from PROXMOX_VE_ENDPOINT (the listener's clone gate). */
  readonly endpoint?: string;
  readonly insecure?: boolean;
  readonly node: string;
  readonly templateVmid: number;
  readonly templateNode?: string;
  readonly vmid?: number;
  readonly pool?: string;
  readonly bridge: string;
  readonly vlan?: number;
  readonly linkedClone: boolean;
  /** Full clones only: PVE refuses a storage for linked clones. */
  readonly datastore?: string;
  readonly cores: number;
  readonly memoryMb: number;
  readonly swapMb: number;
  /** false when the JIT config must be set before the first start (delivery mode `env`). Default true. */
  readonly start?: boolean;
  /** bpg's timeout_delete (shutdown + delete); deleteTimeoutFor(the listener's destroy timeout). */
  readonly deleteTimeoutSec?: number;
  /**
   * PVE's ipfilter option. Off by default: with ip=dhcp PVE's implicit ipfilter-net0 ipset holds no
   * IPv4 address, so every IPv4 packet but DHCP would be dropped (pve-firewall PVE/Firewall.pm,
   * ruleset_create_vm_chain). Turn it on only when the template's firewall has an ipfilter-net0
   * ipset with the CI subnet (README, "Network isolation").
   */
  readonly ipfilter?: boolean;
}

/** The listener's default timeouts.destroy (listener/app/config.ts). */
const DEFAULT_DESTROY_TIMEOUT_SEC = 300;

/**
 * bpg's timeout_delete for a listener whose whole `terraform destroy` may take `destroySec`.
 * bpg's own default is 60 s for shutdown and delete together (containerDelete in
 * proxmoxtf/resource/container/container.go: a context deadline of timeout_delete, and a shutdown
 * with forceStop after timeout_delete - 5 s), which a slow shutdown or disk removal can miss. It
 * gets the listener's budget minus a margin (up to 30 s, at most half) for terraform's start and
 * refresh, so bpg reports its own deadline before the listener stops terraform.
 */
export function deleteTimeoutFor(destroySec: number): number {
  return Math.max(1, Math.floor(destroySec - Math.min(30, destroySec / 2)));
}

export class RunnerStack extends TerraformStack {
  readonly container: Container;
  constructor(scope: App, spec: RunnerStackSpec) {
    super(scope, RUNNER_STACK_NAME);
    // Relative path: the backend block is byte-identical across runners, so a pre-initialised
    // .terraform can be reused without `terraform init` (listener/adapters/terraform/terraform.ts copies it from the shared init).
    new LocalBackend(this, { path: "terraform.tfstate" });
    new ProxmoxProvider(this, "proxmox", { endpoint: spec.endpoint, insecure: spec.insecure });
    this.container = new Container(this, "runner", {
      nodeName: spec.node,
      vmId: spec.vmid,
      // The description goes with the clone call, the tags with the config PUT after it: a clone cut
      // short is still marked as ours by its description.
      description: `${RUNNER_DESCRIPTION_PREFIX}${spec.runnerName} (label set ${spec.labelSet}, ${controllerMarker(spec.controllerId)})`,
      poolId: spec.pool,
      tags: [PVE_RUNNERS_TAG, controllerMarker(spec.controllerId), `pve-runners-${spec.runnerName}`],
      unprivileged: true,
      started: spec.start ?? true,
      startOnBoot: false,
      clone: {
        vmId: spec.templateVmid,
        nodeName: spec.templateNode ?? spec.node,
        full: !spec.linkedClone,
        datastoreId: spec.linkedClone ? undefined : spec.datastore,
      },
      // Re-sent exactly as the template has them: a token may not change features but nesting (pve-container src/PVE/LXC.pm check_ct_modify_config_perm).
      features: { nesting: true, keyctl: true },
      // firewall=1 puts the NIC behind PVE's firewall bridge: without it no guest rule applies.
      networkInterface: [{ name: "eth0", bridge: spec.bridge, vlanId: spec.vlan, firewall: true }],
      // bpg's config PUT rewrites net0 whole: without ip= the clone would lose the template's DHCP.
      initialization: { hostname: spec.runnerName, ipConfig: { ipv4: { address: "dhcp" } } },
      cpu: { cores: spec.cores },
      memory: { dedicated: spec.memoryMb, swap: spec.swapMb },
      // Read from state at destroy time: what the stack had when applied is what bpg uses.
      timeoutDelete: spec.deleteTimeoutSec ?? deleteTimeoutFor(DEFAULT_DESTROY_TIMEOUT_SEC),
    });
    // The guest firewall's baseline, whatever the template's firewall file says (a clone starts with
    // a copy of it): on, nothing comes in unasked, no MAC spoofing, no router advertisements; DHCP
    // as a client only. What may go out is the security group's job (README, "Network isolation").
    // Needs only VM.Config.Network on the runner (pve-firewall API2/Firewall/VM.pm set_options).
    new FirewallOptions(this, "runner_firewall", {
      nodeName: spec.node,
      containerId: this.container.ref("vm_id"),
      enabled: true,
      macfilter: true,
      ipfilter: spec.ipfilter ?? false,
      dhcp: true,
      ndp: true,
      radv: false,
      inputPolicy: "DROP",
      outputPolicy: "ACCEPT",
    });
    // A literal reference, not a token: attribute tokens stay in cdktn's process-global token map
    // for good, ~8.5 KiB per synth (bench/synth-memory.ts), and the listener synthesizes for months.
    new TerraformOutput(this, "vm_id", { value: `\${${Container.tfResourceType}.${this.container.friendlyUniqueId}.vm_id}` });
  }
}

export interface SynthesizedStack {
  /** Where terraform runs for this runner. */
  readonly workingDir: string;
  readonly file: string;
}

/** Synthesizes one runner's stack into `dir` (created if missing). Synchronous and cheap (~1-2 ms). */
/**
 * Why `name` cannot be a runner's name, or undefined if it can. It becomes the container's hostname
 * (PVE's dns-name format: a DNS label, lowercase here as PVE tags are), a PVE tag's neighbour in the
 * description and the GitHub runner name, so: lowercase letters, digits and hyphens, starting with
 * a letter, not ending with a hyphen, at most 63 characters.
 */
export function runnerNameProblem(name: string): string | undefined {
  if (name.length === 0 || name.length > 63) return "a runner name is 1 to 63 characters";
  if (!/^[a-z][a-z0-9-]*[a-z0-9]$|^[a-z]$/.test(name)) return "a runner name is lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen (it becomes the container's hostname)";
  return undefined;
}

export function synthRunnerStack(dir: string, spec: RunnerStackSpec): SynthesizedStack {
  const bad = runnerNameProblem(spec.runnerName);
  if (bad) throw new Error(`runner name '${spec.runnerName}': ${bad}`);
  mkdirSync(dir, { recursive: true });
  const app = new App({ outdir: dir, skipValidation: true });
  new RunnerStack(app, spec);
  app.synth();
  const workingDir = join(dir, "stacks", RUNNER_STACK_NAME);
  return { workingDir, file: join(workingDir, "cdk.tf.json") };
}
