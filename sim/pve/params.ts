// Parameter verification as PVE::JSONSchema does it: every problem is collected and reported
// at once as 400 "Parameter verification failed." with {param: message}; unknown parameters are
// refused (additionalProperties => 0). Values arrive as strings (form bodies, query strings).
import { paramError } from "./errors.js";

export type ParamType = "string" | "integer" | "number" | "boolean";

export interface ParamDef {
  type: ParamType;
  optional?: boolean;
  min?: number;
  max?: number;
  enum?: readonly string[];
  /** Anchored, like PVE's schema patterns. */
  pattern?: RegExp;
  maxLength?: number;
  /** Extra format check: returns an error message or undefined. */
  format?: (v: string) => string | undefined;
}

export type Schema = Record<string, ParamDef>;
export type RawParams = Record<string, string>;

export const VMID: ParamDef = { type: "integer", min: 100, max: 999999999 };
export const NODE: ParamDef = { type: "string", pattern: /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/ };
export const STORAGE_ID: ParamDef = { type: "string", format: (v) => (/^[a-z][a-z0-9\-_.]*[a-z0-9]$/i.test(v) ? undefined : `storage ID '${v}' contains illegal characters`) };
export const POOL_ID: ParamDef = { type: "string", format: (v) => (/^[A-Za-z0-9_\-/]{1,}$/.test(v) && /^[A-Za-z]/.test(v) ? undefined : "value does not look like a valid pool ID") };
export const DNS_NAME: ParamDef = {
  type: "string",
  format: (v) => (/^(?=.{1,255}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?))*$/.test(v) ? undefined : "value does not look like a valid DNS name"),
};
export const BOOL_OPT: ParamDef = { type: "boolean", optional: true };

export function parseBoolean(v: string): boolean | undefined {
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  return undefined;
}

/** One value against its definition: the message PVE would give, or undefined. */
export function checkValue(def: ParamDef, v: string): string | undefined {
  switch (def.type) {
    case "boolean":
      if (parseBoolean(v) === undefined) return `type check ('boolean') failed - got '${v}'`;
      return undefined;
    case "integer":
    case "number": {
      const ok = def.type === "integer" ? /^-?\d+$/.test(v) : /^-?\d+(\.\d+)?$/.test(v);
      if (!ok) return `type check ('${def.type}') failed - got '${v}'`;
      const n = Number(v);
      if (def.min !== undefined && n < def.min) return `value must have a minimum value of ${def.min}`;
      if (def.max !== undefined && n > def.max) return `value must have a maximum value of ${def.max}`;
      return undefined;
    }
    case "string":
      if (def.maxLength !== undefined && v.length > def.maxLength) return `value may only be ${def.maxLength} characters long`;
      if (def.enum && !def.enum.includes(v)) return `value '${v}' does not have a value in the enumeration '${def.enum.join(", ")}'`;
      if (def.pattern && !def.pattern.test(v)) return "value does not match the regex pattern";
      return def.format?.(v);
  }
}

/**
 * Verifies `raw` against `schema` (plus `dynamic` for keys like net0..net31). Returns the raw
 * strings of the known keys; throws 400 with every error found.
 */
export function verify(raw: RawParams, schema: Schema, dynamic?: (key: string) => ParamDef | undefined): RawParams {
  const errors: Record<string, string> = {};
  const out: RawParams = {};
  for (const [k, v] of Object.entries(raw)) {
    const def = schema[k] ?? dynamic?.(k);
    if (!def) {
      errors[k] = "property is not defined in schema and the schema does not allow additional properties";
      continue;
    }
    const err = checkValue(def, v);
    if (err) errors[k] = err;
    else out[k] = v;
  }
  for (const [k, def] of Object.entries(schema)) {
    if (!def.optional && raw[k] === undefined && !errors[k]) errors[k] = "property is missing and it is not optional";
  }
  if (Object.keys(errors).length) throw paramError(errors);
  return out;
}

/** Form and JSON bodies reach us as strings, numbers or booleans; PVE sees text. */
export function flatten(input: unknown): RawParams {
  const out: RawParams = {};
  if (!input || typeof input !== "object" || Array.isArray(input)) return out;
  for (const [k, v] of Object.entries(input as Record<string, unknown>)) {
    if (v === undefined || v === null) continue;
    if (typeof v === "boolean") out[k] = v ? "1" : "0";
    else if (Array.isArray(v)) out[k] = v.map(String).join(",");
    else out[k] = String(v);
  }
  return out;
}

export const bool = (v: string | undefined, dflt = false): boolean => (v === undefined ? dflt : (parseBoolean(v) ?? dflt));
