// Runs the sweep on a cron schedule inside the listener process; a pass never overlaps the previous one.
import cron from "node-cron";
import type { Logger } from "pino";

export interface SweepSchedule {
  stop(): Promise<void>;
}

export function scheduleSweeps(expression: string, run: () => Promise<unknown>, logger: Logger): SweepSchedule {
  if (!cron.validate(expression)) throw new Error(`sweeper.schedule "${expression}" is not a valid cron expression`);
  const task = cron.schedule(
    expression,
    async () => {
      try {
        await run();
      } catch (err) {
        logger.error({ err: (err as Error).message }, "sweep pass failed; the next one retries");
      }
    },
    { noOverlap: true, name: "pve-runners-sweep" },
  );
  return {
    async stop() {
      await task.stop();
      await task.destroy();
    },
  };
}
