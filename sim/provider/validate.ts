// ValidateResourceConfig: the handful of bpg's SDKv2 validators a runner stack can trip over, with
// the messages validation.IntBetween & co. give. Unknown values are not validated (SDKv2 neither).
import type { PathStep } from "./plan.js";
import { asList, asObject, type ObjectValue, type Value } from "./values.js";

export interface ValidationDiag {
  summary: string;
  path: PathStep[];
}

const HOSTNAME = /^[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/;
const MAC = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;

export function validateContainer(config: Value): ValidationDiag[] {
  const c = asObject(config);
  if (!c) return [];
  const out: ValidationDiag[] = [];
  const at = (...steps: Array<string | number>): PathStep[] => steps.map((s) => (typeof s === "number" ? { element_key_int: s } : { attribute_name: s }));
  const range = (v: Value | undefined, min: number, max: number, key: string, path: PathStep[], allowMinusOne = false) => {
    if (typeof v !== "number") return;
    if (allowMinusOne && v === -1) return;
    if (!Number.isInteger(v)) out.push({ summary: `expected type of ${key} to be int`, path });
    else if (v < min || v > max) out.push({ summary: `expected ${key} to be in the range (${min} - ${max}), got ${v}`, path });
  };
  const blocks = (name: string): ObjectValue[] => asList(c[name] ?? null).map(asObject).filter((x): x is ObjectValue => x !== null);

  range(c.vm_id, 100, 2147483647, "vm_id", at("vm_id"), true);
  blocks("clone").forEach((b, i) => range(b.vm_id, 100, 2147483647, `clone.${i}.vm_id`, at("clone", i, "vm_id"), true));
  blocks("cpu").forEach((b, i) => range(b.cores, 1, 128, `cpu.${i}.cores`, at("cpu", i, "cores")));
  blocks("memory").forEach((b, i) => {
    range(b.dedicated, 16, 268435456, `memory.${i}.dedicated`, at("memory", i, "dedicated"));
    range(b.swap, 0, 268435456, `memory.${i}.swap`, at("memory", i, "swap"));
  });
  blocks("initialization").forEach((b, i) => {
    const h = b.hostname;
    if (typeof h === "string" && h !== "" && !HOSTNAME.test(h)) {
      out.push({ summary: `invalid value for initialization.${i}.hostname (must be a valid DNS name)`, path: at("initialization", i, "hostname") });
    }
  });
  blocks("network_interface").forEach((b, i) => {
    const m = b.mac_address;
    if (typeof m === "string" && m !== "" && !MAC.test(m)) {
      out.push({ summary: `invalid value for network_interface.${i}.mac_address (must be a valid MAC address)`, path: at("network_interface", i, "mac_address") });
    }
  });
  asList(c.tags ?? null).forEach((t, i) => {
    if (t === "") out.push({ summary: `expected "tags.${i}" to not be an empty string, got `, path: at("tags", i) });
  });
  return out;
}

/** The download_file resource's framework validators (OneOf, RegexMatches, AlsoRequires). */
export function validateDownloadFile(config: Value): ValidationDiag[] {
  const c = asObject(config);
  if (!c) return [];
  const out: ValidationDiag[] = [];
  const oneOf = (key: string, values: string[]) => {
    const v = c[key];
    if (typeof v === "string" && !values.includes(v)) out.push({ summary: `Attribute ${key} value must be one of: [${values.map((x) => JSON.stringify(x)).join(" ")}], got: ${JSON.stringify(v)}`, path: [{ attribute_name: key }] });
  };
  oneOf("content_type", ["iso", "vztmpl", "import"]);
  oneOf("decompression_algorithm", ["gz", "lzo", "zst", "bz2"]);
  oneOf("checksum_algorithm", ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]);
  if (typeof c.url === "string" && !/https?:\/\/.*/.test(c.url)) out.push({ summary: `Attribute url must match HTTP URL regex \`https?://.*\`, got: ${c.url}`, path: [{ attribute_name: "url" }] });
  const pair = (a: string, b: string) => {
    if (typeof c[a] === "string" && c[b] === null) out.push({ summary: `Attribute "${b}" must be specified when "${a}" is specified`, path: [{ attribute_name: a }] });
  };
  pair("checksum", "checksum_algorithm");
  pair("checksum_algorithm", "checksum");
  return out;
}
