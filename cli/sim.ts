// `pve-runners sim …`: run one stand-in of the outside world on its own (tests and demo use them
// in-process; `serve` never does).
import { Command, InvalidArgumentError } from "commander";
import type { Logger } from "pino";
import { readFileSync, writeFileSync } from "node:fs";
import { createLogger } from "./log.js";
import { GitHubSim } from "../sim/github/index.js";
import { PveSim, SIM_TOKENS } from "../sim/pve/index.js";


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
    .description("run a stand-in of the outside world (Proxmox VE, GitHub, the terraform provider) for tests and demos");

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
