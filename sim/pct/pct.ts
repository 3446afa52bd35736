#!/usr/bin/env node
// A stand-in for the `pct` command on a PVE host, backed by the Proxmox VE simulator, so the real
// privileged helper (systemd/deliver-jit) runs unchanged in tests and the demo.
// Supports what the helper uses: `pct config <vmid> [--current]` (options parsed and refused as real
// pct does, sim/pct/config-options.ts) and `pct exec <vmid> [--keep-env 0] -- <cmd…>` (stdin passed in);
// and what the template stack's provisioners use (stacks/template-stack.ts provisionCommands):
// `pct status`, `pct start`, `pct push <vmid> <file> <dest> [--perms]`, `pct shutdown [--timeout N]
// [--forceStop 1]` and `pct template`. Like real pct, start/shutdown wait for their task and fail
// with its error (src/PVE/CLI/pct.pm maps these to the API's vm_start, vm_shutdown, template).
// Environment: PVE_SIM_URL (simulator base URL), PVE_SIM_TOKEN (a root token: pct runs as root), PVE_SIM_NODE.
// Like real pct it acts on its own node (PVE_SIM_NODE) only: pct exec/push load the config on the
// local node (src/PVE/CLI/pct.pm: "test if container exists on this node"), so a container of
// another cluster node is "Configuration file 'nodes/<this node>/lxc/<vmid>.conf' does not exist".
import { readFileSync, statSync } from "node:fs";
import { parseConfigArgs } from "./config-options.js";

const url = process.env.PVE_SIM_URL;
const token = process.env.PVE_SIM_TOKEN;
const node = process.env.PVE_SIM_NODE ?? "pve";

function die(msg: string, code = 255): never {
  process.stderr.write(`${msg}\n`);
  process.exit(code);
}

async function call(method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `PVEAPIToken=${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json().catch(() => ({}))) as { data?: unknown; message?: string };
  if (!res.ok) die((json.message ?? res.statusText).trim());
  return json.data ?? json;
}

async function main(): Promise<void> {
  if (!url || !token) die("pct (simulated): PVE_SIM_URL and PVE_SIM_TOKEN must be set");
  const [sub, vmid, ...rest] = process.argv.slice(2);
  if (sub === "config") {
    const args = parseConfigArgs(process.argv.slice(3));
    if ("error" in args) die(args.error);
    // The simulator keeps no pending changes, so `current` changes nothing there; it is passed on as pct does.
    const query = new URLSearchParams({ ...(args.current ? { current: "1" } : {}), ...(args.snapshot ? { snapshot: args.snapshot } : {}) }).toString();
    const conf = (await call("GET", `/api2/json/nodes/${node}/lxc/${args.vmid}/config${query ? `?${query}` : ""}`)) as Record<string, unknown>;
    const lines = Object.keys(conf)
      .filter((k) => k !== "digest")
      .sort()
      .map((k) => `${k}: ${conf[k]}`);
    process.stdout.write(lines.join("\n") + "\n");
    return;
  }
  if (!sub || !vmid || !/^\d+$/.test(vmid)) die("usage: pct config|status|start|shutdown|template|push|exec <vmid> …");
  const lxc = `/api2/json/nodes/${node}/lxc/${vmid}`;
  if (sub === "status") {
    const st = (await call("GET", `${lxc}/status/current`)) as { status: string };
    process.stdout.write(`status: ${st.status}\n`);
    return;
  }
  if (sub === "start") return waitTask(await call("POST", `${lxc}/status/start`, {}));
  if (sub === "shutdown") {
    const o = options(rest, ["timeout", "forceStop"]);
    return waitTask(await call("POST", `${lxc}/status/shutdown`, { ...(o.timeout ? { timeout: Number(o.timeout) } : {}), ...(o.forceStop ? { forceStop: o.forceStop } : {}) }));
  }
  if (sub === "template") {
    await call("POST", `${lxc}/template`, {});
    return;
  }
  if (sub === "push") {
    const [file, dest, ...more] = rest;
    if (!file || !dest) die("400 not enough arguments\npct push <vmid> <file> <destination> [OPTIONS]");
    const o = options(more, ["perms", "user", "group"]);
    if (o.user !== undefined || o.group !== undefined) die("pct (simulated): push --user/--group is not simulated");
    if (o.perms !== undefined && !/^[0-7]{3,4}$/.test(o.perms)) die(`pct (simulated): --perms must be octal, got '${o.perms}'`);
    let content: Buffer;
    try {
      if (!statSync(file).isFile()) die(`failed to open ${file} for reading`);
      content = readFileSync(file);
    } catch {
      die(`failed to open ${file} for reading`);
    }
    await call("POST", `/_sim/nodes/${node}/lxc/${vmid}/push`, { dest, content: content.toString("base64"), ...(o.perms !== undefined ? { perms: o.perms } : {}) });
    return;
  }
  if (sub === "exec") {
    const dash = rest.indexOf("--");
    if (dash < 0 || dash === rest.length - 1) die("pct exec: missing -- <command>");
    // --keep-env 0: the host's environment never enters the container (the simulator passes none anyway).
    options(rest.slice(0, dash), ["keep-env"]);
    const command = rest.slice(dash + 1);
    const stdin = process.stdin.isTTY ? "" : readFileSync(0, "utf8");
    const r = (await call("POST", `/_sim/nodes/${node}/lxc/${vmid}/exec`, { command, stdin })) as { exitcode: number; stdout?: string; stderr?: string };
    if (r.stdout) process.stdout.write(r.stdout);
    if (r.stderr) process.stderr.write(r.stderr);
    process.exit(r.exitcode ?? 0);
  }
  die(`pct (simulated): unsupported subcommand ${sub}`);
}

/** `--name value` / `--name=value` options, only those listed (pct refuses the rest). */
function options(args: string[], allowed: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const m = /^--?([^=]+)(?:=(.*))?$/.exec(args[i]);
    if (!m) die(`400 too many arguments`);
    if (!allowed.includes(m[1])) die(`Unknown option: ${m[1]}\n400 unable to parse option`);
    const v = m[2] ?? args[++i];
    if (v === undefined) die(`Option ${m[1]} requires an argument\n400 unable to parse option`);
    out[m[1]] = v;
  }
  return out;
}

/** A CLI command waits for its worker; a failed task is the command's error. */
async function waitTask(upid: string): Promise<void> {
  for (;;) {
    const st = (await call("GET", `/api2/json/nodes/${node}/tasks/${encodeURIComponent(upid)}/status`)) as { status: string; exitstatus?: string };
    if (st.status !== "running") {
      if (st.exitstatus !== "OK" && !String(st.exitstatus).startsWith("WARNINGS")) die(String(st.exitstatus));
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

await main();
