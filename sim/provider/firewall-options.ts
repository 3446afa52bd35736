// `proxmox_virtual_environment_firewall_options` as bpg 0.111.1 has it (proxmoxtf/resource/firewall/
// options.go, selector.go; proxmox/firewall/options.go, options_types.go): an SDKv2 resource with
// no ForceNew attribute (every change is an in-place update), whose create and update PUT all ten
// options at once and read them back, and whose delete only forgets the resource — the options
// stay in /etc/pve/firewall/<vmid>.fw until the guest is destroyed (pve-container removes the file).
import { crc32 } from "node:zlib";
import type { Diagnostic, Outcome } from "./container.js";
import type { OpContext } from "./pve-ops.js";
import type { Params } from "./pve-client.js";
import type { ValidationDiag } from "./validate.js";
import { impliedType, type BlockSchema, type ObjectValue, type Value } from "./values.js";

export const FIREWALL_OPTIONS = "proxmox_virtual_environment_firewall_options";

const opt = (type: "string" | "number" | "bool") => ({ type, optional: true });
const def = (type: "string" | "bool", value: string | boolean) => ({ type, optional: true, default: value });

export const FIREWALL_OPTIONS_SCHEMA: BlockSchema = {
  attributes: {
    id: { type: "string", optional: true, computed: true },
    node_name: { type: "string", required: true, description: "The name of the node." },
    vm_id: opt("number"),
    container_id: opt("number"),
    dhcp: def("bool", false),
    enabled: def("bool", false),
    ipfilter: opt("bool"),
    log_level_in: def("string", "nolog"),
    log_level_out: def("string", "nolog"),
    macfilter: def("bool", true),
    ndp: def("bool", false),
    input_policy: def("string", "DROP"),
    output_policy: def("string", "ACCEPT"),
    radv: def("bool", true),
  },
};
export const FIREWALL_OPTIONS_TYPE = impliedType(FIREWALL_OPTIONS_SCHEMA);

const POLICIES = ["ACCEPT", "REJECT", "DROP"];
const LOG_LEVELS = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "nolog"];

/** The schema's validators: ExactlyOneOf(vm_id, container_id), VMIDValidator, StringInSlice. */
export function validateFirewallOptions(config: Value): ValidationDiag[] {
  const c = config && typeof config === "object" && !Array.isArray(config) ? (config as ObjectValue) : null;
  if (!c) return [];
  const out: ValidationDiag[] = [];
  const at = (name: string) => [{ attribute_name: name }];
  const given = ["container_id", "vm_id"].filter((k) => c[k] !== null && c[k] !== undefined);
  if (given.length === 0) for (const k of ["container_id", "vm_id"]) out.push({ summary: `"${k}": one of \`container_id,vm_id\` must be specified`, path: at(k) });
  if (given.length === 2) for (const k of given) out.push({ summary: `"${k}": only one of \`container_id,vm_id\` can be specified, but \`container_id,vm_id\` were specified.`, path: at(k) });
  for (const k of ["container_id", "vm_id"]) {
    const v = c[k];
    if (typeof v === "number" && v !== -1 && (v < 100 || v > 2147483647)) out.push({ summary: `expected ${k} to be in the range (100 - 2147483647), got ${v}`, path: at(k) });
  }
  const inSlice = (k: string, allowed: string[]) => {
    const v = c[k];
    if (typeof v === "string" && !allowed.includes(v)) out.push({ summary: `expected ${k} to be one of ${JSON.stringify(allowed)}, got ${v}`, path: at(k) });
  };
  inSlice("input_policy", POLICIES);
  inSlice("output_policy", POLICIES);
  inSlice("log_level_in", LOG_LEVELS);
  inSlice("log_level_out", LOG_LEVELS);
  return out;
}

/** getFirewallAPIFromID: vm_id first, then container_id (d.GetOk: a zero value counts as unset). */
function optionsPath(state: ObjectValue): string {
  const node = encodeURIComponent(typeof state.node_name === "string" ? state.node_name : "");
  if (typeof state.vm_id === "number" && state.vm_id !== 0) return `nodes/${node}/qemu/${state.vm_id}/firewall/options`;
  if (typeof state.container_id === "number" && state.container_id !== 0) return `nodes/${node}/lxc/${state.container_id}/firewall/options`;
  throw new Error("expected either vm_id or container_id but found neither");
}

