// Inside a container created from a CT image (the template being built): a plain Ubuntu that
// boots and idles — no runner unit yet — and what `pct exec` can do there as far as the simulator
// can stand for it:
// - `systemctl is-system-running --wait`: waits for the boot, prints "running";
// - `bash <dir>/provision.sh`: checks what template/provision.sh itself checks before it touches
//   the system (its siblings pushed next to it), reads the runner version and SHA-256 it pins,
//   "downloads" that runner tarball from the simulator's fixtures (sim/pve/downloads.ts) and
//   verifies it as its `sha256sum --check` would — a wrong pin fails the build — then records the
//   result in /var/lib/pve-runners/template-build. Everything else provision.sh does (apt, Docker,
//   the runner user, extracting the runner, the unit, the cleanup) needs a real container: host-only.
import { setTimeout as sleep } from "node:timers/promises";
import { posix } from "node:path";
import type { SimClock } from "../github/clock.js";
import type { Downloads } from "./downloads.js";
import type { GuestFs } from "./guest-fs.js";
import type { ExecResult } from "./shell.js";
import type { GuestHandle } from "./state.js";

/** What the simulated provision run leaves behind: `runner <version>` (the template's runner). */
export const TEMPLATE_BUILD_MARKER = "/var/lib/pve-runners/template-build";
/** The siblings provision.sh refuses to run without (its own check, same order). */
const SIBLINGS = ["docker-storage-driver.sh", "runner-once.sh", "pve-runner.service"];

export class PlainOsGuest implements GuestHandle {
  phase: "booting" | "running" | "aborted" = "booting";
  private readonly ready: Promise<void>;
  private readonly ac = new AbortController();

  constructor(clock: SimClock, bootMs: number) {
    this.ready = sleep(clock.scaled(bootMs), undefined, { signal: this.ac.signal }).then(
      () => {
        if (this.phase === "booting") this.phase = "running";
      },
      () => undefined,
    );
  }

  /** Resolves once booted (or aborted). */
  booted(): Promise<void> {
    return this.ready;
  }

  abort(): void {
    this.phase = "aborted";
    this.ac.abort();
  }

  describe(): Record<string, unknown> {
    return { phase: this.phase, kind: "plain-os" };
  }
}

/** The pinned default of a `NAME="${NAME:-value}"` line of provision.sh. */
function pinned(script: string, name: string): string | undefined {
  return new RegExp(`^${name}="\\$\\{${name}:-([^}]*)\\}"`, "m").exec(script)?.[1];
}

const fail = (exitcode: number, stderr: string, stdout = ""): ExecResult => ({ exitcode, stdout, stderr });

/** `pct exec` in a plain-OS container: the commands above, or undefined for the generic shell. */
export async function execInPlainOs(guest: PlainOsGuest, fs: GuestFs, command: string[], downloads: Downloads, arch = "x64"): Promise<ExecResult | undefined> {
  if (command.join(" ") === "systemctl is-system-running --wait") {
    await guest.booted();
    return guest.phase === "running" ? { exitcode: 0, stdout: "running\n", stderr: "" } : fail(1, "", "offline\n");
  }
  if (command[0] === "bash" && command.length === 2 && posix.basename(command[1]) === "provision.sh") return provision(fs, command[1], downloads, arch);
  return undefined;
}

function provision(fs: GuestFs, path: string, downloads: Downloads, arch: string): ExecResult {
  let script: string;
  try {
    script = fs.read(path);
  } catch {
    return fail(127, `bash: ${path}: No such file or directory\n`);
  }
  const out: string[] = [];
  const dir = posix.dirname(path);
  for (const f of SIBLINGS) {
    if (!fs.isFile(posix.join(dir, f))) return fail(1, `provision: ${posix.join(dir, f)} is missing: push it next to provision.sh\n`, out.join(""));
  }
  const version = pinned(script, "RUNNER_VERSION");
  const sha = pinned(script, arch === "arm64" ? "RUNNER_SHA256_ARM64" : "RUNNER_SHA256_X64");
  if (!version || !sha) return fail(1, "pve-sim: provision.sh pins no RUNNER_VERSION / RUNNER_SHA256 the simulator can read\n");
  if (!/^[0-9a-f]{64}$/.test(sha)) return fail(1, `provision: RUNNER_SHA256 for ${arch} is not a SHA-256\n`);
  out.push("==> provision: (simulated) base packages, Docker, the runner user: host-only, skipped\n");
  out.push(`==> provision: GitHub Actions runner ${version}\n`);
  const tarball = `actions-runner-linux-${arch}-${version}.tar.gz`;
  const url = `https://github.com/actions/runner/releases/download/v${version}/${tarball}`;
  const file = downloads.get(url);
  // `retry curl -fsSL`: five attempts, then curl's exit status ends the script (set -e).
  if (!file) return fail(22, "curl: (22) The requested URL returned error: 404\n".repeat(6), out.join(""));
  const got = downloads.digest(file, "sha256");
  if (got === undefined) return fail(1, `pve-sim: the fixture for ${url} has no sha256 digest to compare with\n`, out.join(""));
  if (got !== sha) {
    return fail(1, `/tmp/${tarball}: FAILED\nsha256sum: WARNING: 1 computed checksum did NOT match\nprovision: checksum mismatch for ${tarball}: not extracting\n`, out.join("") + `/tmp/${tarball}: FAILED\n`);
  }
  out.push(`/tmp/${tarball}: OK\n`);
  out.push("==> provision: (simulated) extracting the runner, the one-job unit, the cleanup: host-only, skipped\n");
  fs.mkdir(posix.dirname(TEMPLATE_BUILD_MARKER), 0o755, true);
  fs.write(TEMPLATE_BUILD_MARKER, `runner ${version}\n`, 0o644);
  return { exitcode: 0, stdout: out.join(""), stderr: "" };
}
