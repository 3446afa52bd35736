// The soak's in-process stand-in for `terraform apply` and `destroy` (bench/soak.ts): no terraform
// and no provider process, but what they leave behind is real. apply reads the synthesized stack
// (cdk.tf.json) and does what bpg's container resource does with it through the PVE API: clone
// the template (description and pool with the clone), a config PUT with the tags, cores, memory and
// swap, a start when the stack says `started`; then it writes a state file in terraform's format 4
// with the vm_id output, which the pipeline reads (Terraform.output reads the same file).
// destroy stops and deletes the container and leaves an empty state. Bypassed: the firewall
// options resource and bpg's net0/hostname rewrite in its config PUT (nothing downstream reads them).
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ProxmoxError, type ProxmoxApi } from "../listener/adapters/proxmox/proxmox.js";
import type { TerraformLike } from "../listener/lifecycle/pipeline.js";

const CONTAINER = "proxmox_virtual_environment_container";

interface ContainerSpec {
  node_name: string;
  vm_id: number;
  description?: string;
  pool_id?: string;
  tags?: string[];
  started?: boolean;
  clone: { vm_id: number; node_name?: string; full?: boolean };
  initialization?: { hostname?: string };
  cpu?: { cores?: number };
  memory?: { dedicated?: number; swap?: number };
}

interface State {
  version: 4;
  serial: number;
  outputs: Record<string, { value: unknown; type: string }>;
  resources: Array<{ mode: "managed"; type: string; name: string; instances: Array<{ attributes: { id: string; vm_id: number; node_name: string } }> }>;
}

export class ApiTerraform implements TerraformLike {
  /** Calls made, for the bench's row. */
  readonly counts = { applies: 0, destroys: 0 };

  constructor(private readonly pve: ProxmoxApi) {}

  async prepare(): Promise<void> {}

  async apply(workingDir: string): Promise<void> {
    this.counts.applies++;
    const spec = await this.containerSpec(workingDir);
    const held = await this.heldContainer(workingDir);
    if (!held) {
      const from = spec.clone.node_name ?? spec.node_name;
      const upid = await this.pve.request<string>("POST", `/nodes/${from}/lxc/${spec.clone.vm_id}/clone`, {
        newid: spec.vm_id,
        hostname: spec.initialization?.hostname,
        description: spec.description,
        pool: spec.pool_id,
        full: spec.clone.full ? 1 : 0,
        target: from === spec.node_name ? undefined : spec.node_name,
      });
      await this.pve.waitTask(from, upid);
      // In state from here on: a failed config PUT leaves it for destroy, as terraform's taint does.
      await this.writeState(workingDir, spec.node_name, spec.vm_id);
      await this.pve.setConfig(spec.node_name, spec.vm_id, {
        tags: spec.tags?.join(";"),
        cores: spec.cpu?.cores,
        memory: spec.memory?.dedicated,
        swap: spec.memory?.swap,
      });
    }
    if (spec.started) await this.pve.start(spec.node_name, spec.vm_id);
  }

  async destroy(workingDir: string): Promise<void> {
    this.counts.destroys++;
    const held = await this.heldContainer(workingDir);
    if (held) {
      try {
        if ((await this.pve.containerStatus(held.node, held.vmid)).status === "running") await this.pve.stop(held.node, held.vmid);
        await this.pve.destroy(held.node, held.vmid);
      } catch (err) {
        // Gone already (the refresh would have dropped it from state).
        if (!(err instanceof ProxmoxError && err.notFound)) throw err;
      }
    }
    if (existsSync(join(workingDir, "terraform.tfstate"))) await this.writeState(workingDir, null, null);
  }

  async output(workingDir: string): Promise<Record<string, unknown>> {
    const state = await this.readState(workingDir);
    const out: Record<string, unknown> = {};
    for (const [name, o] of Object.entries(state?.outputs ?? {})) out[name] = { sensitive: false, type: o.type, value: o.value };
    return out;
  }

  private async containerSpec(workingDir: string): Promise<ContainerSpec> {
    const doc = JSON.parse(await readFile(join(workingDir, "cdk.tf.json"), "utf8")) as { resource?: Record<string, Record<string, ContainerSpec>> };
    const spec = Object.values(doc.resource?.[CONTAINER] ?? {})[0];
    if (!spec) throw new Error(`no ${CONTAINER} in ${workingDir}/cdk.tf.json`);
    return spec;
  }

  private async readState(workingDir: string): Promise<State | null> {
    try {
      return JSON.parse(await readFile(join(workingDir, "terraform.tfstate"), "utf8")) as State;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  private async heldContainer(workingDir: string): Promise<{ node: string; vmid: number } | null> {
    const a = (await this.readState(workingDir))?.resources.find((r) => r.type === CONTAINER)?.instances[0]?.attributes;
    return a ? { node: a.node_name, vmid: a.vm_id } : null;
  }

  private async writeState(workingDir: string, node: string | null, vmid: number | null): Promise<void> {
    const prev = await this.readState(workingDir);
    const state: State = {
      version: 4,
      serial: (prev?.serial ?? 0) + 1,
      outputs: vmid === null ? {} : { vm_id: { value: vmid, type: "number" } },
      resources: vmid === null || node === null ? [] : [{ mode: "managed", type: CONTAINER, name: "runner", instances: [{ attributes: { id: String(vmid), vm_id: vmid, node_name: node } }] }],
    };
    await writeFile(join(workingDir, "terraform.tfstate"), JSON.stringify(state));
  }
}
