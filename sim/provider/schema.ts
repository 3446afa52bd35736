// bpg/proxmox 0.111.1's provider configuration and `proxmox_virtual_environment_container`,
// transcribed from bpg's fwprovider/provider.go and proxmoxtf/resource/container/container.go
// (names, types, nesting, max items, defaults, ForceNew). The subset pve-runners can use; blocks
// bpg has and we do not (console, startup, mount_point, idmap, device_passthrough, wait_for_ip)
// are left out, so a config using them fails as "Unsupported block type" instead of being ignored.
import type { AttributeSchema, BlockSchema, CtyType, NestedBlockSchema } from "./values.js";
import { impliedType } from "./values.js";

export const CONTAINER = "proxmox_virtual_environment_container";

const str: CtyType = "string";
const num: CtyType = "number";
const bool: CtyType = "bool";
const strList: CtyType = ["list", "string"];

const opt = (type: CtyType, extra: Partial<AttributeSchema> = {}): AttributeSchema => ({ type, optional: true, ...extra });
const def = (type: CtyType, value: string | number | boolean, extra: Partial<AttributeSchema> = {}): AttributeSchema => ({ type, optional: true, default: value, ...extra });
const list = (block: BlockSchema, maxItems: number, extra: Partial<NestedBlockSchema> = {}): NestedBlockSchema => ({ nesting: "list", block, maxItems, ...extra });

export const PROVIDER_SCHEMA: BlockSchema = {
  attributes: {
    endpoint: opt(str, { description: "The endpoint for the Proxmox Virtual Environment API (example: https://host:port)" }),
    insecure: opt(bool, { description: "Whether to skip the TLS verification step." }),
    min_tls: opt(str),
    api_token: opt(str, { sensitive: true, description: "The API token for the Proxmox Virtual Environment API." }),
    auth_ticket: opt(str, { sensitive: true }),
    csrf_prevention_token: opt(str, { sensitive: true }),
    otp: opt(str, { deprecated: true }),
    username: opt(str),
    password: opt(str, { sensitive: true }),
    random_vm_ids: opt(bool),
    random_vm_id_start: opt(num),
    random_vm_id_end: opt(num),
    tmp_dir: opt(str),
  },
};

const ipBlock: BlockSchema = { attributes: { address: def(str, ""), gateway: def(str, "") } };

export const CONTAINER_SCHEMA: BlockSchema = {
  attributes: {
    // SDKv2 adds `id` to every resource as Optional+Computed.
    id: { type: str, optional: true, computed: true },
    node_name: { type: str, required: true, forceNew: true, description: "The node name" },
    vm_id: { type: num, optional: true, computed: true, description: "The VM identifier" },
    description: def(str, ""),
    pool_id: def(str, "", { forceNew: true }),
    tags: opt(strList),
    template: def(bool, false, { forceNew: true }),
    started: def(bool, true),
    start_on_boot: def(bool, true),
    unprivileged: def(bool, false, { forceNew: true }),
    protection: def(bool, false),
    hook_script_file_id: def(str, ""),
    environment_variables: opt(["map", "string"]),
    ipv4: { type: ["map", "string"], computed: true },
    ipv6: { type: ["map", "string"], computed: true },
    timeout_create: def(num, 1800),
    timeout_clone: def(num, 1800),
    timeout_update: def(num, 1800),
    timeout_delete: def(num, 60),
  },
  blocks: {
    clone: list(
      {
        attributes: {
          vm_id: { type: num, required: true, forceNew: true },
          node_name: def(str, "", { forceNew: true }),
          datastore_id: def(str, "", { forceNew: true }),
          full: def(bool, true, { forceNew: true }),
        },
      },
      1,
    ),
    features: list(
      { attributes: { nesting: def(bool, false), keyctl: def(bool, false), fuse: def(bool, false), mknod: def(bool, false), mount: opt(strList) } },
      1,
    ),
    network_interface: list(
      {
        attributes: {
          name: { type: str, required: true },
          bridge: def(str, "vmbr0"),
          enabled: def(bool, true),
          firewall: def(bool, false),
          host_managed: def(bool, false),
          mac_address: { type: str, optional: true, computed: true },
          mtu: def(num, 0),
          rate_limit: def(num, 0),
          vlan_id: def(num, 0),
        },
      },
      10,
    ),
    initialization: list(
      {
        attributes: { hostname: def(str, ""), entrypoint: def(str, "") },
        blocks: {
          dns: list({ attributes: { domain: def(str, ""), server: def(str, "", { deprecated: true }), servers: opt(strList) } }, 1),
          ip_config: list({ attributes: {}, blocks: { ipv4: list(ipBlock, 1), ipv6: list(ipBlock, 1) } }, 10),
          user_account: list({ attributes: { keys: opt(strList, { forceNew: true }), password: def(str, "", { sensitive: true, forceNew: true }) } }, 1, { forceNew: true }),
        },
      },
      1,
    ),
    cpu: list(
      { attributes: { architecture: def(str, "amd64"), cores: def(num, 1), limit: def(num, 0), units: { type: num, optional: true, computed: true } } },
      1,
    ),
    memory: list({ attributes: { dedicated: def(num, 512), swap: def(num, 0) } }, 1),
    disk: list(
      {
        attributes: {
          datastore_id: def(str, "local", { forceNew: true }),
          size: def(num, 4),
          acl: def(bool, false),
          quota: def(bool, false),
          replicate: def(bool, false),
          mount_options: opt(strList),
          path_in_datastore: { type: str, computed: true },
        },
      },
      1,
    ),
    operating_system: list(
      { attributes: { template_file_id: { type: str, required: true, forceNew: true }, type: def(str, "unmanaged") } },
      1,
      { forceNew: true },
    ),
  },
};

