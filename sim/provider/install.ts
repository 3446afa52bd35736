// Puts the provider stand-in into a terraform filesystem mirror (unpacked layout
// HOST/NAMESPACE/TYPE/VERSION/OS_ARCH/terraform-provider-TYPE_vVERSION) and writes a CLI config that
// installs registry.terraform.io/bpg/proxmox from there, so `terraform init` takes the same path
// as in production (terraform docs: "CLI Configuration File", provider_installation filesystem_mirror).
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BPG_PROXMOX_SOURCE, BPG_PROXMOX_VERSION } from "../../stacks/bpg-proxmox.js";
import { nodeCommandFor } from "../node-entry.js";

export interface ProviderMirror {
  /** For TF_CLI_CONFIG_FILE. */
  cliConfigFile: string;
  mirrorDir: string;
  /** The executable terraform will start. */
  executable: string;
}

/** terraform's platform names: linux_amd64, linux_arm64, darwin_arm64, ... */
export function terraformPlatform(platform: NodeJS.Platform = process.platform, arch: string = process.arch): string {
  const a = ({ x64: "amd64", arm64: "arm64", ia32: "386", arm: "arm" } as Record<string, string>)[arch] ?? arch;
  return `${platform === "win32" ? "windows" : platform}_${a}`;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export async function installProviderMirror(dir: string): Promise<ProviderMirror> {
  const mirrorDir = join(dir, "mirror");
  const [host, namespace, type] = BPG_PROXMOX_SOURCE.split("/");
  const target = join(mirrorDir, host, namespace, type, BPG_PROXMOX_VERSION, terraformPlatform());
  await mkdir(target, { recursive: true });
  const entry = fileURLToPath(new URL("./main.js", import.meta.url));
  const executable = join(target, `terraform-provider-${type}_v${BPG_PROXMOX_VERSION}`);
  const script = [
    "#!/bin/sh",
    "# pve-runners' stand-in for bpg/proxmox (sim/provider): speaks terraform's plugin protocol 6,",
    "# drives the Proxmox VE API simulator. Never used in production.",
    `exec ${nodeCommandFor(entry).map(quote).join(" ")} "$@"`,
    "",
  ].join("\n");
  await writeFile(executable, script, { mode: 0o755 });
  await chmod(executable, 0o755);

  const cliConfigFile = join(dir, "terraform.rc");
  const source = JSON.stringify(BPG_PROXMOX_SOURCE);
  await writeFile(
    cliConfigFile,
    [
      "# Written by sim/provider/install.ts: bpg/proxmox comes from the stand-in's filesystem mirror.",
      "provider_installation {",
      "  filesystem_mirror {",
      `    path    = ${JSON.stringify(mirrorDir)}`,
      `    include = [${source}]`,
      "  }",
      "  direct {",
      `    exclude = [${source}]`,
      "  }",
      "}",
      "",
    ].join("\n"),
  );
  return { cliConfigFile, mirrorDir, executable };
}
