// One job's timeline, queued → started, at the given time scale: every log line of the listener and
// the stand-ins about it (and every PVE API request), as milliseconds after the job was queued.
// Where benchSingle's time beyond the ideal (clone + start + boot) goes. Figures only.
//
//   node dist/bench/timeline.js [timeScale] [shared]      (default 1; shared: terraform.sharedProvider)
import { pino } from "pino";
import { Writable } from "node:stream";
import { waitFor } from "../test/e2e/harness.js";
import { runJobs, world } from "./scale.js";

interface Line {
  time: number;
  msg: string;
  [k: string]: unknown;
}

export async function jobTimeline(o: { timeScale: number; sharedProvider?: boolean }): Promise<string> {
  const lines: Line[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l) as Line);
      done();
    },
  });
  const logger = pino({ level: "debug" }, sink);
  const e = await world({ timeScale: o.timeScale, nodes: [{ name: "pve" }], templates: [{ node: "pve", vmid: 9000 }], maxRunners: 2, logger, sharedProvider: o.sharedProvider });
  try {
    await runJobs(e, 1, 120_000, 100);
    await waitFor("warm-up runner gone", () => e.service.store.runners(["requested", "provisioning", "booting", "idle", "busy", "done", "destroying"]).length === 0, 120_000);
    const from = lines.length;
    const t0 = Date.now();
    const { ms } = await runJobs(e, 1, 120_000, 100);
    const out = [`one job at time scale ${o.timeScale}: queued → started ${ms[0]} ms`];
    const skip = /^(request (completed|received)|incoming request)$/;
    for (const l of lines.slice(from)) {
      if (skip.test(l.msg)) continue;
      const fields = Object.entries(l)
        .filter(([k]) => !["level", "time", "pid", "hostname", "msg", "name"].includes(k))
        .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : String(v)}`)
        .join(" ")
        .slice(0, 160);
      out.push(`${String(l.time - t0).padStart(6)} ms  ${l.msg}  ${fields}`);
      if (l.time - t0 > ms[0] + 200) break;
    }
    return out.join("\n");
  } finally {
    await e.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await jobTimeline({ timeScale: Number(process.argv[2] ?? 1), sharedProvider: process.argv[3] === "shared" }));
  process.exit(0);
}
