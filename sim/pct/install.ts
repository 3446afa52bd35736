// Puts a `pct` executable (the simulator-backed stand-in) into a directory for PATH.
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { nodeCommandFor } from "../node-entry.js";

export async function installPctShim(dir: string, sim: { url: string; token: string; node?: string }): Promise<string> {
  await mkdir(dir, { recursive: true });
  const entry = fileURLToPath(new URL("./pct.js", import.meta.url));
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const script = [
    "#!/bin/sh",
    "# Test stand-in for Proxmox's pct, backed by the PVE simulator (pve-runners sim).",
    `PVE_SIM_URL=${quote(sim.url)} PVE_SIM_TOKEN=${quote(sim.token)} PVE_SIM_NODE=${quote(sim.node ?? "pve")}`,
    "export PVE_SIM_URL PVE_SIM_TOKEN PVE_SIM_NODE",
    `exec ${nodeCommandFor(entry).map(quote).join(" ")} "$@"`,
    "",
  ].join("\n");
  const path = join(dir, "pct");
  await writeFile(path, script, { mode: 0o700 });
  await chmod(path, 0o700);
  return path;
}
