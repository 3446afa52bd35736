// `pve-runners serve`, `pve-runners demo`, `pve-runners stack synth`.
import { Command, InvalidArgumentError } from "commander";
import { resolve } from "node:path";
import { createLogger } from "./log.js";
import { ConfigError, SIMULATOR_PVE_ENV, loadConfig, orExit } from "../listener/app/config.js";
import { buildParts, startService } from "../listener/app/service.js";
import { StateDirBusyError } from "../listener/app/state-lock.js";
import { sweep, sweepActionTarget, type SweepReport } from "../sweeper/sweep.js";
import { runningAsRoot } from "../listener/adapters/terraform/trusted-path.js";
import { adminRequest } from "./admin.js";
import { templateCopies } from "../listener/lifecycle/placement.js";
import { deleteTimeoutFor, runnerNameProblem, synthRunnerStack } from "../stacks/runner-stack.js";
import { PortInUseError } from "../listener/app/port-check.js";
import { UserError } from "./errors.js";
import { plural } from "./text.js";

const positive = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("must be a positive number");
  return n;
};

const positiveInteger = (v: string) => {
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError("must be a positive integer");
  return n;
};

/** The simulator world's plain-http PVE, when it runs this listener (sim/fault-run.ts). */
const simulatorPveEndpoint = () => process.env[SIMULATOR_PVE_ENV] || undefined;

function loadOrExit(path: string, o: { readSecrets?: boolean } = {}) {
  return orExit(path, () =>
    // Without secrets to read (stack synth), `${CREDENTIALS_DIRECTORY}` may stay unset.
    loadConfig(path, { readSecrets: o.readSecrets, simulatorPveEndpoint: simulatorPveEndpoint() }),
  );
}

/** A sweep report as lines; control characters dropped (as root, the report comes from the listener). */
function printSweep(report: SweepReport, dryRun: boolean): void {
  // eslint-disable-next-line no-control-regex -- dropping them is the point
  const line = (s: string) => process.stdout.write(`${String(s).replace(/[\x00-\x1f\x7f]/g, " ")}\n`);
  for (const a of report.actions ?? []) line(`${dryRun ? "would " : ""}${a.kind} ${sweepActionTarget(a)}: ${a.reason}`);
  for (const e of report.errors ?? []) line(`error: ${e}`);
  line(`sweep: ${plural(report.containers, "container")}, ${plural(report.registrations, "registration")}, ${plural(report.stackDirs, "stack dir")} seen; ${plural(report.actions?.length ?? 0, "action")}, ${plural(report.errors?.length ?? 0, "error")}`);
  process.exitCode = report.errors?.length ? 1 : 0;
}

