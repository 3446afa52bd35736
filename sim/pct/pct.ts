#!/usr/bin/env node
// A stand-in for the `pct` command on a PVE host, backed by the Proxmox VE simulator, so the real
// privileged helper (systemd/deliver-jit) runs unchanged in tests and the demo.
// Supports what the helper uses: `pct config <vmid> [--current]` (options parsed and refused as real
// pct does, sim/pct/config-options.ts) and `pct exec <vmid> [--keep-env 0] -- <cmd…>` (stdin passed in).
// Environment: PVE_SIM_URL (simulator base URL), PVE_SIM_TOKEN (a root token: pct runs as root), PVE_SIM_NODE.
// Like real pct it acts on its own node (PVE_SIM_NODE) only: pct exec/push load the config on the
// local node (src/PVE/CLI/pct.pm: "test if container exists on this node"), so a container of
// another cluster node is "Configuration file 'nodes/<this node>/lxc/<vmid>.conf' does not exist".
import { readFileSync } from "node:fs";
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
  if (!sub || !vmid || !/^\d+$/.test(vmid)) die("usage: pct config <vmid> [--current] | pct exec <vmid> [--keep-env 0] -- <command>");
  if (sub === "exec") {
    const dash = rest.indexOf("--");
    if (dash < 0 || dash === rest.length - 1) die("pct exec: missing -- <command>");
    const command = rest.slice(dash + 1);
    const stdin = process.stdin.isTTY ? "" : readFileSync(0, "utf8");
    const r = (await call("POST", `/_sim/nodes/${node}/lxc/${vmid}/exec`, { command, stdin })) as { exitcode: number; stdout?: string; stderr?: string };
    if (r.stdout) process.stdout.write(r.stdout);
    if (r.stderr) process.stderr.write(r.stderr);
    process.exit(r.exitcode ?? 0);
  }
  die(`pct (simulated): unsupported subcommand ${sub}`);
}

await main();
