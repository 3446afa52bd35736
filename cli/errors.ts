// How the CLI ends on an error: a person's mistake gets one line saying what to do, never a stack
// trace; an unexpected internal error gets one line and a pointer to --debug, which shows the stack.
import { CommanderError, InvalidArgumentError } from "commander";

/** A mistake in what the user asked for: its message is the whole story. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = "UserError";
  }
}

/** The one line to print for `err`, and the exit code; the stack only for internal errors under --debug. */
export function describeCliError(err: unknown, debug: boolean): { text: string; exitCode: number } {
  if (err instanceof UserError) return { text: `pve-runners: ${err.message}\n`, exitCode: err.exitCode };
  // Thrown from an action (an option parser's is caught and printed by commander itself).
  if (err instanceof InvalidArgumentError) return { text: `pve-runners: ${err.message}\n`, exitCode: 2 };
  // Commander has printed its own line already (unknown option, missing argument, --help).
  if (err instanceof CommanderError) return { text: "", exitCode: err.exitCode };
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if (e?.code === "EADDRINUSE") return { text: `pve-runners: ${e.address ?? "the address"}:${e.port ?? "?"} is in use (is pve-runners already running?)\n`, exitCode: 1 };
  if (e?.code === "EACCES" && e.syscall === "listen") return { text: `pve-runners: not allowed to listen on ${e.address}:${e.port} (a port below 1024 needs privileges)\n`, exitCode: 1 };
  const message = err instanceof Error ? err.message : String(err);
  return debug
    ? { text: `pve-runners: internal error: ${err instanceof Error ? err.stack : message}\n`, exitCode: 70 }
    : { text: `pve-runners: internal error: ${message.split("\n")[0]} (run with --debug for details)\n`, exitCode: 70 };
}
