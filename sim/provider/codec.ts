// DynamicValue encoding, driven by the cty type (docs/plugin-protocol/object-wire-format.md in
// hashicorp/terraform): objects are msgpack maps with EVERY attribute present (nil when null),
// lists/sets/tuples arrays, maps maps, numbers ints when integral (floats otherwise; terraform may
// also send big numbers as strings), unknowns msgpack extensions. We write unrefined unknowns as
// ext 0 (fixext1 d4 00 00); we read any extension as unknown (ext 12 = a refined unknown).
import { decode, encode, ExtData } from "@msgpack/msgpack";
import { isUnknown, Unknown, type CtyType, type ObjectValue, type Value } from "./values.js";

const UNREFINED = new ExtData(0, Uint8Array.of(0));

export class CodecError extends Error {
  override readonly name = "CodecError";
}

export interface DynamicValueMsg {
  msgpack?: Uint8Array | null;
  json?: Uint8Array | null;
}

/** Encodes a value of `type` as DynamicValue.msgpack bytes. */
export function encodeMsgpack(type: CtyType, v: Value): Buffer {
  const bytes = encode(toWire(type, v, "value"), { ignoreUndefined: false });
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decodes a DynamicValue (msgpack preferred; JSON as the protocol's fallback). Absent → null. */
export function decodeDynamic(type: CtyType, dv: DynamicValueMsg | null | undefined): Value {
  if (dv?.msgpack && dv.msgpack.length > 0) return decodeMsgpack(type, dv.msgpack);
  if (dv?.json && dv.json.length > 0) return fromJson(type, JSON.parse(Buffer.from(dv.json).toString("utf8")));
  return null;
}

export function decodeMsgpack(type: CtyType, bytes: Uint8Array): Value {
  return fromWire(type, decode(bytes, { useBigInt64: true }), "value");
}

// ---------------------------------------------------------------- encode

function toWire(type: CtyType, v: Value, path: string): unknown {
  if (v === null || v === undefined) return null;
  if (isUnknown(v)) return v.ext ?? UNREFINED;
  if (typeof type === "string") {
    switch (type) {
      case "string":
        if (typeof v !== "string") throw new CodecError(`${path}: expected a string, got ${describe(v)}`);
        return v;
      case "number":
        if (typeof v !== "number" || !Number.isFinite(v)) throw new CodecError(`${path}: expected a number, got ${describe(v)}`);
        return v;
      case "bool":
        if (typeof v !== "boolean") throw new CodecError(`${path}: expected a bool, got ${describe(v)}`);
        return v;
      case "dynamic":
        throw new CodecError(`${path}: encoding dynamic values is not supported`);
    }
  }
  const [kind, elem] = type;
  switch (kind) {
    case "list":
    case "set":
      if (!Array.isArray(v)) throw new CodecError(`${path}: expected a ${kind}, got ${describe(v)}`);
      return v.map((x, i) => toWire(elem, x, `${path}[${i}]`));
    case "tuple":
      if (!Array.isArray(v) || v.length !== elem.length) throw new CodecError(`${path}: expected a tuple of ${elem.length}`);
      return elem.map((t, i) => toWire(t, v[i], `${path}[${i}]`));
    case "map": {
      const o = objectOf(v, path, "map");
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(o)) out[k] = toWire(elem, x, `${path}[${JSON.stringify(k)}]`);
      return out;
    }
    case "object": {
      const o = objectOf(v, path, "object");
      for (const k of Object.keys(o)) if (!(k in elem)) throw new CodecError(`${path}: unexpected attribute ${JSON.stringify(k)}`);
      const out: Record<string, unknown> = {};
      // Every attribute of the type is present, null when unset.
      for (const [k, t] of Object.entries(elem)) out[k] = toWire(t, o[k] ?? null, `${path}.${k}`);
      return out;
    }
  }
}

function objectOf(v: Value, path: string, what: string): ObjectValue {
  if (typeof v !== "object" || v === null || Array.isArray(v) || isUnknown(v)) throw new CodecError(`${path}: expected a ${what}, got ${describe(v)}`);
  return v as ObjectValue;
}

// ---------------------------------------------------------------- decode

function fromWire(type: CtyType, raw: unknown, path: string): Value {
  if (raw === null || raw === undefined) return null;
  if (raw instanceof ExtData) return new Unknown(raw);
  if (typeof type === "string") {
    switch (type) {
      case "string":
        if (typeof raw !== "string") throw new CodecError(`${path}: expected a string, got ${typeof raw}`);
        return raw;
      case "number":
        return toNumber(raw, path);
      case "bool":
        if (typeof raw !== "boolean") throw new CodecError(`${path}: expected a bool, got ${typeof raw}`);
        return raw;
      case "dynamic": {
        // [type JSON as bytes, value of that type]
        if (!Array.isArray(raw) || raw.length !== 2 || !(raw[0] instanceof Uint8Array)) throw new CodecError(`${path}: malformed dynamic value`);
        const t = JSON.parse(Buffer.from(raw[0]).toString("utf8")) as CtyType;
        return fromWire(t, raw[1], path);
      }
    }
  }
  const [kind, elem] = type;
  switch (kind) {
    case "list":
    case "set":
      if (!Array.isArray(raw)) throw new CodecError(`${path}: expected an array for a ${kind}`);
      return raw.map((x, i) => fromWire(elem, x, `${path}[${i}]`));
    case "tuple":
      if (!Array.isArray(raw)) throw new CodecError(`${path}: expected an array for a tuple`);
      return elem.map((t, i) => fromWire(t, raw[i], `${path}[${i}]`));
    case "map": {
      const out: ObjectValue = {};
      for (const [k, x] of Object.entries(rawObject(raw, path))) out[k] = fromWire(elem, x, `${path}[${JSON.stringify(k)}]`);
      return out;
    }
    case "object": {
      const o = rawObject(raw, path);
      const out: ObjectValue = {};
      for (const [k, t] of Object.entries(elem)) out[k] = fromWire(t, o[k], `${path}.${k}`);
      return out;
    }
  }
}

function rawObject(raw: unknown, path: string): Record<string, unknown> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw) || raw instanceof Uint8Array) throw new CodecError(`${path}: expected a map`);
  return raw instanceof Map ? Object.fromEntries(raw) : (raw as Record<string, unknown>);
}

