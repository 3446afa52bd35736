// The GitHub Actions runner version the template bakes in. template/provision.sh pins it (with its
// SHA-256 sums, side by side); this reads that pin so the template stack can tag the template with
// it and the stand-ins can seed templates that carry it. One source: the script.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseRunnerVersion } from "../listener/templates/runner-release.js";

/** template/ of this package (dist/stacks/ → ../../template). */
export const PACKAGE_TEMPLATE_DIR = fileURLToPath(new URL("../../template", import.meta.url));

const PIN = /^RUNNER_VERSION="\$\{RUNNER_VERSION:-([^}"]+)\}"$/m;

/** The version provision.sh in `templateDir` installs (its default: `pct exec --keep-env 0` passes no override). */
export function pinnedRunnerVersion(templateDir: string = PACKAGE_TEMPLATE_DIR): string {
  const file = join(templateDir, "provision.sh");
  let src: string;
  try {
    src = readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  const v = PIN.exec(src)?.[1];
  if (!v || !parseRunnerVersion(v)) throw new Error(`${file}: no RUNNER_VERSION="\${RUNNER_VERSION:-X.Y.Z}" pin found`);
  return v;
}
