// Parsing terraform's (and OpenTofu's) machine-readable UI stream: `apply -json` / `destroy -json`
// print one JSON object per line (developer.hashicorp.com/terraform/internals/machine-readable-ui).
// This module only understands the lines; running the command lives in terraform.ts.

/** The UI major version we understand (terraform 1.11 prints "1.2"). A new major may change meanings. */
export const SUPPORTED_UI_MAJOR = 1;

export interface TerraformDiagnostic {
  severity: "error" | "warning" | string;
  summary: string;
  detail: string;
  /** The resource the diagnostic is about, when terraform names one. */
  address?: string;
}

export interface UiMessage {
  "@level": string;
  "@message": string;
  type: string;
  [key: string]: unknown;
}

export type PinoLevel = "trace" | "debug" | "info" | "warn" | "error";

/** One line of the stream, or null when it is not a UI message (terraform may print plain text). */
export function parseUiLine(line: string): UiMessage | null {
  const trimmed = line.trim();
  if (!trimmed.startsWith("{")) return null;
  let value: unknown;
  try {
    value = JSON.parse(trimmed);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const v = value as Record<string, unknown>;
  if (typeof v.type !== "string") return null;
  return {
    ...v,
    type: v.type,
    "@level": typeof v["@level"] === "string" ? v["@level"] : "info",
    "@message": typeof v["@message"] === "string" ? v["@message"] : "",
  };
}

/** Maps terraform's `@level` onto a pino level; unknown levels are logged as info rather than dropped. */
export function pinoLevelOf(level: string): PinoLevel {
  switch (level) {
    case "trace":
    case "debug":
    case "info":
    case "error":
      return level;
    case "warn":
    case "warning":
      return "warn";
    default:
      return "info";
  }
}

/**
 * Checks the first `version` line. Returns an explanation when the UI major version is not one we
 * understand, otherwise null. The engine's version field is `terraform` (or `tofu` under OpenTofu).
 */
export function unsupportedUiVersion(msg: UiMessage): string | null {
  if (msg.type !== "version") return null;
  const ui = typeof msg.ui === "string" ? msg.ui : "";
  const major = Number(ui.split(".")[0]);
  if (ui !== "" && major === SUPPORTED_UI_MAJOR) return null;
  const engine = typeof msg.tofu === "string" ? `OpenTofu ${msg.tofu}` : typeof msg.terraform === "string" ? `Terraform ${msg.terraform}` : "the engine";
  return `${engine} speaks machine-readable UI version "${ui || "(none)"}"; pve-runners understands ${SUPPORTED_UI_MAJOR}.x only`;
}

/** The diagnostic carried by a `diagnostic` line, if any. */
export function diagnosticOf(msg: UiMessage): TerraformDiagnostic | null {
  if (msg.type !== "diagnostic") return null;
  const d = msg.diagnostic as Record<string, unknown> | undefined;
  if (!d || typeof d !== "object") return null;
  return {
    severity: typeof d.severity === "string" ? d.severity : "error",
    summary: typeof d.summary === "string" ? d.summary : msg["@message"],
    detail: typeof d.detail === "string" ? d.detail : "",
    ...(typeof d.address === "string" ? { address: d.address } : {}),
  };
}

/**
 * The few structured fields worth a log line next to `@message`. Deliberately an allowlist: `outputs`
 * and provisioner hooks can carry values we do not want in the log.
 */
export function logFieldsOf(msg: UiMessage): Record<string, unknown> {
  const hook = (msg.hook ?? msg.change) as Record<string, unknown> | undefined;
  const resource = hook?.resource as Record<string, unknown> | undefined;
  const fields: Record<string, unknown> = {};
  if (typeof resource?.addr === "string") fields.address = resource.addr;
  if (typeof hook?.action === "string") fields.action = hook.action;
  if (typeof hook?.elapsed_seconds === "number") fields.elapsedSeconds = hook.elapsed_seconds;
  if (typeof hook?.id_value === "string") fields.id = hook.id_value;
  if (msg.type === "change_summary" && msg.changes && typeof msg.changes === "object") fields.changes = msg.changes;
  const diag = diagnosticOf(msg);
  if (diag?.address) fields.address = diag.address;
  return fields;
}

export interface ChangeSummary {
  operation: string;
  add: number;
  change: number;
  remove: number;
  import: number;
}

/** The `change_summary` counts (terraform prints one for the plan and one for the apply/destroy). */
export function changeSummaryOf(msg: UiMessage): ChangeSummary | null {
  if (msg.type !== "change_summary" || !msg.changes || typeof msg.changes !== "object") return null;
  const c = msg.changes as Record<string, unknown>;
  const n = (x: unknown) => (typeof x === "number" ? x : 0);
  return { operation: typeof c.operation === "string" ? c.operation : "", add: n(c.add), change: n(c.change), remove: n(c.remove), import: n(c.import) };
}
