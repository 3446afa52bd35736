// Puts the provider stand-in into a terraform filesystem mirror (unpacked layout
// HOST/NAMESPACE/TYPE/VERSION/OS_ARCH/terraform-provider-TYPE_vVERSION) and writes a CLI config that
// installs registry.terraform.io/bpg/proxmox from there, so `terraform init` takes the same path
// as in production (terraform docs: "CLI Configuration File", provider_installation filesystem_mirror).
import { existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BPG_PROXMOX_SOURCE, BPG_PROXMOX_VERSION } from "../../stacks/bpg-proxmox.js";
import { nodeCommandFor } from "../node-entry.js";
import { generateServerCert } from "./tls.js";

/** scripts/bundle-provider.mjs writes it next to main.js during `npm run build`. */
export const PROVIDER_BUNDLE = "provider.bundle.cjs";

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

/**
 * Node flags for every start. --use-openssl-ca: trust what OpenSSL's default paths and
 * SSL_CERT_FILE / SSL_CERT_DIR name, as a Go provider does (crypto/x509 on Linux), instead of node's
 * bundled root certificates, which each start otherwise parses for its first TLS context (the
 * AutoMTLS server's): about a tenth of a start's CPU in bench/run-cost.ts.
 */
export const PROVIDER_NODE_FLAGS = ["--use-openssl-ca"];

/** What Linux reads of a `#!` line before kernel 5.1 (BINPRM_BUF_SIZE 128, with the newline). */
const SHEBANG_MAX = 127;

/**
 * The provider executable's text. When the build made a bundle not older than main.js: a loader that
 * runs it with a V8 code cache (one file to read instead of ~100 modules to resolve, and no
 * compiling what an earlier start compiled), run by node straight from the `#!` line, with no
 * /bin/sh in between (~5 ms CPU per start). Linux passes what follows the interpreter as one
 * argument, so that needs a single flag and a short plain node path; else a /bin/sh wrapper execs
 * node on the loader in `dir`. Without a fresh bundle the wrapper execs main.js (or main.ts under tsx).
 */
async function providerExecutable(dir: string, certFile: string): Promise<string> {
  const about = "pve-runners' stand-in for bpg/proxmox (sim/provider): speaks terraform's plugin protocol 6, drives the Proxmox VE API simulator. Never used in production.";
  const entry = fileURLToPath(new URL("./main.js", import.meta.url));
  const bundle = fileURLToPath(new URL(`./${PROVIDER_BUNDLE}`, import.meta.url));
  const mtime = (f: string) => statSync(f, { throwIfNoEntry: false })?.mtimeMs;
  const [b, m] = [mtime(bundle), mtime(entry)];
  const wrapper = (command: string[]) => ["#!/bin/sh", `# ${about}`, `PVE_SIM_PROVIDER_CERT_FILE=${quote(certFile)} exec ${command.map(quote).join(" ")} "$@"`, ""].join("\n");
  if (b === undefined || m === undefined || b < m) {
    const [node, ...args] = nodeCommandFor(entry);
    return wrapper([node, ...PROVIDER_NODE_FLAGS, ...args]);
  }
  const cache = join(dir, "provider-code-cache");
  const shebang = `#!${process.execPath} ${PROVIDER_NODE_FLAGS.join(" ")}`;
  if (PROVIDER_NODE_FLAGS.length === 1 && shebang.length <= SHEBANG_MAX && !/\s/.test(process.execPath) && commonJsScope(dir)) {
    return [shebang, `// ${about}`, codeCacheLoader(bundle, cache, certFile)].join("\n");
  }
  const loader = join(dir, "provider-start.cjs");
  await writeFile(loader, codeCacheLoader(bundle, cache));
  return wrapper([process.execPath, ...PROVIDER_NODE_FLAGS, loader]);
}

/**
 * Whether node runs a script under `dir` (symlinks resolved, as node resolves its main script) as
 * CommonJS. The executable's name ends in ".1", which node runs as CommonJS JavaScript unless the
 * nearest package.json says "type": "module" (node's rule): then it refuses the extension, and the
 * /bin/sh wrapper runs the .cjs loader instead.
 */
function commonJsScope(dir: string): boolean {
  for (let d = realpathSync(dir); ; d = dirname(d)) {
    const pkg = join(d, "package.json");
    if (existsSync(pkg)) {
      try {
        return (JSON.parse(readFileSync(pkg, "utf8")) as { type?: unknown }).type !== "module";
      } catch {
        return false;
      }
    }
    if (dirname(d) === d) return true;
  }
}

/**
 * CommonJS that runs `bundle` as node would, compiled with the V8 code cache in `cache`. The first
 * start (or one whose cache V8 rejects: another node version) writes the cache at exit, when it
 * holds the functions that start compiled; written whole, then renamed, as starts run side by side.
 * `certFile`, when given, is set as PVE_SIM_PROVIDER_CERT_FILE (else the wrapper sets it).
 * (vm.Script has no dynamic import(): the bundle's only one, a fresh certificate, is not needed
 * because the certificate made at install is named.)
 */
function codeCacheLoader(bundle: string, cache: string, certFile?: string): string {
  return [
    "// Written by sim/provider/install.ts: runs the provider stand-in's bundle with a V8 code cache.",
    '"use strict";',
    'const fs = require("node:fs");',
    'const path = require("node:path");',
    'const vm = require("node:vm");',
    'const Module = require("node:module");',
    `const file = ${JSON.stringify(bundle)};`,
    `const cache = ${JSON.stringify(cache)};`,
    ...(certFile ? [`process.env.PVE_SIM_PROVIDER_CERT_FILE = ${JSON.stringify(certFile)};`] : []),
    "let cachedData;",
    "try { cachedData = fs.readFileSync(cache); } catch { cachedData = undefined; }",
    'const script = new vm.Script(Module.wrap(fs.readFileSync(file, "utf8")), { filename: file, cachedData });',
    "if (cachedData === undefined || script.cachedDataRejected) {",
    '  process.on("exit", () => {',
    "    const tmp = `${cache}.${process.pid}`;",
    "    try { fs.writeFileSync(tmp, script.createCachedData()); fs.renameSync(tmp, cache); } catch { /* next start tries again */ }",
    "  });",
    "}",
    "const mod = { exports: {} };",
    "script.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(file), mod, file, path.dirname(file));",
    "",
  ].join("\n");
}

export async function installProviderMirror(dir: string): Promise<ProviderMirror> {
  const mirrorDir = join(dir, "mirror");
  const [host, namespace, type] = BPG_PROXMOX_SOURCE.split("/");
  const target = join(mirrorDir, host, namespace, type, BPG_PROXMOX_VERSION, terraformPlatform());
  await mkdir(target, { recursive: true });
  const executable = join(target, `terraform-provider-${type}_v${BPG_PROXMOX_VERSION}`);
  // One AutoMTLS certificate for every start of this mirror's provider (outside the package dir,
  // which terraform hashes): making one per start costs more CPU than the rest of a start.
  const certFile = join(dir, "provider-server-cert.json");
  // PEM only: the handshake's base64 DER is derived at start (one long base64 line in a file looks,
  // to every secret scan here, like a JIT config).
  const { certPem, keyPem } = generateServerCert();
  await writeFile(certFile, JSON.stringify({ certPem, keyPem }), { mode: 0o600 });
  const script = await providerExecutable(dir, certFile);
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