function toNumber(raw: unknown, path: string): number {
  if (typeof raw === "number") return raw;
  if (typeof raw === "bigint") return Number(raw);
  if (typeof raw === "string" && raw.trim() !== "" && Number.isFinite(Number(raw))) return Number(raw);
  throw new CodecError(`${path}: expected a number, got ${typeof raw}`);
}

/** JSON form (UpgradeResourceState's raw state, DynamicValue.json): same shapes, no unknowns. */
export function fromJson(type: CtyType, raw: unknown, path = "value"): Value {
  if (raw === null || raw === undefined) return null;
  if (typeof type === "string") {
    if (type === "dynamic") {
      const d = raw as { type?: CtyType; value?: unknown };
      if (!d || typeof d !== "object" || d.type === undefined) throw new CodecError(`${path}: malformed dynamic value`);
      return fromJson(d.type, d.value, path);
    }
    if (type === "number") return toNumber(raw, path);
    if (type === "string" && typeof raw === "string") return raw;
    if (type === "bool" && typeof raw === "boolean") return raw;
    throw new CodecError(`${path}: expected a ${type}, got ${typeof raw}`);
  }
  const [kind, elem] = type;
  switch (kind) {
    case "list":
    case "set":
      if (!Array.isArray(raw)) throw new CodecError(`${path}: expected an array`);
      return raw.map((x, i) => fromJson(elem, x, `${path}[${i}]`));
    case "tuple":
      if (!Array.isArray(raw)) throw new CodecError(`${path}: expected an array`);
      return elem.map((t, i) => fromJson(t, raw[i], `${path}[${i}]`));
    case "map": {
      const out: ObjectValue = {};
      for (const [k, x] of Object.entries(rawObject(raw, path))) out[k] = fromJson(elem, x, `${path}[${JSON.stringify(k)}]`);
      return out;
    }
    case "object": {
      // Attributes the state has but the schema lost are dropped; new ones start null.
      const o = rawObject(raw, path);
      const out: ObjectValue = {};
      for (const [k, t] of Object.entries(elem)) out[k] = fromJson(t, o[k], `${path}.${k}`);
      return out;
    }
  }
}

function describe(v: Value): string {
  if (Array.isArray(v)) return "an array";
  if (isUnknown(v)) return "unknown";
  return v === null ? "null" : typeof v;
}
