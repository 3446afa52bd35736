// `npm run fault-run`: the fault run's figures (sim/fault-run.ts). Exits non-zero if it did not settle.
//   npm run fault-run -- --jobs 40 --kills 6
import { parseArgs } from "node:util";
import { FAULT_RUN_DEFAULTS, runFaultRun } from "../sim/fault-run.js";

const { values } = parseArgs({ options: { jobs: { type: "string" }, kills: { type: "string" }, seed: { type: "string" }, "time-scale": { type: "string" }, timeout: { type: "string" } } });
const num = (v: string | undefined, d: number) => (v === undefined ? d : Number(v));
const r = await runFaultRun({
  ...FAULT_RUN_DEFAULTS,
  jobs: num(values.jobs, FAULT_RUN_DEFAULTS.jobs),
  kills: num(values.kills, FAULT_RUN_DEFAULTS.kills),
  seed: num(values.seed, FAULT_RUN_DEFAULTS.seed),
  timeScale: num(values["time-scale"], FAULT_RUN_DEFAULTS.timeScale),
  timeoutMs: num(values.timeout, FAULT_RUN_DEFAULTS.timeoutMs / 1000) * 1000,
  out: (l) => process.stdout.write(l + "\n"),
});
process.exit(r.ok ? 0 : 1);
