// CPU per runner life: one job's runner from queued to destroyed (apply, the listener's state reads,
// destroy), every terraform process the listener starts and every provider process terraform
// starts, each with its CPU time. Figures only, never assertions.
//
// terraform.binary is a wrapper script (below) that runs the real terraform and appends one line per
// run: the subcommand and the CPU of all it waited for (POSIX `times`: terraform and the providers
// it reaped). The provider stand-in appends its own CPU at exit (PVE_SIM_PROVIDER_CPU_LOG), tagged
// with the wrapper's run; terraform's own CPU is the run's total less its providers'.
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import { waitFor } from "../test/e2e/harness.js";
import { cpuSeconds, processCpuSeconds, runJobs, world } from "./scale.js";

export interface CommandCost {
  command: string;
  /** terraform processes the listener started for this subcommand. */
  runs: number;
  /** terraform's own CPU seconds (its providers' subtracted). */
  terraformCpu: number;
  /** Provider processes that recorded their CPU at exit (a SIGKILLed one records nothing). */
  providerStarts: number;
  providerCpu: number;
}

export interface RunCost {
  commands: CommandCost[];
  terraformCpu: number;
  providerCpu: number;
  providerStarts: number;
  /** This process: the listener and the in-process stand-ins (PVE and GitHub simulators). */
  listenerAndStandInsCpu: number;
  /** CPU of `node -e ""` started the same way: the floor any Node provider pays per start. */
  bareNodeStartCpu: number;
  /** CPU of `terraform version`: the floor any terraform process pays on this machine. */
  bareTerraformCpu: number;
  /** terraform.sharedProvider: the one provider's CPU over the runner life (no starts). */
  sharedProvider: boolean;
  summary: string;
}

const ACTIVE = ["requested", "provisioning", "warm", "booting", "idle", "busy", "done", "destroying"] as const;

/** POSIX sh: runs terraform, then appends "PID SUBCOMMAND CHILD-USER CHILD-SYS" (the second line of `times`). */
function wrapperScript(terraform: string, log: string): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return [
    "#!/bin/sh",
    "# bench/run-cost.ts: terraform with its CPU and its providers' recorded per run",
    'PVE_SIM_PROVIDER_CPU_TAG="$$ $1"; export PVE_SIM_PROVIDER_CPU_TAG',
    'cmd=$1',
    `${q(terraform)} "$@"`,
    "rc=$?",
    // Not in a pipe or $(…): a subshell's children are not terraform.
    `times > ${q(log)}.$$`,
    `{ read -r _ _; read -r u s; } < ${q(log)}.$$; rm -f ${q(log)}.$$`,
    `echo "$$ $cmd $u $s" >> ${q(log)}`,
    "exit $rc",
    "",
  ].join("\n");
}

/** "0m1.230000s" (dash) or "0m1.230s" (bash) → seconds. */
function timesSeconds(s: string): number {
  const m = /^(\d+)m([\d.]+)s$/.exec(s);
  return m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
}

async function onPath(name: string): Promise<string> {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (!isAbsolute(dir)) continue;
    const p = join(dir, name);
    if (await access(p, constants.X_OK).then(() => true, () => false)) return p;
  }
  throw new Error(`${name} not found on PATH`);
}

/** Mean CPU seconds of `node -e ""` (children's times after n runs, as the wrapper measures). */
async function bareNodeStart(n: number): Promise<number> {
  return bareStart(n, process.execPath, ["-e", ""]);
}

/** Mean CPU seconds of one run of `argv` (children's times after n runs, as the wrapper measures). */
async function bareStart(n: number, binary: string, args: string[]): Promise<number> {
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", CHECKPOINT_DISABLE: "1" }; // terraform's minimal environment has no NODE_* settings either
  const out = await new Promise<string>((resolve, reject) => {
    const script = `i=0; while [ $i -lt ${n} ]; do "$0" "$@" >/dev/null 2>&1; i=$((i+1)); done; times`;
    const child = spawn("/bin/sh", ["-c", script, binary, ...args], { env, stdio: ["ignore", "pipe", "inherit"] });
    let text = "";
    child.stdout.on("data", (d: Buffer) => (text += d.toString()));
    child.on("error", reject);
    child.on("close", () => resolve(text));
  });
  const [u, s] = out.trim().split("\n")[1].split(/\s+/).map(timesSeconds);
  return (u + s) / n;
}

