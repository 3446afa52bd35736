// One pino logger factory for every entry point. Secrets are redacted by key name
// wherever they appear in a log object, as a second line of defence behind "never log them".
import { pino, type Logger } from "pino";

export const REDACT_PATHS = [
  "token", "*.token", "secret", "*.secret", "jitconfig", "*.jitconfig", "encoded_jit_config", "*.encoded_jit_config",
  "privateKey", "*.privateKey", "apiToken", "*.apiToken", "authorization", "*.authorization", "headers.authorization",
  "req.headers.authorization", "stdin", "*.stdin",
];

/** `stderr`: for commands whose stdout is their answer to a person (one or the other, never mixed). */
export function createLogger(opts: { level?: string; name?: string; stderr?: boolean } = {}): Logger {
  const options = {
    name: opts.name ?? "pve-runners",
    level: opts.level ?? process.env.LOG_LEVEL ?? "info",
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
  };
  return opts.stderr ? pino(options, pino.destination(2)) : pino(options);
}
