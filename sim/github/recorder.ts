// A webhook endpoint that records what the fake GitHub sends: for tests and debugging.
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  headers: http.IncomingHttpHeaders;
  raw: string;
  json: Record<string, unknown>;
  at: number;
}

export type Responder = (req: RecordedRequest) => { status: number; delayMs?: number };

export class WebhookRecorder {
  readonly received: RecordedRequest[] = [];
  private server?: http.Server;
  private waiters: Array<() => void> = [];
  url = "";
  respond: Responder = () => ({ status: 200 });

  async start(): Promise<string> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const raw = Buffer.concat(chunks).toString("utf8");
        let json: Record<string, unknown> = {};
        try {
          json = JSON.parse(raw) as Record<string, unknown>;
        } catch {
          // keep {}: the test will see the raw body
        }
        const rec: RecordedRequest = { headers: req.headers, raw, json, at: Date.now() };
        this.received.push(rec);
        for (const w of this.waiters.splice(0)) w();
        const { status, delayMs = 0 } = this.respond(rec);
        const reply = () => {
          if (!res.destroyed) res.writeHead(status, { "content-type": "text/plain" }).end(status < 300 ? "ok" : "nope");
        };
        if (delayMs > 0) setTimeout(reply, delayMs).unref();
        else reply();
      });
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhook`;
    return this.url;
  }

  /** Resolves once `pred` holds for what has been received (rejects after `timeoutMs`). */
  async waitFor(pred: (all: RecordedRequest[]) => boolean, timeoutMs = 5_000): Promise<RecordedRequest[]> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.received)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`webhook condition not met in ${timeoutMs} ms; got ${this.received.map(describe).join(", ")}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.received;
  }

  /** `action` of each workflow_job received for `jobId`, in arrival order. */
  actionsFor(jobId: number): string[] {
    return this.received.filter((r) => (r.json.workflow_job as { id?: number } | undefined)?.id === jobId).map((r) => String(r.json.action));
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}

function describe(r: RecordedRequest): string {
  const job = r.json.workflow_job as { id?: number } | undefined;
  return `${String(r.json.action)}#${job?.id ?? "?"}`;
}