export async function benchRunCost(o: { timeScale: number; sharedProvider?: boolean }): Promise<RunCost> {
  const dir = await mkdtemp(join(tmpdir(), "pve-runners-run-cost-"));
  const tfLog = join(dir, "terraform-runs.log");
  const providerLog = join(dir, "provider-cpu.log");
  const wrapper = join(dir, "terraform");
  await writeFile(wrapper, wrapperScript(await onPath("terraform"), tfLog), { mode: 0o755 });
  // The listener copies PVE_SIM_PROVIDER_* from its environment into terraform's (listener/adapters/terraform/terraform.ts).
  const before = process.env.PVE_SIM_PROVIDER_CPU_LOG;
  process.env.PVE_SIM_PROVIDER_CPU_LOG = providerLog;
  const e = await world({ timeScale: o.timeScale, nodes: [{ name: "pve" }], templates: [{ node: "pve", vmid: 9000 }], maxRunners: 2, terraformBinary: wrapper, sharedProvider: o.sharedProvider });
  try {
    const gone = () => e.service.store.runners([...ACTIVE]).length === 0;
    // Warm-up: the listener's start (version, init in the shared dir) and a first runner life.
    await runJobs(e, 1, 120_000, 100);
    await waitFor("warm-up runner gone", gone, 120_000);
    await writeFile(tfLog, "");
    await writeFile(providerLog, "");
    const sharedPid = await e.service.sharedProviderPid();
    const shared0 = processCpuSeconds(sharedPid);
    const cpu0 = cpuSeconds();
    await runJobs(e, 1, 120_000, 100);
    await waitFor("the runner destroyed", gone, 120_000);
    const cpu1 = cpuSeconds();
    // The shared provider serves every run: its CPU over this life, read from /proc while it runs.
    const sharedCpu = sharedPid !== undefined && (await e.service.sharedProviderPid()) === sharedPid ? processCpuSeconds(sharedPid) - shared0 : 0;

    const runs = (await readFile(tfLog, "utf8")).trim().split("\n").filter(Boolean).map((l) => {
      const [pid, command, u, s] = l.split(" ");
      return { tag: `${pid} ${command}`, command, cpu: timesSeconds(u) + timesSeconds(s) };
    });
    const providers = (await readFile(providerLog, "utf8")).trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as { tag: string; userMs: number; systemMs: number });
    const byCommand = new Map<string, CommandCost>();
    for (const r of runs) {
      const mine = providers.filter((p) => p.tag === r.tag);
      const pCpu = mine.reduce((a, p) => a + (p.userMs + p.systemMs) / 1000, 0);
      const c = byCommand.get(r.command) ?? { command: r.command, runs: 0, terraformCpu: 0, providerStarts: 0, providerCpu: 0 };
      c.runs += 1;
      c.terraformCpu += r.cpu - pCpu;
      c.providerStarts += mine.length;
      c.providerCpu += pCpu;
      byCommand.set(r.command, c);
    }
    const commands = [...byCommand.values()];
    const sum = (f: (c: CommandCost) => number) => commands.reduce((a, c) => a + f(c), 0);
    const bare = await bareNodeStart(10);
    const bareTerraform = await bareStart(5, await onPath("terraform"), ["version"]);
    const result = {
      commands,
      terraformCpu: sum((c) => c.terraformCpu),
      providerCpu: sum((c) => c.providerCpu) + sharedCpu,
      providerStarts: sum((c) => c.providerStarts),
      listenerAndStandInsCpu: cpu1.own - cpu0.own,
      bareNodeStartCpu: bare,
      bareTerraformCpu: bareTerraform,
      sharedProvider: sharedPid !== undefined,
    };
    const f = (x: number) => x.toFixed(2);
    const each = result.providerStarts ? result.providerCpu / result.providerStarts : NaN;
    const lines = commands.map((c) => `  terraform ${c.command}: ${c.runs} process${c.runs === 1 ? "" : "es"}, ${f(c.terraformCpu)} CPU-s; ${c.providerStarts} provider start${c.providerStarts === 1 ? "" : "s"}, ${f(c.providerCpu)} CPU-s`);
    const summary = [
      `runner life (queued → destroyed)${result.sharedProvider ? ", terraform.sharedProvider on" : ""}, CPU seconds per process kind:`,
      ...lines,
      ...(result.sharedProvider ? [`  shared provider (pid ${sharedPid}, started before this life): ${f(sharedCpu)} CPU-s`] : []),
      `  total: terraform ${f(result.terraformCpu)} s in ${sum((c) => c.runs)} processes; provider stand-in ${f(result.providerCpu)} s in ${result.providerStarts} starts (${f(each)} s each; a bare \`node -e ""\` ${f(bare)} s, so ${f(each - bare)} s each above bare node); listener and in-process stand-ins ${f(result.listenerAndStandInsCpu)} s`,
      `  floor: a bare \`terraform version\` costs ${f(bareTerraform)} CPU-s here, so ${sum((c) => c.runs)} terraform processes cannot cost less than ${f(bareTerraform * sum((c) => c.runs))} s`,
    ].join("\n");
    return { ...result, summary };
  } finally {
    await e.stop();
    if (before === undefined) delete process.env.PVE_SIM_PROVIDER_CPU_LOG;
    else process.env.PVE_SIM_PROVIDER_CPU_LOG = before;
    await rm(dir, { recursive: true, force: true });
  }
}
