// ConfigureProvider, as bpg's fwprovider/provider.go Configure: attributes override the
// PROXMOX_VE_* environment, the endpoint is required, credentials are an API token
// (USER@REALM!TOKENID=SECRET), a ticket pair, or username + password.
import type { Diagnostic } from "./container.js";
import type { PveAuth } from "./pve-client.js";
import { asObject, isUnknown, type Value } from "./values.js";

export interface ProviderSettings {
  endpoint: string;
  insecure: boolean;
  auth: PveAuth;
  /** Every secret the settings hold, for redaction. */
  secrets: string[];
}

const TOKEN_RE = /^\S+@\S+!\S+=([a-zA-Z0-9-]+)$/;

/** utils.GetAnyBoolEnv: strconv.ParseBool. */
function envBool(v: string | undefined): boolean {
  return v !== undefined && /^(1|t|T|TRUE|true|True)$/.test(v);
}

export function providerSettings(config: Value, env: NodeJS.ProcessEnv): { settings?: ProviderSettings; diagnostics: Diagnostic[] } {
  const cfg = asObject(config) ?? {};
  const diagnostics: Diagnostic[] = [];
  if (isUnknown(cfg.endpoint)) {
    diagnostics.push({
      severity: "ERROR",
      summary: "Unknown Proxmox VE API Endpoint",
      detail: "The provider cannot create the Proxmox VE API client as there is an unknown configuration value for the API endpoint. Either target apply the source of the value first, set the value statically in the configuration, or use the PROXMOX_VE_ENDPOINT environment variable.",
    });
    return { diagnostics };
  }
  const s = (k: string, envKey: string): string => (typeof cfg[k] === "string" ? (cfg[k] as string) : (env[envKey] ?? ""));
  const endpoint = s("endpoint", "PROXMOX_VE_ENDPOINT");
  const insecure = typeof cfg.insecure === "boolean" ? cfg.insecure : envBool(env.PROXMOX_VE_INSECURE);
  const apiToken = s("api_token", "PROXMOX_VE_API_TOKEN");
  const username = s("username", "PROXMOX_VE_USERNAME");
  const password = s("password", "PROXMOX_VE_PASSWORD");
  const ticket = s("auth_ticket", "PROXMOX_VE_AUTH_TICKET");
  const csrf = s("csrf_prevention_token", "PROXMOX_VE_CSRF_PREVENTION_TOKEN");

  if (endpoint === "") {
    diagnostics.push({
      severity: "ERROR",
      summary: "Missing Proxmox VE API Endpoint",
      detail: "The provider cannot create the Proxmox VE API client as there is a missing or empty value for the API endpoint. Set the host value in the configuration or use the PROXMOX_VE_ENDPOINT environment variable. If either is already set, ensure the value is not empty.",
    });
    return { diagnostics };
  }

  let auth: PveAuth | undefined;
  let credError: string | undefined;
  if (apiToken !== "") {
    if (TOKEN_RE.test(apiToken)) auth = { kind: "token", token: apiToken };
    else credError = "the API token must be in the format 'USER@REALM!TOKENID=UUID'";
  } else if (ticket !== "" && csrf !== "") {
    credError = "ticket credentials are not supported by the provider stand-in";
  } else if (username !== "" && password !== "") {
    if (username.includes("@")) auth = { kind: "password", username, password };
    else credError = "the username must end with '@pve' or '@pam'";
  } else {
    credError = "must provide either username and password, an API token, or a ticket";
  }
  if (credError) diagnostics.push({ severity: "ERROR", summary: "Unable to create Proxmox VE API credentials", detail: credError });

  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch {
    diagnostics.push({ severity: "ERROR", summary: "Unable to create Proxmox VE API connection", detail: "you must specify a valid endpoint for the Proxmox Virtual Environment API (valid: https://host:port/)" });
  }
  // bpg refuses anything but https; the stand-in also takes http, which is what the simulator serves.
  if (url && url.protocol !== "https:" && url.protocol !== "http:") {
    diagnostics.push({ severity: "ERROR", summary: "Unable to create Proxmox VE API connection", detail: "you must specify a secure endpoint for the Proxmox Virtual Environment API (valid: https://host:port/)" });
  }
  if (diagnostics.length > 0 || !auth) return { diagnostics };
  const secrets = auth.kind === "token" ? [auth.token, auth.token.split("=").slice(1).join("=")] : [auth.password];
  return { settings: { endpoint, insecure, auth, secrets }, diagnostics };
}
