// The LXC config schema (pve-container src/PVE/LXC/Config.pm): which keys exist, their types and
// formats, property strings (netN, features, rootfs) parsed and printed the way PVE does, and tags
// normalised like get_unique_tags.
import { checkValue, parseBoolean, type ParamDef } from "./params.js";

type PropFormat = { keys: Record<string, ParamDef>; defaultKey?: string };

const bool: ParamDef = { type: "boolean", optional: true };
const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const cidr4 = (v: string) => {
  const [ip, len, extra] = v.split("/");
  return extra === undefined && IPV4.test(ip) && /^\d+$/.test(len ?? "") && Number(len) <= 32;
};
const cidr6 = (v: string) => /^[0-9a-f:]+\/\d{1,3}$/i.test(v) && v.includes(":");

export const NET_FORMAT: PropFormat = {
  keys: {
    name: { type: "string", pattern: /^[-_.\w\d]+$/ },
    bridge: { type: "string", optional: true, pattern: /^[-_.\w\d]+$/ },
    hwaddr: {
      type: "string",
      optional: true,
      format: (v) => (/^[0-9a-f][02468ace](:[0-9a-f]{2}){5}$/i.test(v) ? undefined : "value does not look like a valid unicast MAC address"),
    },
    ip: { type: "string", optional: true, format: (v) => (v === "dhcp" || v === "manual" || cidr4(v) ? undefined : "value does not look like a valid IPv4 network configuration") },
    gw: { type: "string", optional: true, format: (v) => (IPV4.test(v) ? undefined : "value does not look like a valid IPv4 address") },
    ip6: { type: "string", optional: true, format: (v) => (["auto", "dhcp", "manual"].includes(v) || cidr6(v) ? undefined : "value does not look like a valid IPv6 network configuration") },
    gw6: { type: "string", optional: true, format: (v) => (/^[0-9a-f:]+$/i.test(v) && v.includes(":") ? undefined : "value does not look like a valid IPv6 address") },
    firewall: bool,
    link_down: bool,
    "host-managed": bool,
    mtu: { type: "integer", optional: true, min: 64, max: 65535 },
    rate: { type: "number", optional: true, min: 0 },
    tag: { type: "integer", optional: true, min: 1, max: 4094 },
    trunks: { type: "string", optional: true, pattern: /^\d+(;\d+)*$/ },
    type: { type: "string", optional: true, enum: ["veth"] },
  },
};

export const FEATURES_FORMAT: PropFormat = {
  keys: { nesting: bool, keyctl: bool, fuse: bool, mknod: bool, force_rw_sys: bool, mount: { type: "string", optional: true, pattern: /^[a-zA-Z0-9_; ]+$/ } },
};

const MOUNTPOINT_FORMAT: PropFormat = {
  defaultKey: "volume",
  keys: {
    volume: { type: "string" },
    size: { type: "string", optional: true, pattern: /^\d+(\.\d+)?[KMGT]?$/ },
    mp: { type: "string", optional: true },
    acl: bool,
    backup: bool,
    quota: bool,
    replicate: bool,
    ro: bool,
    shared: bool,
    mountoptions: { type: "string", optional: true },
  },
};

/** Parses `a=1,b=x` against a format; throws the text PVE puts under the parameter's name. */
export function parsePropertyString(fmt: PropFormat, value: string, path: string): Record<string, string> {
  const out: Record<string, string> = {};
  const errors: string[] = [];
  for (const part of value.split(",")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    let key: string;
    let v: string;
    if (eq < 0) {
      if (!fmt.defaultKey) {
        errors.push(`${path}: value without key, but schema does not define a default key`);
        continue;
      }
      [key, v] = [fmt.defaultKey, part];
    } else [key, v] = [part.slice(0, eq), part.slice(eq + 1)];
    const def = fmt.keys[key];
    if (!def) {
      errors.push(`${path}.${key}: property is not defined in schema and the schema does not allow additional properties`);
      continue;
    }
    if (out[key] !== undefined) {
      errors.push(`${path}.${key}: duplicate key in comma-separated list property`);
      continue;
    }
    const err = checkValue(def, v);
    if (err) errors.push(`${path}.${key}: ${err}`);
    else out[key] = def.type === "boolean" ? (parseBoolean(v) ? "1" : "0") : v;
  }
  for (const [key, def] of Object.entries(fmt.keys)) {
    if (!def.optional && out[key] === undefined && !errors.some((e) => e.startsWith(`${path}.${key}:`))) {
      errors.push(`${path}.${key}: property is missing and it is not optional`);
    }
  }
  if (errors.length) throw new Error(`invalid format - format error\n${errors.join("\n")}\n`);
  return out;
}

/** print_property_string: the default key bare, then required keys, then optional ones, each sorted. */
export function printPropertyString(fmt: PropFormat, data: Record<string, string>): string {
  const keys = Object.keys(data).sort();
  const required = keys.filter((k) => k !== fmt.defaultKey && !fmt.keys[k]?.optional);
  const optional = keys.filter((k) => k !== fmt.defaultKey && fmt.keys[k]?.optional);
  const parts = fmt.defaultKey && data[fmt.defaultKey] !== undefined ? [data[fmt.defaultKey]] : [];
  for (const k of [...required, ...optional]) parts.push(`${k}=${data[k]}`);
  return parts.join(",");
}

