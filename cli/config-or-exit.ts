// A config problem ends a command with every problem listed and exit status 2.
import { ConfigError } from "../listener/config.js";

export function orExit<T>(path: string, load: () => T): T {
  try {
    return load();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`pve-runners: ${path} is not valid:\n${err.problems.map((p) => `  - ${p}`).join("\n")}\n`);
      process.exit(2);
    }
    throw err;
  }
}
