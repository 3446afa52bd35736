// Logging to stderr as hclog JSON lines: go-plugin's client parses them, so terraform shows them at
// their own level under TF_LOG / TF_LOG_PROVIDER. stdout belongs to the handshake line alone.
export type Level = "trace" | "debug" | "info" | "warn" | "error";

export interface Log {
  (level: Level, message: string, fields?: Record<string, unknown>): void;
}

export function stderrLog(name = "pve-sim-provider"): Log {
  return (level, message, fields) => {
    const line = { "@level": level, "@message": message, "@module": name, "@timestamp": new Date().toISOString(), ...fields };
    process.stderr.write(JSON.stringify(line) + "\n");
  };
}

/** Never let a credential reach a log line or a diagnostic. */
export function redact(text: string, secrets: Array<string | undefined>): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join("[redacted]");
  return out;
}
