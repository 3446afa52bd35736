// PlanResourceChange, schema-driven, within the rules terraform checks on every plan
// (objchange.AssertPlanValid; the stand-in never sets legacy_type_system, so nothing is forgiven):
// - a non-computed attribute is planned exactly as configured;
// - Optional+Computed: the config value when set, else the default (SDKv2 Default semantics: even
//   on update), else the prior value (update) or unknown (create);
// - computed-only: the prior value (update) or unknown (create);
// - nested blocks follow the config's blocks one for one.
// On update every changed attribute is reported as requiring replacement: pve-runners only ever
// creates and destroys, so the stand-in has no in-place update (docs/sim.md).
import {
  asList,
  asObject,
  isUnknown,
  UNKNOWN,
  valuesEqual,
  type BlockSchema,
  type NestedBlockSchema,
  type ObjectValue,
  type Value,
} from "./values.js";

export type PathStep = { attribute_name: string } | { element_key_int: number } | { element_key_string: string };

export interface PlanResult {
  planned: Value;
  requiresReplace: PathStep[][];
}

export function planResourceChange(schema: BlockSchema, prior: Value, proposed: Value, config: Value): PlanResult {
  if (proposed === null || config === null) return { planned: null, requiresReplace: [] }; // destroy
  const priorObj = asObject(prior);
  const planned = planBlock(schema, asObject(config), priorObj);
  const requiresReplace = priorObj ? changedPaths(schema, priorObj, planned, []) : [];
  return { planned, requiresReplace };
}

export function planBlock(block: BlockSchema, config: ObjectValue | null, prior: ObjectValue | null): ObjectValue {
  const out: ObjectValue = {};
  for (const [name, a] of Object.entries(block.attributes)) {
    const c = config?.[name] ?? null;
    const p = prior ? (prior[name] ?? null) : null;
    const optionalComputed = a.default !== undefined || (a.computed === true && a.optional === true);
    if (optionalComputed) {
      if (c !== null) out[name] = c;
      else if (a.default !== undefined) out[name] = a.default;
      else out[name] = prior ? p : UNKNOWN;
    } else if (a.computed) {
      out[name] = prior ? p : UNKNOWN;
    } else {
      out[name] = c;
    }
  }
  for (const [name, nb] of Object.entries(block.blocks ?? {})) {
    out[name] = planNested(nb, config?.[name] ?? null, prior?.[name] ?? null);
  }
  return out;
}

function planNested(nb: NestedBlockSchema, config: Value, prior: Value): Value {
  // A dynamic block whose for_each is not known yet: the whole collection is unknown.
  if (isUnknown(config)) return config;
  switch (nb.nesting) {
    case "list":
    case "set": {
      const priorItems = asList(prior);
      return asList(config).map((item, i) => (isUnknown(item) ? item : planBlock(nb.block, asObject(item), asObject(priorItems[i]))));
    }
    case "single":
    case "group": {
      const c = asObject(config);
      if (!c) return nb.nesting === "group" ? planBlock(nb.block, null, asObject(prior)) : null;
      return planBlock(nb.block, c, asObject(prior));
    }
    case "map": {
      const c = asObject(config);
      if (!c) return {};
      const p = asObject(prior);
      const out: ObjectValue = {};
      for (const [k, v] of Object.entries(c)) out[k] = isUnknown(v) ? v : planBlock(nb.block, asObject(v), asObject(p?.[k]));
      return out;
    }
  }
}

/** The paths where `planned` differs from `prior`: what terraform shows as "forces replacement". */
export function changedPaths(block: BlockSchema, prior: ObjectValue, planned: ObjectValue, base: PathStep[]): PathStep[][] {
  const paths: PathStep[][] = [];
  for (const name of Object.keys(block.attributes)) {
    if (!valuesEqual(prior[name] ?? null, planned[name] ?? null)) paths.push([...base, { attribute_name: name }]);
  }
  for (const [name, nb] of Object.entries(block.blocks ?? {})) {
    const p = prior[name] ?? null;
    const n = planned[name] ?? null;
    if (valuesEqual(p, n)) continue;
    const here = [...base, { attribute_name: name }];
    const pl = Array.isArray(p) ? p : null;
    const nl = Array.isArray(n) ? n : null;
    if (nb.nesting === "list" && pl && nl && pl.length === nl.length) {
      nl.forEach((item, i) => {
        const pi = asObject(pl[i]);
        const ni = asObject(item);
        if (pi && ni) paths.push(...changedPaths(nb.block, pi, ni, [...here, { element_key_int: i }]));
        else if (!valuesEqual(pl[i], item)) paths.push([...here, { element_key_int: i }]);
      });
    } else {
      paths.push(here);
    }
  }
  return paths;
}

/**
 * The value after apply: the plan with its unknowns filled from `actual` (what the API reported),
 * leaving every known planned value alone, so terraform's "inconsistent result after apply" check
 * holds by construction. Unknowns `actual` cannot fill become null.
 */
export function fillUnknowns(planned: Value, actual: Value): Value {
  if (isUnknown(planned)) return actual === undefined || isUnknown(actual) ? null : actual;
  if (planned === null || typeof planned !== "object") return planned;
  if (Array.isArray(planned)) {
    const a = Array.isArray(actual) ? actual : [];
    return planned.map((v, i) => fillUnknowns(v, a[i] ?? null));
  }
  const a = asObject(actual);
  const out: ObjectValue = {};
  for (const [k, v] of Object.entries(planned)) out[k] = fillUnknowns(v, a?.[k] ?? null);
  return out;
}