export function registerRunCommands(program: Command): void {
  program
    .command("serve")
    .description("run the webhook listener: one fresh LXC runner per queued job, destroyed when done")
    .option("--config <path>", "config file", "/etc/pve-runners/config.yaml")
    .action(async (o: { config: string }) => {
      const { config, secrets } = loadOrExit(o.config);
      const log = createLogger({ level: config.log?.level });
      const service = await startService(config, secrets, log).catch((err) => {
        // A busy port, or another instance holding the state dir: one line, non-zero, nothing touched.
        if (err instanceof PortInUseError) throw new UserError(err.message, 1);
        if (!(err instanceof StateDirBusyError)) throw err;
        process.stderr.write(`${err.message}\n`);
        process.exit(1);
      });
      const stop = (sig: string) => {
        log.info({ sig }, "stopping: runners keep their recorded state and are resumed at the next start");
        service.stop().then(() => process.exit(0), (err) => {
          log.error({ err: String(err) }, "stop failed");
          process.exit(1);
        });
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      // systemctl reload: a bad file is reported and the running config kept.
      process.on("SIGHUP", () => {
        try {
          service.reload(loadConfig(o.config, { simulatorPveEndpoint: simulatorPveEndpoint() }).config);
        } catch (err) {
          const problems = err instanceof ConfigError ? err.problems : [String(err)];
          log.error({ problems }, "config reload refused: the file is not valid; running on as before");
        }
      });
    });

  program
    .command("sweep")
    .description("one sweeper pass: destroy orphaned or finished runner containers, stale registrations and stack dirs")
    .option("--config <path>", "config file", "/etc/pve-runners/config.yaml")
    .option("--dry-run", "report what would be done, change nothing", false)
    .option("--url <url>", "as root: the listener's admin API base URL (default: from the config)")
    .option("--token-file <path>", "as root: the admin token (default: $PVE_RUNNERS_ADMIN_TOKEN_FILE, else admin.tokenFile of the config)")
    .action(async (o: { config: string; dryRun: boolean; url?: string; tokenFile?: string }) => {
      if (runningAsRoot()) {
        // The stack dirs are the pve-runners user's: root never runs terraform there (a provider
        // planted by a compromised listener would run as root). The listener sweeps, as itself.
        const report = await adminRequest<SweepReport>(o, "POST", "/api/sweep", { dryRun: o.dryRun });
        printSweep(report, o.dryRun);
        return;
      }
      const { config, secrets } = loadOrExit(o.config);
      // stdout is the report; the log (warnings and worse unless LOG_LEVEL says more) goes to stderr.
      const log = createLogger({ level: process.env.LOG_LEVEL ?? "warn", stderr: true });
      const { store, sweepDeps } = buildParts(config, secrets, log, { dryRun: o.dryRun });
      try {
        printSweep(await sweep(sweepDeps(), { dryRun: o.dryRun }), o.dryRun);
      } finally {
        store.close();
      }
    });

  program
    .command("demo")
    .description("run the main job end to end on the embedded stand-ins (PVE simulator, fake GitHub, real terraform)")
    .option("--jobs <n>", "how many jobs to queue (an integer)", positiveInteger, 8)
    .option("--time-scale <x>", "scale of simulated latencies (1 = realistic)", positive, 0.05)
    .option("--timeout <s>", "give up after this many seconds", positive, 240)
    .option("--build-template", "start without a template and build it first with the template stack (terraform, root@pam, pct stand-in)")
    .action(async (o: { jobs: number; timeScale: number; timeout: number; buildTemplate?: boolean }) => {
      const { runDemo, demoLogger } = await import("./demo.js");
      const out = (l: string) => process.stdout.write(l + "\n");
      const r = await runDemo({
        jobs: o.jobs,
        buildTemplate: o.buildTemplate === true,
        timeScale: o.timeScale,
        timeoutMs: o.timeout * 1000,
        // Warnings as lines for people; with LOG_LEVEL set, the JSON log.
        logger: process.env.LOG_LEVEL ? createLogger({ level: process.env.LOG_LEVEL }) : demoLogger(out),
        out,
      });
      process.exit(r.ok ? 0 : 1);
    });

  const stack = program.command("stack").description("inspect the terraform stacks pve-runners synthesizes");
  stack
    .command("synth")
    .description("synthesize one runner stack (cdk.tf.json) from the config, for inspection")
    .option("--config <path>", "config file", "/etc/pve-runners/config.yaml")
    .option("--label-set <name>", "label set of the runner (default: the first)")
    .option("--name <runner>", "runner name (default: runners.namePrefix + example)")
    .option("--out <dir>", "write the stack here instead of printing it")
    .action(async (o: { config: string; labelSet?: string; name?: string; out?: string }) => {
      const { config } = loadOrExit(o.config, { readSecrets: false });
      const set = o.labelSet ? config.labelSets.find((s) => s.name === o.labelSet) : config.labelSets[0];
      if (!set) throw new UserError(`no label set named '${o.labelSet}' in ${o.config} (it has: ${config.labelSets.map((s) => s.name).join(", ")})`);
      const name = o.name ?? `${config.runners.namePrefix}example`;
      const badName = runnerNameProblem(name);
      if (badName) throw new UserError(`--name '${name}': ${badName}`);
      const { mkdtempSync, readFileSync, rmSync } = await import("node:fs");
      const { tmpdir } = await import("node:os");
      const dir = o.out ? resolve(o.out) : mkdtempSync(`${tmpdir()}/pve-runners-synth-`);
      const p = config.proxmox;
      const copy = templateCopies(p)[0];
      const r = synthRunnerStack(dir, {
        // As the listener synthesizes it: no endpoint, terraform gets the clone gate's from PROXMOX_VE_ENDPOINT.
        // For inspection only: the listener's stacks carry its own controller id (from its store).
        runnerName: name, labelSet: set.name, controllerId: "0000000000000000", node: copy.node,
        templateVmid: copy.vmid, templateNode: copy.sourceNode, pool: p.pool, bridge: p.bridge, vlan: p.vlan,
        linkedClone: p.linkedClone, datastore: p.storage, cores: set.cores, memoryMb: set.memoryMb, swapMb: set.swapMb,
        start: config.delivery.mode !== "env", deleteTimeoutSec: deleteTimeoutFor(config.timeouts.destroy),
      });
      if (o.out) process.stdout.write(`${r.file}\n`);
      else {
        process.stdout.write(readFileSync(r.file, "utf8") + "\n");
        rmSync(dir, { recursive: true, force: true });
      }
    });
}
