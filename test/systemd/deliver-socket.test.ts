// JIT delivery through the socket-activated root unit, end to end on a real unix socket:
// listener (PctHelperDelivery) -> deliver-jit-client -> socket -> deliver-jit-socket -> deliver-jit
// -> a recording `pct`. Socket activation with Accept=yes is emulated by a tiny server that starts
// one wrapper per connection with the connection as its stdin and stdout, as systemd does
// (and, where it is installed, by systemd-socket-activate itself).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pino } from "pino";
import { PctHelperDelivery } from "../../listener/adapters/jit/jit-delivery.js";
import { writeRecordingPct } from "../fixtures/recording-pct.js";

const root = resolve(import.meta.dirname, import.meta.url.endsWith(".ts") ? "../.." : "../../..");
const wrapper = join(root, "systemd", "deliver-jit-socket");
const client = join(root, "systemd", "deliver-jit-client");
const helper = join(root, "systemd", "deliver-jit");
const SECRET = "eyJydW5uZXIiOiJqaXQtY29uZmlnIiwib3ZlciI6InRoZS1zb2NrZXQifQ==";
/** The client's interpreter, as on every PVE host. */
const hasPython = existsSync("/usr/bin/python3");

interface Activation {
  sock: string;
  journal: string[];
  close(): Promise<void>;
}

/** Accept=yes, StandardInput=socket, StandardOutput=socket, StandardError=journal. */
function activate(sock: string, env: NodeJS.ProcessEnv): Promise<Activation> {
  const journal: string[] = [];
  const children = new Set<ChildProcess>();
  const server: Server = createServer({ pauseOnConnect: true }, (conn) => {
    const child = spawn(wrapper, [], { stdio: [conn, conn, "pipe"], env });
    children.add(child);
    child.stderr!.on("data", (b: Buffer) => journal.push(...b.toString().split("\n").filter(Boolean)));
    child.on("spawn", () => conn.destroy()); // the child holds its own copy of the connection
    child.on("close", () => children.delete(child));
  });
  return new Promise((res) =>
    server.listen(sock, () =>
      res({
        sock,
        journal,
        close: () =>
          new Promise<void>((r) => {
            for (const c of children) c.kill();
            server.close(() => r());
          }),
      }),
    ),
  );
}

/** Asynchronous: the activation server runs in this process and must keep accepting. */
function runClient(args: string[], stdin: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const c = spawn(client, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => c.kill("SIGKILL"), 20_000);
    c.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    c.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    c.on("close", (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
    c.stdin.on("error", () => {});
    c.stdin.end(stdin);
  });
}