const propFormat = (fmt: PropFormat, name: string): ParamDef["format"] => (v) => {
  try {
    parsePropertyString(fmt, v, name);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
};

const TAG = /^[a-z0-9_][a-z0-9_\-+.]*$/i;
export const splitTags = (v: string): string[] => v.split(/[;, ]+/).filter(Boolean);

/** get_unique_tags: sorted case-insensitively, lower-cased, de-duplicated, ';'-joined. */
export const normalizeTags = (v: string): string => [...new Set(splitTags(v).map((t) => t.toLowerCase()))].sort().join(";");

export const OSTYPES = ["debian", "devuan", "ubuntu", "centos", "fedora", "opensuse", "archlinux", "alpine", "gentoo", "nixos", "unmanaged"];

/** Settable config keys (json_config_properties), minus the snapshot-only ones. */
export const CONFIG_KEYS: Record<string, ParamDef> = {
  arch: { type: "string", optional: true, enum: ["amd64", "i386", "arm64", "armhf", "riscv32", "riscv64"] },
  cmode: { type: "string", optional: true, enum: ["shell", "console", "tty"] },
  console: bool,
  cores: { type: "integer", optional: true, min: 1, max: 8192 },
  cpulimit: { type: "number", optional: true, min: 0, max: 8192 },
  cpuunits: { type: "integer", optional: true, min: 0, max: 500000 },
  debug: bool,
  description: { type: "string", optional: true, maxLength: 8192 },
  entrypoint: { type: "string", optional: true },
  // NUL-separated K=V list (pve-container 6.0.15, PVE 9.1); the pattern is PVE's own.
  // eslint-disable-next-line no-control-regex
  env: { type: "string", optional: true, pattern: /^(?:\w+=[^\x00-\x08\x0a-\x1f\x7f]*)(?:\0\w+=[^\x00-\x08\x0a-\x1f\x7f]*)*$/ },
  features: { type: "string", optional: true, format: propFormat(FEATURES_FORMAT, "features") },
  hookscript: { type: "string", optional: true, format: (v) => (/^[a-z][a-z0-9\-_.]*[a-z0-9]:.+$/i.test(v) ? undefined : `unable to parse volume ID '${v}'`) },
  hostname: {
    type: "string",
    optional: true,
    maxLength: 255,
    format: (v) => (/^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?))*$/.test(v) ? undefined : "value does not look like a valid DNS name"),
  },
  memory: { type: "integer", optional: true, min: 16 },
  nameserver: { type: "string", optional: true },
  onboot: bool,
  ostype: { type: "string", optional: true, enum: OSTYPES },
  protection: bool,
  rootfs: { type: "string", optional: true, format: propFormat(MOUNTPOINT_FORMAT, "rootfs") },
  searchdomain: { type: "string", optional: true },
  startup: { type: "string", optional: true },
  swap: { type: "integer", optional: true, min: 0 },
  tags: {
    type: "string",
    optional: true,
    format: (v) => {
      const bad = splitTags(v).find((t) => !TAG.test(t));
      return bad === undefined ? undefined : `invalid format - invalid tag '${bad}'`;
    },
  },
  template: bool,
  timezone: { type: "string", optional: true },
  tty: { type: "integer", optional: true, min: 0, max: 6 },
  unprivileged: bool,
};

/** netN, mpN, unusedN, devN. */
export function dynamicKey(key: string): ParamDef | undefined {
  const m = /^(net|mp|unused|dev)(\d+)$/.exec(key);
  if (!m) return undefined;
  const n = Number(m[2]);
  if (m[1] === "net") return n <= 31 ? { type: "string", optional: true, format: propFormat(NET_FORMAT, key) } : undefined;
  if (n > 255) return undefined;
  if (m[1] === "mp") return { type: "string", optional: true, format: propFormat({ ...MOUNTPOINT_FORMAT, keys: { ...MOUNTPOINT_FORMAT.keys, mp: { type: "string" } } }, key) };
  return { type: "string", optional: true };
}

export const isConfigKey = (key: string): boolean => key in CONFIG_KEYS || dynamicKey(key) !== undefined || key === "lock";

/** Values as GET /config returns them: booleans and integers as JSON numbers. */
export function typedConfig(conf: Record<string, string>): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(conf)) {
    const t = CONFIG_KEYS[k]?.type;
    out[k] = t === "boolean" ? (parseBoolean(v) ? 1 : 0) : t === "integer" || t === "number" ? Number(v) : v;
  }
  return out;
}

export const parseNet = (v: string, key = "net0") => parsePropertyString(NET_FORMAT, v, key);
export const printNet = (net: Record<string, string>) => printPropertyString(NET_FORMAT, net);
export const parseFeatures = (v: string | undefined): Record<string, string> => (v ? parsePropertyString(FEATURES_FORMAT, v, "features") : {});
export const parseMountpoint = (v: string, key = "rootfs") => parsePropertyString(MOUNTPOINT_FORMAT, v, key);
export const printMountpoint = (mp: Record<string, string>) => printPropertyString(MOUNTPOINT_FORMAT, mp);

/** "8G" → bytes. */
export function diskSizeBytes(size: string | undefined): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)$/.exec(size ?? "");
  if (!m) return 4 * 1024 ** 3;
  const mult = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2] as "" | "K" | "M" | "G" | "T"];
  return Math.round(Number(m[1]) * mult);
}

/** The env option as a map (NUL-separated K=V). */
export function parseEnv(env: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (env ?? "").split("\0")) {
    const eq = pair.indexOf("=");
    if (eq > 0) out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}
