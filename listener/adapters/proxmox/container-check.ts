// Before a runner's stack is destroyed: is its container still there? One API read decides how the
// destroy runs (listener/lifecycle/teardown.ts):
//   present → `terraform destroy -refresh=false`: the state is ours alone and matches what is there,
//             so the refresh (a provider read of every resource) buys nothing;
//   gone    → nothing of the stack is left on PVE (the firewall options live in the container's
//             /etc/pve/firewall/<vmid>.fw, which PVE removes with the container: pve-container
//             src/PVE/API2/LXC.pm destroy_vm, remove_vmfw_conf), so no terraform runs at all;
//   unknown → the API could not tell (an error, the node offline or elsewhere): a destroy with its
//             refresh, as before, which lets the provider find out.
import { ProxmoxError, type ProxmoxApi } from "./proxmox.js";
import { isRunnersContainer, type GuestConfig } from "../../lifecycle/ownership.js";

export type ContainerPresence =
  | { kind: "present" }
  /** No guest at the vmid, or one that is not this runner's container (the vmid reused): ours is gone. */
  | { kind: "gone"; why: string }
  | { kind: "unknown"; why: string };

export interface RecordedContainer {
  name: string;
  node: string | null;
  vmid: number | null;
}

/**
 * Two reads, both with VM.Audit (which the runners' role has, through the pool):
 * 1. GET /cluster/resources?type=vm: which guests exist. Its guest list is pmxcfs's vmlist, current
 *    at once (only the stats lag), and it lists what the token may audit: with a pool-granted token,
 *    PVE checks privileges before existence, so a deleted vmid answers a direct read with 403, not
 *    "does not exist" — but it is simply not listed. Not listed: gone (or out of our pool, where
 *    terraform could not touch it either; the failed-destroy path has always judged so).
 *    Listed on another node than recorded, or with status "unknown" (its node offline): unknown.
 * 2. GET /nodes/{node}/lxc/{vmid}/config: is it this runner's container (listener/lifecycle/ownership.ts)? A
 *    guest that is not (the vmid reused after ours was deleted) must not be destroyed by our stack.
 *    "does not exist" here: deleted between the two reads.
 */
export async function containerPresence(pve: Pick<ProxmoxApi, "clusterResources" | "containerConfig">, r: RecordedContainer): Promise<ContainerPresence> {
  if (r.node === null || r.vmid === null) return { kind: "unknown", why: "no node or vmid recorded" };
  const why = (err: unknown) => (err instanceof Error ? err.message : String(err));
  let listed: Record<string, unknown> | undefined;
  try {
    listed = (await pve.clusterResources("vm")).find((g) => Number(g.vmid) === r.vmid);
  } catch (err) {
    return { kind: "unknown", why: why(err) };
  }
  if (!listed) return { kind: "gone", why: `no guest with vmid ${r.vmid} on the cluster` };
  if (listed.node !== r.node) return { kind: "unknown", why: `vmid ${r.vmid} is on node ${String(listed.node)}, recorded on ${r.node}` };
  if (listed.status === "unknown") return { kind: "unknown", why: `node ${r.node} does not report its guests (offline?)` };
  let conf: GuestConfig;
  try {
    conf = await pve.containerConfig(r.node, r.vmid);
  } catch (err) {
    if (err instanceof ProxmoxError && err.notFound) return { kind: "gone", why: `CT ${r.vmid} no longer exists on ${r.node}` };
    return { kind: "unknown", why: why(err) };
  }
  if (!isRunnersContainer(conf, r.name)) return { kind: "gone", why: `CT ${r.vmid} on ${r.node} is not this runner's container (hostname ${JSON.stringify(conf.hostname ?? null)})` };
  return { kind: "present" };
}
