// Hands a runner's JIT config to its container. The config is a credential: it goes over stdin or
// the PVE API, never into a log, a file of ours, argv, or terraform state (env mode removes it from
// the CT config right after the start, before any refresh can read it).
import { spawn } from "node:child_process";
import type { Logger } from "pino";
import { ProxmoxError, type ProxmoxApi } from "../proxmox/proxmox.js";

export interface DeliveryTarget {
  node: string;
  vmid: number;
  runner: string;
  jitConfig: string;
}

export interface JitDelivery {
  /** "pct": the stack starts the container and the config follows; "env": the config must be set before start. */
  readonly startsContainer: boolean;
  deliver(t: DeliveryTarget): Promise<void>;
  /**
   * Before terraform destroys the container: remove whatever of the config could still sit where a
   * refresh reads it (env mode: a listener that died between start and removal left `env` set).
   */
  beforeDestroy?(node: string, vmid: number): Promise<void>;
}

/**
 * Mode `pct` (default): a minimal privileged helper (systemd/deliver-jit) checks that the vmid is one of
 * our runner containers and runs `pct exec` to write the config inside it. The listener itself never
 * runs as root; it runs the helper through the configured command (e.g. sudo with a one-line rule).
 */
export class PctHelperDelivery implements JitDelivery {
  readonly startsContainer = false;
  constructor(private readonly opts: { command: string[]; timeoutMs?: number; env?: NodeJS.ProcessEnv; logger: Logger }) {}

  deliver(t: DeliveryTarget): Promise<void> {
    const [cmd, ...args] = this.opts.command;
    const log = this.opts.logger.child({ runner: t.runner, vmid: t.vmid });
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, [...args, String(t.vmid), t.runner], { stdio: ["pipe", "ignore", "pipe"], env: this.opts.env ?? process.env });
      let stderr = "";
      const timer = setTimeout(() => child.kill("SIGKILL"), this.opts.timeoutMs ?? 60_000);
      child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
      child.on("error", (err) => {
        clearTimeout(timer);
        reject(new Error(`JIT delivery helper ${cmd} could not start: ${err.message}`));
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        // The helper's stderr is ours (it never echoes stdin), but redact the config anyway.
        const why = stderr.split(t.jitConfig).join("[redacted]").trim();
        if (code === 0) {
          log.info("JIT config delivered into the container");
          resolve();
        } else reject(new Error(`JIT delivery helper failed (${signal ?? `exit ${code}`}): ${why || "no message"}`));
      });
      child.stdin.on("error", () => {}); // EPIPE when the helper refuses early: the close handler reports it.
      child.stdin.end(t.jitConfig + "\n");
    });
  }
}

/**
 * Mode `env` (Proxmox VE 9.1+): the container's `env` option (pve-container src/PVE/LXC/Config.pm:
 * NUL-separated, written as lxc.environment.runtime), which lxc hands to the container's init at
 * start only; the template's runner-once reads it from /proc/1/environ. The option is removed again
 * right after the start: bpg's containerRead copies PVE's `env` into `environment_variables`
 * (proxmoxtf/resource/container/container.go), which is not a sensitive attribute, so any later
 * refresh (a destroy's) would write the config in plain text into terraform state. Init keeps its
 * copy. Removing it needs VM.Config.Options (check_ct_modify_config_perm, src/PVE/LXC.pm), which the
 * PVERunners role has.
 */
export class EnvOptionDelivery implements JitDelivery {
  readonly startsContainer = true;
  constructor(private readonly pve: ProxmoxApi, private readonly logger: Logger) {}

  async deliver(t: DeliveryTarget): Promise<void> {
    const log = this.logger.child({ runner: t.runner, vmid: t.vmid });
    await this.pve.setConfig(t.node, t.vmid, { env: `ACTIONS_RUNNER_INPUT_JITCONFIG=${t.jitConfig}` });
    // Started or not, the config leaves the CT config now (a failed start is retried with a fresh
    // one). A removal that fails is only logged: the runner is running, and beforeDestroy removes it
    // before anything refreshes the container's state.
    const remove = () => removeJitEnv(this.pve, t.node, t.vmid).catch((err: Error) => log.warn({ err: err.message }, "env option still set: removed before destroy"));
    try {
      await this.pve.start(t.node, t.vmid);
    } catch (err) {
      await remove();
      throw err;
    }
    await remove();
    log.info("JIT config delivered through the env option (removed again after start); container started");
  }

  beforeDestroy(node: string, vmid: number): Promise<void> {
    return removeJitEnv(this.pve, node, vmid);
  }
}

/**
 * PUT /config delete=env: removes the JIT config from the CT config. A container that no longer
 * exists has nothing to remove; any other failure is thrown (the caller must not refresh state).
 * PVE only warns when `env` is not set.
 */
export async function removeJitEnv(pve: ProxmoxApi, node: string, vmid: number): Promise<void> {
  try {
    await pve.setConfig(node, vmid, { delete: "env" });
  } catch (err) {
    if (err instanceof ProxmoxError && err.notFound) return;
    throw new Error(`could not remove the env option (the JIT config) from CT ${vmid}: ${(err as Error).message}`);
  }
}
