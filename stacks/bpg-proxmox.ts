// Typed CDK Terrain bindings for the few bpg/proxmox pieces pve-runners uses.
// No prebuilt @cdktf/@cdktn provider package exists for bpg/proxmox, so these are written by
// hand from bpg's schema (docs/resources/virtual_environment_container.md). Attribute names are
// terraform's snake_case names: resource attributes are not renamed by the CDK.
import { Construct } from "constructs";
import * as cdktn from "cdktn";

/** The provider version pve-runners is written and tested against. */
export const BPG_PROXMOX_VERSION = "0.111.1";
/** Fully qualified, so one filesystem mirror serves terraform and tofu alike. */
export const BPG_PROXMOX_SOURCE = "registry.terraform.io/bpg/proxmox";

const GEN_META = { providerName: "proxmox", providerVersion: BPG_PROXMOX_VERSION };

export interface ProxmoxProviderConfig {
  /**
   * https://pve.example:8006/ — absent: bpg reads PROXMOX_VE_ENDPOINT (the listener points it at its
   * clone gate). The API token is never a field here: it reaches terraform by PROXMOX_VE_API_TOKEN.
   */
  readonly endpoint?: string;
  readonly insecure?: boolean;
  readonly alias?: string;
}

export class ProxmoxProvider extends cdktn.TerraformProvider {
  private _alias?: string;
  constructor(scope: Construct, id: string, private readonly cfg: ProxmoxProviderConfig) {
    super(scope, id, {
      terraformResourceType: "proxmox",
      terraformGeneratorMetadata: GEN_META,
      terraformProviderSource: BPG_PROXMOX_SOURCE,
    });
    this._alias = cfg.alias;
  }
  public override get alias(): string | undefined {
    return this._alias;
  }
  public override set alias(v: string | undefined) {
    this._alias = v;
  }
  protected override synthesizeAttributes(): Record<string, unknown> {
    return {
      endpoint: cdktn.stringToTerraform(this.cfg.endpoint),
      insecure: cdktn.booleanToTerraform(this.cfg.insecure),
      alias: cdktn.stringToTerraform(this._alias),
    };
  }
}

export interface ContainerClone {
  readonly vmId: number;
  readonly nodeName?: string;
  readonly datastoreId?: string;
  /** bpg defaults to a full clone; pve-runners wants linked clones unless told otherwise. */
  readonly full?: boolean;
}
export interface ContainerFeatures {
  readonly nesting?: boolean;
  readonly keyctl?: boolean;
  readonly fuse?: boolean;
  readonly mknod?: boolean;
}
export interface ContainerNetworkInterface {
  readonly name: string;
  readonly bridge?: string;
  readonly vlanId?: number;
  readonly macAddress?: string;
  readonly firewall?: boolean;
}
export interface ContainerInitialization {
  readonly hostname?: string;
  readonly ipConfig?: { readonly ipv4?: { readonly address?: string; readonly gateway?: string } };
}
export interface ContainerConfig extends cdktn.TerraformMetaArguments {
  readonly nodeName: string;
  readonly vmId?: number;
  readonly description?: string;
  readonly poolId?: string;
  readonly tags?: string[];
  readonly started?: boolean;
  readonly startOnBoot?: boolean;
  readonly unprivileged?: boolean;
  readonly clone?: ContainerClone;
  readonly features?: ContainerFeatures;
  readonly networkInterface?: ContainerNetworkInterface[];
  readonly initialization?: ContainerInitialization;
  readonly cpu?: { readonly cores?: number };
  readonly memory?: { readonly dedicated?: number; readonly swap?: number };
  readonly timeoutClone?: number;
  readonly timeoutCreate?: number;
  readonly timeoutDelete?: number;
}

const str = cdktn.stringToTerraform;
const num = cdktn.numberToTerraform;
const bool = cdktn.booleanToTerraform;

/** What every hand-written bpg resource shares: its meta-arguments and literal references. */
export abstract class BpgResource extends cdktn.TerraformResource {
  constructor(scope: Construct, id: string, private readonly resourceType: string, meta: cdktn.TerraformMetaArguments) {
    super(scope, id, {
      terraformResourceType: resourceType,
      terraformGeneratorMetadata: GEN_META,
      provider: meta.provider,
      dependsOn: meta.dependsOn,
      count: meta.count,
      lifecycle: meta.lifecycle,
      provisioners: meta.provisioners,
      connection: meta.connection,
      forEach: meta.forEach,
    });
  }

