// Terraform's type system as the stand-in sees it: cty types (in their JSON form, which is also what
// the protocol sends in Schema.Attribute.type), values, unknowns, and the block schemas that imply
// an object type. Values are plain JS: null, string, number, boolean, arrays (list/set/tuple) and
// objects (map/object); an unknown value is an Unknown instance anywhere in the tree.
import type { ExtData } from "@msgpack/msgpack";

export type CtyType =
  | "string"
  | "number"
  | "bool"
  | "dynamic"
  | readonly ["list" | "set" | "map", CtyType]
  | readonly ["object", { readonly [name: string]: CtyType }]
  | readonly ["tuple", readonly CtyType[]];

/** A value not known until apply. Keeps the extension it was decoded from, so refinements survive a round trip. */
export class Unknown {
  constructor(readonly ext?: ExtData) {}
}
export const UNKNOWN = new Unknown();
export const isUnknown = (v: unknown): v is Unknown => v instanceof Unknown;

export type Value = null | Unknown | string | number | boolean | Value[] | { [name: string]: Value };
export type ObjectValue = { [name: string]: Value };

export interface AttributeSchema {
  readonly type: CtyType;
  readonly required?: boolean;
  readonly optional?: boolean;
  readonly computed?: boolean;
  readonly sensitive?: boolean;
  readonly deprecated?: boolean;
  readonly description?: string;
  /**
   * SDKv2-style default, filled into the plan when the config leaves the attribute null. Terraform
   * only lets a provider plan a value the config did not give for computed attributes, so an
   * attribute with a default is declared Optional+Computed on the wire (see docs/sim.md).
   */
  readonly default?: Value;
  /** A change forces replacement (SDKv2 ForceNew). The stand-in replaces on any change; this marks bpg's own. */
  readonly forceNew?: boolean;
}

export type Nesting = "single" | "list" | "set" | "map" | "group";

export interface NestedBlockSchema {
  readonly nesting: Nesting;
  readonly block: BlockSchema;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly forceNew?: boolean;
}

export interface BlockSchema {
  readonly attributes: { readonly [name: string]: AttributeSchema };
  readonly blocks?: { readonly [name: string]: NestedBlockSchema };
  readonly description?: string;
}

/** The object type a block's value has (attributes and nested blocks alike are its attributes). */
export function impliedType(block: BlockSchema): CtyType {
  const attrs: Record<string, CtyType> = {};
  for (const [name, a] of Object.entries(block.attributes)) attrs[name] = a.type;
  for (const [name, nb] of Object.entries(block.blocks ?? {})) attrs[name] = nestedBlockType(nb);
  return ["object", attrs];
}

export function nestedBlockType(nb: NestedBlockSchema): CtyType {
  const obj = impliedType(nb.block);
  switch (nb.nesting) {
    case "single":
    case "group":
      return obj;
    case "list":
      return ["list", obj];
    case "set":
      return ["set", obj];
    case "map":
      return ["map", obj];
  }
}

/** Deep equality; two unknowns are equal only to each other (good enough to detect "would change"). */
export function valuesEqual(a: Value, b: Value): boolean {
  if (a === b) return true;
  if (isUnknown(a) || isUnknown(b)) return isUnknown(a) && isUnknown(b);
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => valuesEqual(v, b[i]));
  const ao = a as ObjectValue;
  const bo = b as ObjectValue;
  const keys = new Set([...Object.keys(ao), ...Object.keys(bo)]);
  for (const k of keys) if (!valuesEqual(ao[k] ?? null, bo[k] ?? null)) return false;
  return true;
}

/** True when the value or anything inside it is unknown. */
export function containsUnknown(v: Value): boolean {
  if (isUnknown(v)) return true;
  if (v === null || typeof v !== "object") return false;
  return (Array.isArray(v) ? v : Object.values(v)).some(containsUnknown);
}

/** Replaces every remaining unknown with null (what terraform does to a result it cannot store). */
export function unknownsToNull(v: Value): Value {
  if (isUnknown(v)) return null;
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map(unknownsToNull);
  const out: ObjectValue = {};
  for (const [k, x] of Object.entries(v)) out[k] = unknownsToNull(x);
  return out;
}

export function asObject(v: Value | undefined): ObjectValue | null {
  return v !== null && v !== undefined && typeof v === "object" && !Array.isArray(v) && !isUnknown(v) ? (v as ObjectValue) : null;
}

export function asList(v: Value | undefined): Value[] {
  return Array.isArray(v) ? v : [];
}
