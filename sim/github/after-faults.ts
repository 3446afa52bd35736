// After-effect faults: the route's handler runs and commits its effect, then the answer is lost —
// replaced by a 5xx, or the connection is reset without one. What a client sees when GitHub (or a
// proxy in front of it) fails between doing the work and answering.
import type { Request, Response } from "express";
import type { Logger } from "pino";
import type { FaultInjector } from "./faults.js";

/** Headers of the handler's answer that describe a body we no longer send. */
const ANSWER_HEADERS = ["content-type", "content-length", "link", "location", "etag", "last-modified"];

/** Wraps res.end for this request: a 2xx answer is checked against the after-effect rules. */
export function armAfterEffectFaults(req: Request, res: Response, faults: FaultInjector, log: Logger): void {
  if (!faults.hasAfterFaults()) return;
  const method = req.method;
  const path = req.path;
  const end = res.end.bind(res) as (...args: unknown[]) => Response;
  res.end = ((...args: unknown[]) => {
    if (res.statusCode < 200 || res.statusCode >= 300 || res.headersSent) return end(...args);
    const fault = faults.afterEffect(method, path);
    if (!fault) return end(...args);
    log.info({ method, path, status: res.statusCode, lost: fault.drop ? "connection dropped" : fault.error.status }, "after-effect fault: the handler acted, its answer is lost");
    if (fault.drop) {
      res.socket?.destroy();
      return res;
    }
    for (const h of ANSWER_HEADERS) res.removeHeader(h);
    res.statusCode = fault.error.status;
    res.statusMessage = "";
    for (const [k, v] of Object.entries(fault.error.headers)) res.setHeader(k, v);
    const body = JSON.stringify(fault.error.body());
    res.setHeader("content-type", "application/json; charset=utf-8");
    res.setHeader("content-length", String(Buffer.byteLength(body)));
    return end(body);
  }) as Response["end"];
}
