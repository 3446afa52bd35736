// How to run one of our entry points as its own process, whether we run compiled (dist/*.js)
// or from source under tsx (*.ts): wrappers for terraform providers and `pct` need a command line.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** `entryJs` is the .js path next to the calling module; under tsx the .ts source is used instead. */
export function nodeCommandFor(entryJs: string): string[] {
  if (existsSync(entryJs)) return [process.execPath, entryJs];
  const ts = entryJs.replace(/\.js$/, ".ts");
  if (!existsSync(ts)) throw new Error(`entry point not found: ${entryJs}`);
  const tsx = fileURLToPath(import.meta.resolve("tsx"));
  return [process.execPath, "--import", tsx, ts];
}