export const DOWNLOAD_FILE = "proxmox_virtual_environment_download_file";

/**
 * `proxmox_virtual_environment_download_file` (a plugin-framework resource, bpg
 * fwprovider/nodes/resource_download_file.go): RequiresReplace on everything that names or checks
 * the file (forceNew here); upload_timeout, verify, overwrite and overwrite_unmanaged change in place.
 */
export const DOWNLOAD_FILE_SCHEMA: BlockSchema = {
  attributes: {
    id: { type: str, computed: true, description: "The unique identifier of this resource." },
    content_type: { type: str, required: true, forceNew: true },
    file_name: { type: str, optional: true, computed: true, forceNew: true },
    datastore_id: { type: str, required: true, forceNew: true },
    node_name: { type: str, required: true, forceNew: true },
    size: { type: num, computed: true },
    upload_timeout: def(num, 600),
    url: { type: str, required: true, forceNew: true },
    checksum: opt(str, { forceNew: true }),
    decompression_algorithm: opt(str, { forceNew: true }),
    checksum_algorithm: opt(str, { forceNew: true }),
    verify: def(bool, true),
    overwrite: def(bool, true),
    overwrite_unmanaged: def(bool, false),
  },
};

export const DOWNLOAD_FILE_TYPE = impliedType(DOWNLOAD_FILE_SCHEMA);
export const CONTAINER_TYPE = impliedType(CONTAINER_SCHEMA);
export const PROVIDER_TYPE = impliedType(PROVIDER_SCHEMA);

// ---------------------------------------------------------------- protocol messages

const NESTING = { single: "SINGLE", list: "LIST", set: "SET", map: "MAP", group: "GROUP" } as const;

/** A BlockSchema as tfplugin6 Schema.Block. */
export function blockToProto(block: BlockSchema): Record<string, unknown> {
  return {
    version: 0,
    description: block.description ?? "",
    description_kind: "PLAIN",
    deprecated: false,
    attributes: Object.entries(block.attributes)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, a]) => ({
        name,
        type: Buffer.from(JSON.stringify(a.type)),
        description: a.description ?? "",
        description_kind: "PLAIN",
        required: a.required === true,
        // A default makes the attribute Optional+Computed on the wire (values.ts explains why).
        optional: a.optional === true || a.default !== undefined,
        computed: a.computed === true || a.default !== undefined,
        sensitive: a.sensitive === true,
        deprecated: a.deprecated === true,
        write_only: false,
      })),
    block_types: Object.entries(block.blocks ?? {})
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, nb]) => ({
        type_name: name,
        block: blockToProto(nb.block),
        nesting: NESTING[nb.nesting],
        min_items: nb.minItems ?? 0,
        max_items: nb.maxItems ?? 0,
      })),
  };
}

export function schemaToProto(block: BlockSchema, version = 0): Record<string, unknown> {
  return { version, block: blockToProto(block) };
}