describe("JIT delivery through pve-runners-deliver.socket", { skip: hasPython ? false : "/usr/bin/python3 is not installed (every PVE host has it)" }, () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let act: Activation;
  const configs: Record<string, string> = {
    "301": "hostname: runner-aa11\ntags: pve-runners;pve-runners-runner-aa11\nunprivileged: 1\n",
    "302": "hostname: runner-bb22\ntags: other\nunprivileged: 1\n",
    "303": "hostname: runner-cc33\ntags: pve-runners\ntemplate: 1\nunprivileged: 1\n",
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "jit-sock-"));
    writeRecordingPct(dir, configs);
    env = { PATH: `${dir}:${process.env.PATH}`, PVE_RUNNERS_DELIVER_JIT: helper, PVE_RUNNERS_HEADER_TIMEOUT: "2" };
    act = await activate(join(dir, "deliver.sock"), env);
  });
  after(async () => {
    await act.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const clientEnv = () => ({ PATH: process.env.PATH, PVE_RUNNERS_DELIVER_SOCKET: act.sock });

  test("the client delivers the config into our container and exits 0", async () => {
    const r = await runClient(["301", "runner-aa11"], SECRET + "\n", clientEnv());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(dir, "exec-301.stdin"), "utf8"), SECRET + "\n");
    const argv = readFileSync(join(dir, "exec-301.argv"), "utf8").split("\n");
    assert.deepEqual(argv.slice(0, 5), ["exec", "301", "--keep-env", "0", "--"]);
    assert.ok(!argv.join(" ").includes(SECRET));
    assert.equal(r.stdout, "");
    assert.ok(act.journal.some((l) => /CT 301 \(runner-aa11\): JIT config delivered/.test(l)));
    assert.ok(!act.journal.join("\n").includes(SECRET), "the config is never logged");
  });

  test("a refusal comes back with deliver-jit's reason and exit status", async () => {
    const cases: Array<[string, string, RegExp, number]> = [
      ["301", "runner-zz99", /is not runner-zz99/, 3],
      ["302", "runner-bb22", /not tagged pve-runners/, 3],
      ["303", "runner-cc33", /template/, 3],
      ["399", "runner-ee55", /does not exist/, 3],
    ];
    for (const [vmid, runner, why, code] of cases) {
      const r = await runClient([vmid, runner], SECRET, clientEnv());
      assert.equal(r.code, code, `${vmid} ${runner}: ${r.stderr}`);
      assert.match(r.stderr, why);
      assert.ok(!r.stderr.includes(SECRET));
      assert.equal(existsSync(join(dir, `exec-${vmid}.stdin`)), vmid === "301");
    }
  });

  test("the client refuses bad arguments before connecting", async () => {
    for (const args of [["12", "runner-aa11"], ["301", "../etc"], ["301"], ["301", "runner-aa11", "x"]]) {
      const r = await runClient(args, SECRET, clientEnv());
      assert.equal(r.code, 2, args.join(" "));
    }
    assert.equal((await runClient(["301", "runner-aa11"], "", clientEnv())).code, 2, "no config");
    assert.equal((await runClient(["301", "runner-aa11"], "x".repeat(65_537), clientEnv())).code, 2, "over 64 KiB");
  });

  test("the wrapper refuses a malformed request line, whoever connects", async () => {
    const { createConnection } = await import("node:net");
    for (const req of ["301 runner-aa11; rm -rf /\n" + SECRET, "301\n" + SECRET, "\n", "301  runner-aa11\n"]) {
      const answer = await new Promise<string>((res, rej) => {
        const c = createConnection(act.sock);
        let buf = "";
        c.on("data", (b) => (buf += b.toString()));
        c.on("end", () => res(buf));
        c.on("error", rej);
        c.end(req);
      });
      assert.match(answer, /bad request line[^\n]*\nexit 2\n$/, JSON.stringify(req));
      assert.ok(!answer.includes(SECRET));
    }
  });

  test("a connection that never sends its request line is closed after the header timeout", async () => {
    const { createConnection } = await import("node:net");
    const t0 = Date.now();
    const answer = await new Promise<string>((res, rej) => {
      const c = createConnection(act.sock);
      let buf = "";
      c.on("data", (b) => (buf += b.toString()));
      c.on("end", () => (c.end(), res(buf)));
      c.on("error", rej);
    });
    assert.match(answer, /no request line within 2s\nexit 2\n$/);
    assert.ok(Date.now() - t0 < 10_000);
  });

  test("the socket missing is a clear temporary failure (75)", async () => {
    const r = await runClient(["301", "runner-aa11"], SECRET, { ...clientEnv(), PVE_RUNNERS_DELIVER_SOCKET: join(dir, "nope.sock") });
    assert.equal(r.code, 75);
    assert.match(r.stderr, /cannot connect to .*nope\.sock.*pve-runners-deliver\.socket/);
  });

  test("the listener uses the client as its delivery helper (delivery.helper: [deliver-jit-client])", async () => {
    rmSync(join(dir, "exec-301.stdin"), { force: true });
    const d = new PctHelperDelivery({ command: [client], env: clientEnv(), logger: pino({ level: "silent" }) });
    await d.deliver({ node: "pve", vmid: 301, runner: "runner-aa11", jitConfig: SECRET });
    assert.equal(readFileSync(join(dir, "exec-301.stdin"), "utf8"), SECRET + "\n");
    await assert.rejects(d.deliver({ node: "pve", vmid: 302, runner: "runner-bb22", jitConfig: SECRET }), (err: Error) => {
      assert.match(err.message, /exit 3.*not tagged pve-runners/s);
      assert.ok(!err.message.includes(SECRET));
      return true;
    });
  });

  test("with systemd-socket-activate as the activator", { skip: spawnSync("systemd-socket-activate", ["--version"], { stdio: "ignore" }).status === 0 ? false : "systemd-socket-activate is not installed" }, async () => {
    const sock = join(dir, "ssa.sock");
    const ssa = spawn("systemd-socket-activate", ["--listen", sock, "--accept", "--inetd", "-E", "PATH", "-E", "PVE_RUNNERS_DELIVER_JIT", wrapper], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "";
    ssa.stderr!.on("data", (b: Buffer) => (log += b.toString()));
    try {
      for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
      rmSync(join(dir, "exec-301.stdin"), { force: true });
      const ok = await runClient(["301", "runner-aa11"], SECRET, { ...clientEnv(), PVE_RUNNERS_DELIVER_SOCKET: sock });
      assert.equal(ok.code, 0, ok.stderr + log);
      assert.equal(readFileSync(join(dir, "exec-301.stdin"), "utf8"), SECRET + "\n", "deliver-jit ends the config with one newline");
      const no = await runClient(["302", "runner-bb22"], SECRET, { ...clientEnv(), PVE_RUNNERS_DELIVER_SOCKET: sock });
      assert.equal(no.code, 3);
      assert.match(no.stderr, /not tagged pve-runners/);
    } finally {
      ssa.kill();
    }
  });
});
