// `pve-runners sim world`: the stand-ins together and a config; the `serve` command it prints runs
// the real listener against them, and a job queued at the fake GitHub is served.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { freePort } from "../../sim/fault-run.js";

const cli = fileURLToPath(new URL("../../cli/main.js", import.meta.url));

function collect(child: ChildProcess): { text: () => string } {
  let out = "";
  child.stdout!.on("data", (b) => (out += b));
  child.stderr!.on("data", (b) => (out += b));
  return { text: () => out };
}

async function until<T>(what: string, f: () => T | undefined | Promise<T | undefined>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test("sim world prints a serve command that works: a queued job is served", { timeout: 240_000 }, async () => {
  const [port, adminPort] = [await freePort(), await freePort()];
  const world = spawn(process.execPath, [cli, "sim", "world", "--port", String(port), "--admin-port", String(adminPort)], { stdio: ["ignore", "pipe", "pipe"] });
  const worldOut = collect(world);
  let serve: ChildProcess | undefined;
  try {
    const text = await until("the world's instructions", () => (/serve --config \S+/.test(worldOut.text()) ? worldOut.text() : undefined), 60_000);
    const envLine = /^ {2}env (.*) \\$/m.exec(text)?.[1];
    const config = /serve --config (\S+)/.exec(text)?.[1];
    const github = /GitHub \(fake\)\s+(http:\/\/\S+)/.exec(text)?.[1];
    assert.ok(envLine && config && github, text);
    // The printed env: KEY=value pairs (values here have no spaces or quotes).
    const env = Object.fromEntries(envLine.split(" ").map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
    serve = spawn(process.execPath, [cli, "serve", "--config", config], { env: { ...process.env, ...env, LOG_LEVEL: "warn" }, stdio: ["ignore", "pipe", "pipe"] });
    const serveOut = collect(serve);
    await until("the listener", () => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => (r.ok ? true : undefined), () => undefined), 60_000).catch((err) => assert.fail(`${err.message}\n${serveOut.text()}`));
    const job = (await (await fetch(`${github}/_sim/jobs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 300 }) })).json()) as { id: number };
    const done = await until("the job to complete", async () => {
      const jobs = (await (await fetch(`${github}/_sim/jobs`)).json()) as Array<{ id: number; status: string; conclusion: string | null; runnerName: string | null }>;
      const j = jobs.find((x) => x.id === job.id);
      return j?.status === "completed" ? j : undefined;
    }, 150_000).catch((err) => assert.fail(`${err.message}\n${serveOut.text()}`));
    assert.equal(done.conclusion, "success");
    assert.match(done.runnerName ?? "", /^runner-[0-9a-f]{8}$/);
  } finally {
    for (const c of [serve, world]) if (c && c.exitCode === null) c.kill("SIGTERM");
    await Promise.all([serve, world].map((c) => (c && c.exitCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
  }
});