/** GetOptionsID: "options-" + schema.HashString(path) (crc32 IEEE, non-negative on 64-bit). */
const optionsId = (path: string) => `options-${crc32(path)}`;

const fromErr = (err: unknown): Diagnostic => ({ severity: "ERROR", summary: err instanceof Error ? err.message : String(err), detail: "" });
const wrapped = (prefix: string, err: unknown) => new Error(`${prefix}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });

/** optionsSet (create and update): one PUT with all ten options, then optionsRead. */
export async function setFirewallOptions(ctx: OpContext, planned: ObjectValue): Promise<Outcome> {
  let path: string;
  try {
    path = optionsPath(planned);
  } catch (err) {
    return { state: null, diagnostics: [fromErr(err)] };
  }
  const b = (k: string) => (planned[k] === true ? 1 : 0);
  const s = (k: string) => (typeof planned[k] === "string" ? (planned[k] as string) : "");
  // OptionsPutRequestBody: pointers with omitempty are never nil here, so every key is sent.
  const body: Params = {
    dhcp: b("dhcp"),
    enable: b("enabled"),
    ipfilter: b("ipfilter"),
    log_level_in: s("log_level_in"),
    log_level_out: s("log_level_out"),
    macfilter: b("macfilter"),
    ndp: b("ndp"),
    policy_in: s("input_policy"),
    policy_out: s("output_policy"),
    radv: b("radv"),
  };
  try {
    await ctx.client.request("PUT", path, body, ctx.signal);
  } catch (err) {
    return { state: null, diagnostics: [fromErr(wrapped("error setting options", err))] };
  }
  const out = await readFirewallOptions(ctx, { ...planned, id: optionsId(path) });
  // ipfilter has no default: left out of the config it stays null, as planned (SDKv2 reads the
  // zero value as unset; the stand-in's plans are checked strictly, see plan.ts).
  if (out.state && planned.ipfilter === null) out.state.ipfilter = null;
  return out;
}

/** optionsRead: the options PVE reports overwrite the state's; absent ones keep their state value. */
export async function readFirewallOptions(ctx: OpContext, state: ObjectValue): Promise<Outcome> {
  let data: Record<string, unknown> | null;
  try {
    data = await ctx.client.request<Record<string, unknown> | null>("GET", optionsPath(state), undefined, ctx.signal);
  } catch (err) {
    return { state, diagnostics: [fromErr(wrapped("error retrieving options", err))] };
  }
  if (!data) return { state, diagnostics: [fromErr(new Error("the server did not include a data object in the response"))] };
  const out: ObjectValue = { ...state };
  const customBool = (v: unknown) => v === 1 || v === "1" || v === true || v === "true";
  const bools: Record<string, string> = { dhcp: "dhcp", enable: "enabled", ipfilter: "ipfilter", macfilter: "macfilter", ndp: "ndp", radv: "radv" };
  const strings: Record<string, string> = { log_level_in: "log_level_in", log_level_out: "log_level_out", policy_in: "input_policy", policy_out: "output_policy" };
  for (const [api, attr] of Object.entries(bools)) if (data[api] !== undefined && data[api] !== null) out[attr] = customBool(data[api]);
  for (const [api, attr] of Object.entries(strings)) if (typeof data[api] === "string") out[attr] = data[api] as string;
  return { state: out, diagnostics: [] };
}

/** optionsImport: vm/<node>/<vmid> or container/<node>/<vmid>, then a read. */
export async function importFirewallOptions(ctx: OpContext, importId: string, skeleton: ObjectValue): Promise<Outcome> {
  const m = /^(vm|container)\/([^/]*)\/(.*)$/.exec(importId);
  if (!m) return { state: null, diagnostics: [fromErr(new Error(`invalid import ID: ${importId} (expected: 'vm/<node_name>/<vm_id>' or 'container/<node_name>/<container_id>')`))] };
  const [, kind, node, id] = m;
  if (node === "") return { state: null, diagnostics: [fromErr(new Error(`invalid ${kind === "vm" ? "VM" : "container"} import ID: node name cannot be empty in ${importId}`))] };
  if (!/^-?\d+$/.test(id)) return { state: null, diagnostics: [fromErr(new Error(`invalid import ID: ID must be a number in ${importId}`))] };
  const state: ObjectValue = { ...skeleton, node_name: node, [kind === "vm" ? "vm_id" : "container_id"]: Number(id) };
  state.id = optionsId(optionsPath(state));
  return readFirewallOptions(ctx, state);
}
