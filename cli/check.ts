// `pve-runners check --config F`: everything serve needs, one ✓/✗ line per check (listener/preflight.ts).
import { Command } from "commander";
import { SIMULATOR_PVE_ENV } from "../listener/app/config.js";
import { preflight, type CheckResult } from "./preflight.js";
import { plural } from "./text.js";

/** Where install.sh puts the credentials the unit loads: the default outside systemd. */
const CREDENTIALS_DIR = "/etc/pve-runners/credentials";

export function checkLine(r: CheckResult): string {
  const mark = !r.ok ? "✗" : r.warn ? "!" : "✓";
  // eslint-disable-next-line no-control-regex -- answers from PVE and GitHub end up here: one line each
  const clean = (s: string) => s.replace(/[\x00-\x1f\x7f]+/g, " ").trim();
  return `${mark} ${r.what}: ${clean(r.detail)}${r.fix && (!r.ok || r.warn) ? ` → ${clean(r.fix)}` : ""}`;
}

export function registerCheckCommand(program: Command): void {
  program
    .command("check")
    .description("check a config against everything serve needs: secret files, terraform, Proxmox (nodes, templates, the token's privileges) and the GitHub App (key, installations, permissions); one ✓/✗ line each")
    .option("--config <path>", "config file", "/etc/pve-runners/config.yaml")
    .action(async (o: { config: string }) => {
      const results: CheckResult[] = [];
      await preflight(
        o.config,
        { env: { CREDENTIALS_DIRECTORY: CREDENTIALS_DIR, ...process.env }, simulatorPveEndpoint: process.env[SIMULATOR_PVE_ENV] || undefined },
        (r) => {
          results.push(r);
          process.stdout.write(`${checkLine(r)}\n`);
        },
      );
      const failed = results.filter((r) => !r.ok).length;
      process.stdout.write(failed ? `check: ${plural(failed, "problem")} (${results.length} checks)\n` : `check: all ${results.length} checks passed\n`);
      process.exitCode = failed ? 1 : 0;
    });
}