  /** A literal reference: CDK tokens would be kept for ever in a process-global map (measured by bench/synth-memory.ts). */
  public ref(attribute: string): string {
    return `\${${this.resourceType}.${this.friendlyUniqueId}.${attribute}}`;
  }
}

export class Container extends BpgResource {
  public static readonly tfResourceType = "proxmox_virtual_environment_container";

  constructor(scope: Construct, id: string, private readonly cfg: ContainerConfig) {
    super(scope, id, Container.tfResourceType, cfg);
  }

  protected override synthesizeAttributes(): Record<string, unknown> {
    const c = this.cfg;
    return {
      node_name: str(c.nodeName),
      vm_id: num(c.vmId),
      description: str(c.description),
      pool_id: str(c.poolId),
      tags: c.tags ? cdktn.listMapper(str, false)(c.tags) : undefined,
      started: bool(c.started),
      start_on_boot: bool(c.startOnBoot),
      unprivileged: bool(c.unprivileged),
      timeout_clone: num(c.timeoutClone),
      timeout_create: num(c.timeoutCreate),
      timeout_delete: num(c.timeoutDelete),
      clone: c.clone && {
        vm_id: num(c.clone.vmId),
        node_name: str(c.clone.nodeName),
        datastore_id: str(c.clone.datastoreId),
        full: bool(c.clone.full),
      },
      features: c.features && {
        nesting: bool(c.features.nesting),
        keyctl: bool(c.features.keyctl),
        fuse: bool(c.features.fuse),
        mknod: bool(c.features.mknod),
      },
      network_interface: c.networkInterface?.map((n) => ({
        name: str(n.name),
        bridge: str(n.bridge),
        vlan_id: num(n.vlanId),
        mac_address: str(n.macAddress),
        firewall: bool(n.firewall),
      })),
      initialization: c.initialization && {
        hostname: str(c.initialization.hostname),
        ip_config: c.initialization.ipConfig && [
          { ipv4: c.initialization.ipConfig.ipv4 && { address: str(c.initialization.ipConfig.ipv4.address), gateway: str(c.initialization.ipConfig.ipv4.gateway) } },
        ],
      },
      cpu: c.cpu && { cores: num(c.cpu.cores) },
      memory: c.memory && { dedicated: num(c.memory.dedicated), swap: num(c.memory.swap) },
    };
  }
}

/**
 * bpg's per-guest firewall options (docs/resources/virtual_environment_firewall_options.md). Exactly
 * one of vmId/containerId. PUT /nodes/{node}/{qemu|lxc}/{vmid}/firewall/options needs only
 * VM.Config.Network on the guest (pve-firewall src/PVE/API2/Firewall/VM.pm). bpg's delete only
 * forgets the options; PVE removes the guest's firewall file when the guest is destroyed.
 */
export interface FirewallOptionsConfig extends cdktn.TerraformMetaArguments {
  readonly nodeName: string;
  readonly vmId?: number | string;
  /** A number, or a literal reference to a container's vm_id (Container.ref("vm_id")). */
  readonly containerId?: number | string;
  readonly enabled?: boolean;
  readonly ipfilter?: boolean;
  readonly macfilter?: boolean;
  readonly dhcp?: boolean;
  readonly ndp?: boolean;
  readonly radv?: boolean;
  readonly inputPolicy?: "ACCEPT" | "REJECT" | "DROP";
  readonly outputPolicy?: "ACCEPT" | "REJECT" | "DROP";
  readonly logLevelIn?: string;
  readonly logLevelOut?: string;
}

export class FirewallOptions extends BpgResource {
  public static readonly tfResourceType = "proxmox_virtual_environment_firewall_options";

  constructor(scope: Construct, id: string, private readonly cfg: FirewallOptionsConfig) {
    super(scope, id, FirewallOptions.tfResourceType, cfg);
  }

  protected override synthesizeAttributes(): Record<string, unknown> {
    const c = this.cfg;
    const id = (v: number | string | undefined) => (typeof v === "string" ? v : num(v));
    return {
      node_name: str(c.nodeName),
      vm_id: id(c.vmId),
      container_id: id(c.containerId),
      enabled: bool(c.enabled),
      ipfilter: bool(c.ipfilter),
      macfilter: bool(c.macfilter),
      dhcp: bool(c.dhcp),
      ndp: bool(c.ndp),
      radv: bool(c.radv),
      input_policy: str(c.inputPolicy),
      output_policy: str(c.outputPolicy),
      log_level_in: str(c.logLevelIn),
      log_level_out: str(c.logLevelOut),
    };
  }
}
