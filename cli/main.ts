#!/usr/bin/env node
// The one `pve-runners` command. Subcommands are added as the pipeline grows.
import { Command } from "commander";
import { readFileSync } from "node:fs";
import { registerSimCommands } from "./sim.js";
import { registerRunCommands } from "./run.js";
import { registerTemplateCommands } from "./template.js";
import { registerAdminCommands } from "./admin.js";
import { registerCheckCommand } from "./check.js";
import { describeCliError } from "./errors.js";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
const program = new Command("pve-runners")
  .description("Ephemeral GitHub Actions runners on Proxmox VE: one fresh unprivileged LXC per job")
  .version(pkg.version)
  .option("--debug", "print the stack trace of an internal error")
  .exitOverride();

registerRunCommands(program);
registerCheckCommand(program);
registerTemplateCommands(program);
registerAdminCommands(program);
registerSimCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const { text, exitCode } = describeCliError(err, program.opts<{ debug?: boolean }>().debug === true || !!process.env.PVE_RUNNERS_DEBUG);
  process.stderr.write(text);
  process.exit(exitCode);
}
