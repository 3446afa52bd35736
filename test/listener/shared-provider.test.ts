// SharedProvider on a fake `-debug` provider (a shell script that prints bpg's reattach line and
// serves until SIGINT): one process however many runs ask at once, a new one after it dies, and
// none left behind at stop.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { SharedProvider } from "../../listener/shared-provider.js";

let dir = "";
let starts = "";
let exe = "";

before(() => {
  dir = mkdtempSync(join(tmpdir(), "shared-provider-"));
  starts = join(dir, "starts");
  exe = join(dir, "terraform-provider-proxmox_v0.111.1");
  // What tf6server's managed debug prints; the socket path inside PLUGIN_UNIX_SOCKET_DIR.
  writeFileSync(
    exe,
    [
      "#!/bin/sh",
      `echo $$ >> '${starts}'`,
      `json='{"registry.terraform.io/bpg/proxmox":{"Protocol":"grpc","ProtocolVersion":6,"Pid":'$$',"Test":true,"Addr":{"Network":"unix","String":"'"$PLUGIN_UNIX_SOCKET_DIR"'/plugin1/s"}}}'`,
      `printf 'Provider started. To attach Terraform CLI, set the TF_REATTACH_PROVIDERS environment variable with the following:\\n\\n\\tTF_REATTACH_PROVIDERS='"'"'%s'"'"'\\n\\n' "$json"`,
      "trap 'exit 0' INT",
      "while :; do sleep 0.05; done",
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
});
after(() => rmSync(dir, { recursive: true, force: true }));

const startedPids = () => (existsSync(starts) ? readFileSync(starts, "utf8").trim().split("\n").filter(Boolean).map(Number) : []);
const alive = (pid: number) => {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
};

function provider(socketDir: string): SharedProvider {
  return new SharedProvider({ executable: async () => exe, socketDir, launchScript: 'exec "$0" "$@"', scrub: (t) => t, logger: pino({ level: "silent" }) });
}

test("runs that ask at once share one process; after it dies, runs that ask at once start one new one; stop leaves none", async () => {
  rmSync(starts, { force: true });
  const p = provider(join(dir, "sock-a"));
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
  const first = await Promise.all(Array.from({ length: 6 }, () => p.acquire(env)));
  assert.equal(startedPids().length, 1, "one start for six concurrent runs");
  assert.equal(new Set(first.map((l) => l.reattach)).size, 1);
  assert.equal(JSON.parse(first[0].reattach)["registry.terraform.io/bpg/proxmox"].Addr.String, join(dir, "sock-a", "plugin1", "s"));
  for (const l of first) l.release();

  const [pid1] = startedPids();
  process.kill(pid1, "SIGKILL");
  for (let i = 0; i < 100 && (await p.pid()) !== undefined; i++) await new Promise((r) => setTimeout(r, 20));
  const second = await Promise.all(Array.from({ length: 6 }, () => p.acquire(env)));
  assert.equal(startedPids().length, 2, "one new start for six concurrent runs after the death");
  assert.equal(await p.pid(), startedPids()[1]);
  for (const l of second) l.release();

  await p.stop();
  for (const pid of startedPids()) assert.equal(alive(pid), false, `pid ${pid} is gone`);
  await assert.rejects(p.acquire(env), /stopped/);
});

test("a changed environment (the clone gate's URL) gets a new process; the old one goes once its last run is done", async () => {
  rmSync(starts, { force: true });
  const p = provider(join(dir, "sock-b"));
  const a = await p.acquire({ PROXMOX_VE_ENDPOINT: "https://a/" });
  const b = await p.acquire({ PROXMOX_VE_ENDPOINT: "https://b/" });
  const [oldPid, newPid] = startedPids();
  assert.ok(newPid !== undefined && newPid !== oldPid);
  assert.equal(alive(oldPid), true, "the old one still serves the run attached to it");
  a.release();
  for (let i = 0; i < 100 && alive(oldPid); i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(alive(oldPid), false);
  b.release();
  await p.stop();
  assert.equal(alive(newPid), false);
});

test("a provider an earlier listener left is stopped before the next one starts", async () => {
  rmSync(starts, { force: true });
  const socketDir = join(dir, "sock-c");
  const earlier = provider(socketDir);
  (await earlier.acquire({})).release();
  const [leftPid] = startedPids();
  // The earlier listener dies without stop(): a new SharedProvider (the next listener) starts.
  const next = provider(socketDir);
  (await next.acquire({})).release();
  for (let i = 0; i < 100 && alive(leftPid); i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(alive(leftPid), false);
  await next.stop();
});
