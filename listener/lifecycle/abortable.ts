// A runner's driver stops when the pipeline stops: every wait it makes ends with `Stopped` then.

/** Thrown out of a driver's wait when the pipeline stops; a driver ending with it is not a crash. */
export class Stopped extends Error {}

/** Waits `ms`, or rejects with `Stopped` as soon as `signal` aborts. */
export const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(new Stopped());
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new Stopped());
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });

export function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
