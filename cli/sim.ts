// `pve-runners sim …`: the stand-ins of the outside world from the CLI: one on its own, or the whole
// world with a config that a real `serve` runs against (tests and demo use them in-process).
import { Command, InvalidArgumentError } from "commander";
import type { Logger } from "pino";
import { readFileSync, writeFileSync } from "node:fs";
import { createLogger } from "./log.js";
import { GitHubSim } from "../sim/github/index.js";
import { PveSim, SIM_TOKENS } from "../sim/pve/index.js";
import { startWorld } from "../sim/world.js";
import { shq } from "../stacks/template-stack.js";


const port = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("must be a port number 0-65535");
  return n;
};
const scale = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("must be a positive number");
  return n;
};

/** Runs until SIGINT/SIGTERM, then stops the server cleanly. */
function untilSignal(stop: () => Promise<void>, log: Logger): void {
  const onSignal = (sig: string) => {
    log.info({ sig }, "stopping");
    stop().then(() => process.exit(0), (err) => { log.error({ err }, "stop failed"); process.exit(1); });
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
}

export function registerSimCommands(program: Command): void {
  const sim = program
    .command("sim")
    .description("run the stand-ins of the outside world (Proxmox VE, GitHub; `world`: both plus the provider mirror) for tests and demos");

  sim
    .command("github")
    .description("stateful fake GitHub API with GitHub's job scheduler and webhook delivery")
    .option("--port <n>", "listen port", port, 8080)
    .option("--host <addr>", "listen address", "127.0.0.1")
    .option("--webhook-url <url>", "where workflow_job webhooks are delivered")
    .option("--webhook-secret <s>", "webhook HMAC secret (prefer --webhook-secret-file)")
    .option("--webhook-secret-file <path>", "file holding the webhook HMAC secret")
    .option("--app-key-out <path>", "write the fake App's private key (PEM) here, for a listener to use")
    .option("--time-scale <x>", "multiply simulated durations by x", scale, 1)
    .action(async (o: { port: number; host: string; webhookUrl?: string; webhookSecret?: string; webhookSecretFile?: string; appKeyOut?: string; timeScale: number }) => {
      const log = createLogger({ name: "sim-github" });
      const secret = o.webhookSecretFile ? readFileSync(o.webhookSecretFile, "utf8").trim() : o.webhookSecret;
      if (o.webhookUrl && !secret) throw new InvalidArgumentError("--webhook-url needs --webhook-secret or --webhook-secret-file");
      const s = new GitHubSim({ webhookUrl: o.webhookUrl, webhookSecret: secret, timeScale: o.timeScale, logger: log });
      const url = await s.start(o.port, o.host);
      if (o.appKeyOut) writeFileSync(o.appKeyOut, s.appPrivateKeyPem, { mode: 0o600 });
      log.info({ url, appId: s.appId, webhookUrl: o.webhookUrl ?? null, appKey: o.appKeyOut ?? null }, "fake GitHub listening");
      untilSignal(() => s.stop(), log);
    });

  sim
    .command("world")
    .description("the whole stand-in world (PVE, GitHub, the provider mirror, a pct stand-in) and a config: prints the `serve` command to run against it")
    .option("--port <n>", "the listener's webhook port (where the fake GitHub delivers)", port, 8790)
    .option("--admin-port <n>", "the listener's admin port", port, 8791)
    .option("--time-scale <x>", "multiply simulated latencies by x (1 = realistic)", scale, 0.05)
    .action(async (o: { port: number; adminPort: number; timeScale: number }) => {
      const log = createLogger({ name: "sim-world", level: process.env.LOG_LEVEL ?? "warn" });
      const world = await startWorld({
        timeScale: o.timeScale,
        logger: log,
        configPatch: (c) => {
          c.listener = { host: "127.0.0.1", port: o.port };
          c.admin = { ...(c.admin as object), host: "127.0.0.1", port: o.adminPort };
        },
      });
      const webhook = `http://127.0.0.1:${o.port}${world.config.github.webhookPath}`;
      world.github.setWebhook(webhook, world.secrets.webhookSecret);
      // Only what serve needs beyond this shell's own environment.
      const env = Object.entries(world.serveEnv).filter(([k, v]) => v !== undefined && process.env[k] !== v);
      const lines = [
        "pve-runners sim world: the stand-ins are up (Ctrl-C stops them and removes their files).",
        `  PVE (simulator)   ${world.pve.url}`,
        `  GitHub (fake)     ${world.github.url}   App id ${world.config.github.appId}`,
        `  config            ${world.configFile}   (secrets in ${world.serveEnv.CREDENTIALS_DIRECTORY})`,
        `  webhooks go to    ${webhook}`,
        "",
        "Run the listener against it, in another shell:",
        `  env ${env.map(([k, v]) => `${k}=${shq(v!)}`).join(" ")} \\`,
        `    node ${shq(process.argv[1])} serve --config ${shq(world.configFile)}`,
        "",
        "Queue a job:",
        `  curl -s -X POST ${world.github.url}/_sim/jobs -H 'content-type: application/json' -d '{"repo":"acme/app","labels":["self-hosted","linux"]}'`,
        `Watch it: pve-runners status --url http://127.0.0.1:${o.adminPort} --token-file ${shq(world.serveEnv.CREDENTIALS_DIRECTORY + "/admin-token")}`,
      ];
      process.stdout.write(lines.join("\n") + "\n");
      untilSignal(() => world.stop(), log);
    });

  sim
    .command("pve")
    .description("Proxmox VE API simulator (/api2/json, tasks, locks, privileges, simulated guests)")
    .option("--port <n>", "listen port", port, 8006)
    .option("--host <addr>", "listen address", "127.0.0.1")
    .option("--time-scale <x>", "multiply simulated latencies by x", scale, 1)
    .option("--tokens-out <path>", "write the simulator's API tokens (JSON) here")
    .action(async (o: { port: number; host: string; timeScale: number; tokensOut?: string }) => {
      const log = createLogger({ name: "sim-pve" });
      const s = new PveSim({ timeScale: o.timeScale, logger: log });
      const url = await s.start(o.port, o.host);
      if (o.tokensOut) writeFileSync(o.tokensOut, JSON.stringify(SIM_TOKENS, null, 2), { mode: 0o600 });
      log.info({ url, tokens: Object.values(SIM_TOKENS).map((t) => t.id), tokensFile: o.tokensOut ?? null }, "Proxmox VE simulator listening");
      untilSignal(() => s.stop(), log);
    });
}
