// `npx cdktn deploy template` with the repository's cdktf.json, against the stand-in world, the
// way an operator builds the template (README, "Install on a PVE host" step 6): the cdktn CLI runs
// the app (dist/stacks/main.js), then terraform init and apply in cdktf.out/stacks/template, as
// root@pam with the password by env, the provisioners calling the world's `pct` stand-in. Run by
// .ci/node22-smoke on Node >= 22.19 (cdktn-cli's floor) from a clean clone, after `npm run build`.
//
//   node .ci/cdktn-deploy-smoke.mjs <path of the cdktn executable>
import { spawn } from "node:child_process";
import { pino } from "pino";
import { startWorld } from "../dist/sim/world.js";
import { SIM_ROOT_PASSWORD, TEMPLATE_BUILD_MARKER } from "../dist/sim/pve/index.js";

const cdktn = process.argv[2];
if (!cdktn) throw new Error("usage: cdktn-deploy-smoke.mjs <cdktn>");
const world = await startWorld({ logger: pino({ level: "warn" }), templates: [], timeScale: 0.05 });
let code = 1;
try {
  const vmid = world.config.proxmox.templateVmid;
  // Asynchronously: the stand-ins answer from this process.
  // --skip-provider-lock: `terraform providers lock` asks the registry itself, whatever the CLI
  // config says; here bpg/proxmox comes from the stand-in's filesystem mirror only (no network).
  const child = spawn(cdktn, ["deploy", "template", "--auto-approve", "--skip-provider-lock"], {
    stdio: "inherit",
    env: {
      ...process.env,
      ...world.serveEnv,
      PVE_RUNNERS_CONFIG: world.configFile,
      TF_CLI_CONFIG_FILE: world.config.terraform.cliConfigFile,
      PROXMOX_VE_USERNAME: "root@pam",
      PROXMOX_VE_PASSWORD: SIM_ROOT_PASSWORD,
      CHECKPOINT_DISABLE: "1",
    },
  });
  const status = await new Promise((resolve) => child.once("exit", resolve));
  const ct = world.pve.container(vmid);
  const record = world.pve.guestFile(vmid, TEMPLATE_BUILD_MARKER) ?? "";
  if (status !== 0) console.error(`cdktn-deploy-smoke: cdktn deploy exited ${status}`);
  else if (!ct?.template) console.error(`cdktn-deploy-smoke: no template ${vmid} after the deploy`);
  else if (!/^runner \S+/.test(record)) console.error(`cdktn-deploy-smoke: template ${vmid} has no record of its runner`);
  else {
    console.log(`cdktn-deploy-smoke: template ${world.config.proxmox.node}/${vmid} built by npx cdktn deploy (${record.split("\n")[0]})`);
    code = 0;
  }
} finally {
  await world.stop();
}
process.exit(code);
