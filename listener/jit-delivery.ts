// Hands a runner's JIT config to its container. The config is a credential: it goes over stdin or
// the PVE API, never into a log, a file of ours, argv, or terraform state.
import { spawn } from "node:child_process";
import type { Logger } from "pino";
import type { ProxmoxApi } from "./proxmox.js";

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
 * Mode `env` (Proxmox VE 9.1+): the container's `env` option, read by the template's unit as
 * ACTIONS_RUNNER_INPUT_JITCONFIG. The value sits in the cluster-replicated CT config
 * (/etc/pve/lxc/<vmid>.conf) for the container's life: acceptable only because the config is single-use,
 * expires unused within minutes, and the container is destroyed after its one job.
 */
export class EnvOptionDelivery implements JitDelivery {
  readonly startsContainer = true;
  constructor(private readonly pve: ProxmoxApi, private readonly logger: Logger) {}

  async deliver(t: DeliveryTarget): Promise<void> {
    const log = this.logger.child({ runner: t.runner, vmid: t.vmid });
    await this.pve.setConfig(t.node, t.vmid, { env: `ACTIONS_RUNNER_INPUT_JITCONFIG=${t.jitConfig}` });
    await this.pve.start(t.node, t.vmid);
    log.info("JIT config delivered through the env option; container started");
  }
}
