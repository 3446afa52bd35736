// The /_sim control plane: inspection, faults, latency, time scale, nodes going down and coming
// back, and the host-side powers the API does not have (`pct exec`, a guest powering itself off). Root token only: `pct` runs as
// root on the host, and the listener's least-privilege token must not be able to bypass it.
import express, { Router, type NextFunction, type Request, type Response } from "express";
import { z } from "zod";
import { PveError, permError } from "./errors.js";
import { faultsBodySchema, latencySchema, type FaultsBody, type Latency } from "./faults.js";
import type { ExecResult } from "./shell.js";
import { tokenFrom } from "./api.js";
import type { TokenDef } from "./privileges.js";

export interface ControlHooks {
  tokens(): readonly TokenDef[];
  root: TokenDef;
  state(): Record<string, unknown>;
  containers(): unknown[];
  tasks(): unknown[];
  clones(): unknown;
  holdClones(): void;
  releaseClones(): void;
  faults(): Record<string, unknown>;
  setFaults(f: FaultsBody): void;
  clearFaults(): void;
  latency(): Latency;
  setLatency(l: Partial<Latency>): void;
  setTimeScale(scale: number): void;
  exec(node: string, vmid: number, command: string[], stdin: string): Promise<ExecResult>;
  powerOff(node: string, vmid: number): void;
  push(node: string, vmid: number, dest: string, content: string, perms: number | undefined): void;
  nodes(): unknown[];
  setNodeOnline(node: string, online: boolean): void;
  addTemplate(node: string, vmid: number, o: { pool?: string | null; tags?: string }): unknown;
}

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value ?? {});
  if (!r.success) throw new PveError(400, `${r.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ")}\n`);
  return r.data;
}

const execSchema = z.object({ command: z.array(z.string()).min(1), stdin: z.string().default("") });
/** pct push: the file's bytes base64-encoded, its octal mode. */
const pushSchema = z.object({ dest: z.string().min(1), content: z.string(), perms: z.string().regex(/^[0-7]{3,4}$/).optional() });

export function controlRouter(h: ControlHooks): Router {
  const r = Router();
  r.use(express.json({ limit: "1mb" }));
  r.use((req: Request, _res: Response, next: NextFunction) => {
    const token = tokenFrom(req.get("authorization"), h.tokens());
    if (!token) throw new PveError(401, token === undefined ? "No ticket" : "Authentication failed!", undefined, true);
    if (token.id !== h.root.id) throw permError("/_sim, the simulator's control API needs the root token");
    next();
  });
  const ok = (res: Response, data: unknown) => res.json({ data: data ?? null });

  r.get("/state", (_req, res) => ok(res, h.state()));
  r.get("/containers", (_req, res) => ok(res, h.containers()));
  r.get("/tasks", (_req, res) => ok(res, h.tasks()));
  r.get("/clones", (_req, res) => ok(res, h.clones()));
  r.post("/clones/hold", (_req, res) => {
    h.holdClones();
    ok(res, { held: true });
  });
  r.post("/clones/release", (_req, res) => {
    h.releaseClones();
    ok(res, { held: false });
  });
  r.get("/faults", (_req, res) => ok(res, h.faults()));
  r.post("/faults", (req, res) => {
    h.setFaults(parse(faultsBodySchema, req.body));
    ok(res, h.faults());
  });
  r.delete("/faults", (_req, res) => {
    h.clearFaults();
    ok(res, null);
  });
  r.get("/latency", (_req, res) => ok(res, h.latency()));
  r.post("/latency", (req, res) => {
    h.setLatency(parse(latencySchema, req.body));
    ok(res, h.latency());
  });
  r.post("/time", (req, res) => {
    const { scale } = parse(z.object({ scale: z.number().positive() }), req.body);
    h.setTimeScale(scale);
    ok(res, { scale });
  });
  r.get("/nodes", (_req, res) => ok(res, h.nodes()));
  r.post("/nodes/:node/online", (req, res) => {
    const { online } = parse(z.object({ online: z.boolean() }), req.body);
    h.setNodeOnline(String(req.params.node), online);
    ok(res, h.nodes());
  });
  r.post("/nodes/:node/templates", (req, res) => {
    const o = parse(z.object({ vmid: z.number().int().min(100).max(999_999_999), pool: z.string().nullable().optional(), tags: z.string().optional() }), req.body);
    try {
      ok(res, h.addTemplate(String(req.params.node), o.vmid, { pool: o.pool, tags: o.tags }));
    } catch (err) {
      throw new PveError(400, `${(err as Error).message}\n`);
    }
  });
  r.post("/nodes/:node/lxc/:vmid/exec", async (req, res) => {
    const { command, stdin } = parse(execSchema, req.body);
    ok(res, await h.exec(String(req.params.node), Number(req.params.vmid), command, stdin));
  });
  r.post("/nodes/:node/lxc/:vmid/push", (req, res) => {
    const { dest, content, perms } = parse(pushSchema, req.body);
    h.push(String(req.params.node), Number(req.params.vmid), dest, Buffer.from(content, "base64").toString("utf8"), perms === undefined ? undefined : Number.parseInt(perms, 8));
    ok(res, null);
  });
  r.post("/nodes/:node/lxc/:vmid/poweroff", (req, res) => {
    h.powerOff(String(req.params.node), Number(req.params.vmid));
    ok(res, null);
  });
  r.use((req: Request) => {
    throw new PveError(501, `Method '${req.method} /_sim${req.path}' not implemented`);
  });
  return r;
}
