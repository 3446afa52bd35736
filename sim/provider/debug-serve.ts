// The provider's `-debug` mode, as bpg's main.go serves it: tf6server.Serve with WithManagedDebug
// (hashicorp/terraform-plugin-go tfprotov6/tf6server/server.go). One long-lived process that any
// number of terraform runs attach to through TF_REATTACH_PROVIDERS, instead of starting their own.
//
// What the real one does, and this stand-in with it:
// - go-plugin serves in test mode (plugin.ServeTestConfig): no magic cookie check, no AutoMTLS, and
//   on unix a socket made like os.CreateTemp(dir, "plugin") in $PLUGIN_UNIX_SOCKET_DIR, else the
//   temp dir (go-plugin server_unix.go serverListener_unix). By default the socket is writable by
//   its owner only, so only the same user (or root) can connect.
// - stdout gets the human-friendly reattach lines, with the JSON in single quotes:
//     Provider started. To attach Terraform CLI, set the TF_REATTACH_PROVIDERS environment variable with the following:
//
//     	TF_REATTACH_PROVIDERS='{"registry.terraform.io/bpg/proxmox":{"Protocol":"grpc","ProtocolVersion":6,"Pid":…,"Test":true,"Addr":{"Network":"unix","String":"…"}}}'
// - SIGINT stops it (WithManagedDebugStopSignals' default); terraform never does: with Test: true,
//   go-plugin's client does not kill a reattached process when it is done with it.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { Log } from "./log.js";

export const PROVIDER_ADDRESS = "registry.terraform.io/bpg/proxmox";

/** Go's flag package: -debug, --debug, -debug=true (and =1, =t…); -debug=false is off. */
export function isDebugFlag(args: string[]): boolean {
  let on = false;
  for (const a of args) {
    const m = /^--?debug(?:=(.*))?$/.exec(a);
    if (m) on = m[1] === undefined || /^(1|t|T|true|TRUE|True)$/.test(m[1]);
  }
  return on;
}

export interface ReattachConfig {
  Protocol: "grpc";
  ProtocolVersion: number;
  Pid: number;
  Test: boolean;
  Addr: { Network: "unix"; String: string };
}

export function reattachLines(config: ReattachConfig): string {
  const json = JSON.stringify({ [PROVIDER_ADDRESS]: config });
  return (
    "Provider started. To attach Terraform CLI, set the TF_REATTACH_PROVIDERS environment variable with the following:\n\n" +
    `\tTF_REATTACH_PROVIDERS='${json.replaceAll("'", `'"'"'`)}'\n\n`
  );
}

export async function serveDebug(server: grpc.Server, log: Log, exit: () => void): Promise<void> {
  const dir = process.env.PLUGIN_UNIX_SOCKET_DIR || tmpdir();
  // go-plugin takes the name of os.CreateTemp(dir, "plugin"); the stand-in a fresh dir of that name.
  const holder = mkdtempSync(join(dir, "plugin"));
  const socket = join(holder, "s");
  await new Promise<number>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  process.stdout.write(reattachLines({ Protocol: "grpc", ProtocolVersion: 6, Pid: process.pid, Test: true, Addr: { Network: "unix", String: socket } }));
  log("debug", "plugin address", { network: "unix", address: socket, mode: "debug" });
  const cleanup = () => rmSync(holder, { recursive: true, force: true });
  process.on("exit", cleanup);
  process.on("SIGINT", () => {
    log("debug", "SIGINT: debug server stopping");
    exit();
  });
  process.on("SIGTERM", () => exit());
}
