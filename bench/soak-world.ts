// The soak's stand-in world in a process of its own (bench/soak.ts): the fake GitHub and the PVE
// simulator keep every job, delivery and task they ever saw, which would swamp the listener's
// memory figures if they shared its process. Prints one JSON line (where everything is), is driven
// over the stand-ins' /_sim control APIs, and stops (removing its temp dir) when stdin closes.
import { pino } from "pino";
import { startWorld } from "../sim/world.js";

const o = JSON.parse(process.argv[2] ?? "{}") as { timeScale: number; maxRunners: number; labels: string[] };
const world = await startWorld({
  timeScale: o.timeScale,
  logger: pino({ level: "silent" }),
  // Short simulated latencies: the soak is about what accumulates, not about speed.
  latencyMs: { api: 0, cloneLinked: 500, start: 500, stop: 300, shutdown: 300, destroy: 300, jitter: 0 },
  guest: { bootMs: 1_000, poweroffMs: 300, runnerPollMs: 1_000 },
  configPatch: (c) => {
    // env: no `pct` helper process per runner (the soak has no process per runner at all).
    c.delivery = { mode: "env" };
    c.limits = { maxRunners: o.maxRunners, maxRunnersPerRepo: o.maxRunners };
    c.labelSets = [{ name: "soak", labels: o.labels, cores: 1, memoryMb: 512, swapMb: 0, maxRunners: o.maxRunners, warm: 0 }];
    c.timeouts = { apply: 120, destroy: 120, boot: 120, idle: 120 };
    c.log = { level: "warn" };
  },
});
process.stdout.write(
  JSON.stringify({ configFile: world.configFile, credentials: world.config.github.webhookSecretFile.replace(/\/[^/]+$/, ""), pveEndpoint: world.config.proxmox.endpoint, githubUrl: world.github.url }) + "\n",
);
process.stdin.resume();
process.stdin.on("end", () => {
  void world.stop().then(() => process.exit(0));
});
