// `proxmox_virtual_environment_container` against the PVE API, the way bpg 0.111.1 does it
// (proxmoxtf/resource/container/container.go): create by clone (POST clone, one PUT config, wait
// for the lock to go, start, wait for "running"), read (config + status, "does not exist" → gone),
// delete (shutdown with forceStop, DELETE, wait until the status call fails). Values are the
// resource's cty object (values.ts); API bodies are built like bpg's containers_types.go.
import { fillUnknowns } from "./plan.js";
import {
  deleteContainer,
  getConfig,
  getStatus,
  nextVmid,
  shutdownContainer,
  startContainer,
  updateContainer,
  cloneContainer,
  createContainerTask,
  waitForInterfaces,
  waitForStatus,
  waitForUnlock,
  type OpContext,
  type TaskResult,
} from "./pve-ops.js";
import type { Params } from "./pve-client.js";
import { isNotFound } from "./pve-client.js";
import { asList, asObject, unknownsToNull, valuesEqual, type ObjectValue, type Value } from "./values.js";

export interface Diagnostic {
  severity: "ERROR" | "WARNING";
  summary: string;
  detail: string;
}

export interface Outcome {
  /** The resource's state, null when it does not exist (any more). */
  state: ObjectValue | null;
  diagnostics: Diagnostic[];
}

const MAX_NETWORK_INTERFACES = 10;

// ---------------------------------------------------------------- reading values

const str = (o: ObjectValue | null, k: string): string => (typeof o?.[k] === "string" ? (o[k] as string) : "");
const num = (o: ObjectValue | null, k: string): number => (typeof o?.[k] === "number" ? (o[k] as number) : 0);
const bool = (o: ObjectValue | null, k: string): boolean => o?.[k] === true;
const first = (o: ObjectValue | null, k: string): ObjectValue | null => asObject(asList(o?.[k] ?? null)[0]);
const strings = (v: Value | undefined): string[] => asList(v ?? null).filter((x): x is string => typeof x === "string");

const errorDiag = (summary: string, err: unknown): Diagnostic => ({ severity: "ERROR", summary, detail: err instanceof Error ? err.message : String(err) });
/** SDKv2's diag.FromErr: the whole error text as the summary. */
const fromErr = (err: unknown): Diagnostic => ({ severity: "ERROR", summary: err instanceof Error ? err.message : String(err), detail: "" });
const warningDiags = (summary: string, r: TaskResult): Diagnostic[] => r.warnings.map((w) => ({ severity: "WARNING", summary, detail: w }));

// ---------------------------------------------------------------- create

/** containerCreate: by clone when there is a clone block, else from operating_system.template_file_id. */
export async function createContainer(ctx: OpContext, planned: ObjectValue): Promise<Outcome> {
  const clone = first(planned, "clone");
  if (!clone) return createContainerCustom(ctx, planned);
  const nodeName = str(planned, "node_name");
  const cloneVmid = num(clone, "vm_id");
  const cloneNode = str(clone, "node_name");
  const init = first(planned, "initialization");
  const hostname = str(init, "hostname");

  let vmid: number;
  if (typeof planned.vm_id === "number") vmid = planned.vm_id;
  else {
    try {
      vmid = await nextVmid(ctx);
    } catch (err) {
      return { state: null, diagnostics: [fromErr(err)] };
    }
  }

  const body: Params = { newid: vmid, full: bool(clone, "full") };
  if (str(clone, "datastore_id") !== "") body.storage = str(clone, "datastore_id");
  if (str(planned, "description") !== "") body.description = str(planned, "description");
  if (hostname !== "") body.hostname = hostname;
  if (str(planned, "pool_id") !== "") body.pool = str(planned, "pool_id");
  let sourceNode = nodeName;
  if (cloneNode !== "" && cloneNode !== nodeName) {
    body.target = nodeName;
    sourceNode = cloneNode;
  }
  const diagnostics: Diagnostic[] = [];
  try {
    diagnostics.push(...warningDiags("Container clone", await cloneContainer(ctx, sourceNode, cloneVmid, body)));
  } catch (err) {
    return { state: null, diagnostics: [errorDiag("Container clone", err)] };
  }
  ctx.log("info", "container cloned", { vmid, source: cloneVmid, node: nodeName });

  // From here on the container exists: every failure returns the partial state WITH the error, so
  // terraform records the resource as tainted (SDKv2 keeps d.Id() set) and a later destroy removes it.
  const partial = (): ObjectValue => unknownsToNull({ ...planned, id: String(vmid), vm_id: vmid }) as ObjectValue;
  try {
    const update = await buildUpdateBody(ctx, planned, nodeName, vmid);
    await updateContainer(ctx, nodeName, vmid, update);
    await waitForUnlock(ctx, nodeName, vmid);
  } catch (err) {
    return { state: partial(), diagnostics: [...diagnostics, fromErr(err)] };
  }

  if (bool(planned, "started") && !bool(planned, "template")) {
    try {
      diagnostics.push(...warningDiags("Container start", await startContainer(ctx, nodeName, vmid)));
    } catch (err) {
      return { state: partial(), diagnostics: [...diagnostics, errorDiag("Container start", err)] };
    }
  }

  // containerRead fills what only the API knows (MACs, IPs, cpu units); every value the plan knew stays.
  const read = await readContainer(ctx, { ...partial() });
  diagnostics.push(...read.diagnostics);
  if (!read.state) return { state: partial(), diagnostics: [...diagnostics, fromErr(new Error(`container ${vmid} vanished right after it was created`))] };
  return { state: unknownsToNull(fillUnknowns({ ...planned, id: String(vmid), vm_id: vmid }, read.state)) as ObjectValue, diagnostics };
}

/**
 * containerCreateCustom (bpg proxmoxtf/resource/container/container.go): one POST /nodes/{node}/lxc
 * with the whole config (containers.CreateRequestBody; `start` = started, so PVE starts it in the
 * create task), wait for the config lock to go, then containerCreateStart (start unless running or
 * a template) and containerRead. Blocks bpg has and the stand-in leaves out (console, startup,
 * mount_point, device_passthrough, idmap) are sent with bpg's defaults or not at all.
 */
async function createContainerCustom(ctx: OpContext, planned: ObjectValue): Promise<Outcome> {
  const os = first(planned, "operating_system");
  if (!os) return { state: null, diagnostics: [fromErr(new Error(`"operating_system": required field is not set`))] };
  const nodeName = str(planned, "node_name");
  let vmid: number;
  if (typeof planned.vm_id === "number" && planned.vm_id !== -1) vmid = planned.vm_id;
  else {
    try {
      vmid = await nextVmid(ctx);
    } catch (err) {
      return { state: null, diagnostics: [fromErr(err)] };
    }
  }
  const cpu = first(planned, "cpu");
  const memory = first(planned, "memory");
  const disk = first(planned, "disk");
  const init = first(planned, "initialization");
  const body: Params = {
    // console { enabled = true, type = "tty", tty_count = 2 }: bpg's defaults (the block is not simulated).
    console: true,
    cmode: "tty",
    tty: 2,
    arch: cpu ? str(cpu, "architecture") : "amd64",
    cores: cpu ? num(cpu, "cores") : 1,
    cpulimit: cpu ? num(cpu, "limit") : 0,
    storage: disk ? str(disk, "datastore_id") : "local",
    memory: memory ? num(memory, "dedicated") : 512,
    swap: memory ? num(memory, "swap") : 0,
    ostemplate: str(os, "template_file_id"),
    ostype: str(os, "type"),
    protection: bool(planned, "protection"),
    start: bool(planned, "started"),
    onboot: bool(planned, "start_on_boot"),
    template: bool(planned, "template"),
    unprivileged: bool(planned, "unprivileged"),
    vmid,
  };
  if (cpu && num(cpu, "units") > 0) body.cpuunits = num(cpu, "units");
  const features = featuresString(first(planned, "features"));
  if (features) body.features = features;
  // A non-default size (or any disk option) makes bpg send rootfs "<datastore>:<GiB>" (CustomRootFS.EncodeValues).
  if (disk && str(disk, "datastore_id") !== "") {
    const size = num(disk, "size");
    const mountOptions = strings(disk.mount_options);
    if (size !== 4 || mountOptions.length > 0 || bool(disk, "acl") || bool(disk, "quota") || bool(disk, "replicate")) {
      const v: string[] = [];
      if (bool(disk, "acl")) v.push("acl=1");
      if (mountOptions.length > 0) v.push(`mountoptions=${mountOptions.join(";")}`);
      if (bool(disk, "quota")) v.push("quota=1");
      if (bool(disk, "replicate")) v.push("replicate=1");
      v.push(`volume=${str(disk, "datastore_id")}:${size}`);
      body.rootfs = v.join(",");
    }
  }
  const ipv4: Array<{ address: string; gateway: string }> = [];
  const ipv6: Array<{ address: string; gateway: string }> = [];
  if (init) {
    const dns = first(init, "dns");
    if (dns) {
      if (str(dns, "domain") !== "") body.searchdomain = str(dns, "domain");
      const servers = strings(dns.servers);
      const server = servers.length > 0 ? servers.join(" ") : str(dns, "server");
      if (server !== "") body.nameserver = server;
    }
    if (str(init, "hostname") !== "") body.hostname = str(init, "hostname");
    if (str(init, "entrypoint") !== "") body.entrypoint = str(init, "entrypoint");
    for (const c of asList(init.ip_config ?? null)) {
      const cfg = asObject(c);
      if (!cfg) continue;
      const v4 = first(cfg, "ipv4");
      const v6 = first(cfg, "ipv6");
      ipv4.push({ address: str(v4, "address"), gateway: str(v4, "gateway") });
      ipv6.push({ address: str(v6, "address"), gateway: str(v6, "gateway") });
    }
    const user = first(init, "user_account");
    if (user) {
      const keys = strings(user.keys);
      if (keys.length > 0) body["ssh-public-keys"] = keys.join("\n");
      if (str(user, "password") !== "") body.password = str(user, "password");
    }
  }
  const hostManaged = await supportsHostManaged(ctx);
  asList(planned.network_interface ?? null)
    .map(asObject)
    .forEach((nic, i) => {
      if (nic) body[`net${i}`] = netString(nic, ipv4[i], ipv6[i], hostManaged);
    });
  if (str(planned, "description") !== "") body.description = str(planned, "description");
  if (str(planned, "hook_script_file_id") !== "") body.hookscript = str(planned, "hook_script_file_id");
  if (str(planned, "pool_id") !== "") body.pool = str(planned, "pool_id");
  const tags = [...new Set(strings(planned.tags).map((t) => t.trim()).filter((t) => t !== ""))].sort();
  if (tags.length > 0) body.tags = tags.join(";");
  const env = asObject(planned.environment_variables ?? null);
  if (env && Object.keys(env).length > 0) body.env = Object.keys(env).sort().map((k) => `${k}=${String(env[k])}`).join("\0");

  const diagnostics: Diagnostic[] = [];
  try {
    diagnostics.push(...warningDiags("Container create", await createContainerTask(ctx, nodeName, body)));
  } catch (err) {
    return { state: null, diagnostics: [errorDiag("Container create", err)] };
  }
  ctx.log("info", "container created", { vmid, node: nodeName, ostemplate: body.ostemplate });
  const partial = (): ObjectValue => unknownsToNull({ ...planned, id: String(vmid), vm_id: vmid }) as ObjectValue;
  try {
    await waitForUnlock(ctx, nodeName, vmid);
  } catch (err) {
    return { state: partial(), diagnostics: [...diagnostics, fromErr(err)] };
  }
  if (bool(planned, "started") && !bool(planned, "template")) {
    try {
      diagnostics.push(...warningDiags("Container start", await startContainer(ctx, nodeName, vmid)));
    } catch (err) {
      return { state: partial(), diagnostics: [...diagnostics, errorDiag("Container start", err)] };
    }
  }
  const read = await readContainer(ctx, { ...partial() });
  diagnostics.push(...read.diagnostics);
  if (!read.state) return { state: partial(), diagnostics: [...diagnostics, fromErr(new Error(`container ${vmid} vanished right after it was created`))] };
  return { state: unknownsToNull(fillUnknowns({ ...planned, id: String(vmid), vm_id: vmid }, read.state)) as ObjectValue, diagnostics };
}

/** The one PUT /config after the clone (containerCreateClone's updateBody). */
async function buildUpdateBody(ctx: OpContext, p: ObjectValue, node: string, vmid: number): Promise<Params> {
  const body: Params = {};
  const del: string[] = [];
  body.onboot = bool(p, "start_on_boot");
  const features = featuresString(first(p, "features"));
  if (features) body.features = features;
  body.protection = bool(p, "protection");

  const cpu = first(p, "cpu");
  if (cpu) {
    body.arch = str(cpu, "architecture");
    body.cores = num(cpu, "cores");
    if (num(cpu, "limit") > 0) body.cpulimit = num(cpu, "limit");
    else del.push("cpulimit");
    if (num(cpu, "units") > 0) body.cpuunits = num(cpu, "units");
  }
  if (str(p, "hook_script_file_id") !== "") body.hookscript = str(p, "hook_script_file_id");

  const ipv4: Array<{ address: string; gateway: string }> = [];
  const ipv6: Array<{ address: string; gateway: string }> = [];
  const init = first(p, "initialization");
  if (init) {
    const dns = first(init, "dns");
    if (dns) {
      if (str(dns, "domain") !== "") body.searchdomain = str(dns, "domain");
      const servers = strings(dns.servers);
      if (servers.length > 0) body.nameserver = servers.join(" ");
      else if (str(dns, "server") !== "") body.nameserver = str(dns, "server");
    }
    if (str(init, "hostname") !== "") body.hostname = str(init, "hostname");
    if (str(init, "entrypoint") !== "") body.entrypoint = str(init, "entrypoint");
    for (const c of asList(init.ip_config ?? null)) {
      const cfg = asObject(c);
      if (!cfg) continue;
      const v4 = first(cfg, "ipv4");
      const v6 = first(cfg, "ipv6");
      ipv4.push({ address: str(v4, "address"), gateway: str(v4, "gateway") });
      ipv6.push({ address: str(v6, "address"), gateway: str(v6, "gateway") });
    }
    const user = first(init, "user_account");
    if (user) {
      // Create-only parameters: real PVE answers 400 to them in a config PUT (bpg #1905).
      const keys = strings(user.keys);
      if (keys.length > 0) body["ssh-public-keys"] = keys.join("\n");
      else del.push("ssh-public-keys");
      if (str(user, "password") !== "") body.password = str(user, "password");
      else del.push("password");
    }
  }

  const memory = first(p, "memory");
  if (memory) {
    body.memory = num(memory, "dedicated");
    body.swap = num(memory, "swap");
  }

  let nics = asList(p.network_interface ?? null).map(asObject).filter((x): x is ObjectValue => x !== null);
  // No network_interface blocks: bpg re-sends the clone's own interfaces.
  if (nics.length === 0) nics = existingInterfaces(await getConfig(ctx, node, vmid));
  const hostManaged = await supportsHostManaged(ctx);
  nics.forEach((nic, i) => {
    body[`net${i}`] = netString(nic, ipv4[i], ipv6[i], hostManaged);
    if (!bool(nic, "enabled")) del.push(`net${i}`);
  });
  for (let i = nics.length; i < MAX_NETWORK_INTERFACES; i++) del.push(`net${i}`);

  const os = first(p, "operating_system");
  if (os) {
    body.ostemplate = str(os, "template_file_id");
    body.ostype = str(os, "type");
  }
  const tags = strings(p.tags).map((t) => t.trim()).filter((t) => t !== "").sort();
  if (tags.length > 0) body.tags = tags.join(";");
  if (bool(p, "template")) body.template = true;
  if (del.length > 0) body.delete = del;
  // bpg's clone path sends neither `description` (it went with the clone) nor `env`.
  return body;
}

/** CustomFeatures.EncodeValues: true flags only (fuse, keyctl, mount, nesting, mknod order). */
export function featuresString(f: ObjectValue | null): string {
  if (!f) return "";
  const v: string[] = [];
  if (bool(f, "fuse")) v.push("fuse=1");
  if (bool(f, "keyctl")) v.push("keyctl=1");
  const mount = strings(f.mount);
  if (mount.length > 0) v.push(`mount=${mount.join(";")}`);
  if (bool(f, "nesting")) v.push("nesting=1");
  if (bool(f, "mknod")) v.push("mknod=1");
  return v.join(",");
}

/** CustomNetworkInterface.EncodeValues: bridge, firewall, host-managed, ip, gw, ip6, gw6, hwaddr, mtu, name, rate, tag. */
export function netString(nic: ObjectValue, v4: { address: string; gateway: string } | undefined, v6: { address: string; gateway: string } | undefined, hostManagedSupported: boolean): string {
  const v: string[] = [];
  if (str(nic, "bridge") !== "") v.push(`bridge=${str(nic, "bridge")}`);
  v.push(`firewall=${bool(nic, "firewall") ? 1 : 0}`);
  if (hostManagedSupported || bool(nic, "host_managed")) v.push(`host-managed=${bool(nic, "host_managed") ? 1 : 0}`);
  if (v4?.address) v.push(`ip=${v4.address}`);
  if (v4?.gateway) v.push(`gw=${v4.gateway}`);
  if (v6?.address) v.push(`ip6=${v6.address}`);
  if (v6?.gateway) v.push(`gw6=${v6.gateway}`);
  if (str(nic, "mac_address") !== "") v.push(`hwaddr=${str(nic, "mac_address")}`);
  if (num(nic, "mtu") !== 0) v.push(`mtu=${num(nic, "mtu")}`);
  v.push(`name=${str(nic, "name")}`);
  if (num(nic, "rate_limit") !== 0) v.push(`rate=${num(nic, "rate_limit").toFixed(2)}`);
  if (num(nic, "vlan_id") !== 0) v.push(`tag=${num(nic, "vlan_id")}`);
  return v.join(",");
}

/** PVE's property string "k=v,k2=v2" (a bare first value goes under `defaultKey`). */
export function parsePropertyString(s: string, defaultKey = "name"): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s.split(",")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq < 0) out[defaultKey] = part;
    else out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

function netIndexKeys(cfg: Record<string, unknown>): string[] {
  return Object.keys(cfg)
    .filter((k) => /^net\d+$/.test(k))
    .sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
}

/** containerGetExistingNetworkInterface: the clone's netN as network_interface objects. */
function existingInterfaces(cfg: Record<string, unknown>): ObjectValue[] {
  return netIndexKeys(cfg).map((k) => {
    const n = parsePropertyString(String(cfg[k]));
    return {
      name: n.name ?? "",
      bridge: n.bridge ?? "",
      enabled: true,
      firewall: n.firewall === "1",
      host_managed: n["host-managed"] === "1",
      mac_address: n.hwaddr ?? "",
      rate_limit: n.rate ? Number(n.rate) : 0,
      vlan_id: n.tag ? Number(n.tag) : 0,
      mtu: n.mtu ? Number(n.mtu) : 0,
    };
  });
}

/** host-managed=0 only goes to PVE 9.1+ (older releases reject the unknown sub-key); bpg asks /version. */
async function supportsHostManaged(ctx: OpContext): Promise<boolean> {
  try {
    const v = await ctx.client.request<{ version?: string }>("GET", "version", undefined, ctx.signal);
    const [major, minor] = String(v?.version ?? "").split(".").map((x) => Number.parseInt(x, 10));
    return major > 9 || (major === 9 && minor >= 1);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- read

/** PVE's `env` as bpg's environment_variables map; null (unset) when the option is not there. */
function envMap(env: unknown): ObjectValue | null {
  if (typeof env !== "string") return null;
  const out: ObjectValue = {};
  for (const pair of env.split("\0")) {
    const eq = pair.indexOf("=");
    if (eq >= 0) out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** containerRead: null state when the container is gone; otherwise the state with what drifted updated. */
export async function readContainer(ctx: OpContext, state: ObjectValue): Promise<Outcome> {
  const node = str(state, "node_name");
  const id = typeof state.id === "string" ? state.id : "";
  const vmid = Number(id);
  if (!/^\d+$/.test(id)) return { state: null, diagnostics: [fromErr(new Error(`strconv.Atoi: parsing ${JSON.stringify(id)}: invalid syntax`))] };
  let cfg: Record<string, unknown>;
  try {
    cfg = await getConfig(ctx, node, vmid);
  } catch (err) {
    if (isNotFound(err)) return { state: null, diagnostics: [] };
    return { state, diagnostics: [fromErr(err)] };
  }
  let status: { status?: string };
  try {
    status = await getStatus(ctx, node, vmid);
  } catch (err) {
    return { state, diagnostics: [fromErr(err)] };
  }
  const out: ObjectValue = { ...state };
  if (typeof out.vm_id !== "number" || out.vm_id === -1) out.vm_id = vmid;
  const isClone = asList(state.clone ?? null).length > 0;

  // Keep the state's spelling wherever the API says the same thing (PVE adds a newline to
  // descriptions, sorts tags); take the API's value where it differs: that is drift.
  const desc = typeof cfg.description === "string" ? cfg.description : "";
  if ((!isClone || str(state, "description") !== "") && desc.trim() !== str(state, "description").trim()) out.description = desc;
  const stateTags = strings(state.tags);
  if (!isClone || stateTags.length > 0) {
    const apiTags = typeof cfg.tags === "string" ? cfg.tags.split(";").map((t) => t.trim()).filter((t) => t !== "").sort() : [];
    if (!valuesEqual([...stateTags].sort(), apiTags)) out.tags = apiTags;
  }

  // bpg sets environment_variables from PVE's `env` on every read (NUL-separated K=V, split at the
  // first "="; CustomEnvironmentVariables.UnmarshalJSON in proxmox/nodes/containers/containers_types.go).
  // The attribute is not sensitive: whatever `env` holds lands in terraform state in plain text.
  out.environment_variables = envMap(cfg.env);

  const init = first(state, "initialization");
  if (init && typeof cfg.hostname === "string" && cfg.hostname !== str(init, "hostname") && str(init, "hostname") !== "") {
    out.initialization = [{ ...init, hostname: cfg.hostname }, ...asList(state.initialization ?? null).slice(1)];
  }
  const cpu = first(state, "cpu");
  if (cpu) {
    const cores = cfg.cores !== undefined ? Number(cfg.cores) : 1;
    const units = cfg.cpuunits !== undefined ? Number(cfg.cpuunits) : 0;
    out.cpu = [{ ...cpu, cores, units }];
  }
  const memory = first(state, "memory");
  if (memory) out.memory = [{ ...memory, dedicated: cfg.memory !== undefined ? Number(cfg.memory) : 512, swap: cfg.swap !== undefined ? Number(cfg.swap) : 0 }];

  const netKeys = netIndexKeys(cfg);
  out.network_interface = asList(state.network_interface ?? null).map((item, i) => {
    const nic = asObject(item);
    const raw = netKeys[i] ? parsePropertyString(String(cfg[netKeys[i]])) : null;
    if (!nic || !raw) return item;
    return {
      ...nic,
      mac_address: raw.hwaddr ?? "",
      bridge: raw.bridge ?? "",
      vlan_id: raw.tag ? Number(raw.tag) : 0,
      firewall: raw.firewall === "1",
    };
  });

  const started = status.status === "running";
  const ipv4: ObjectValue = {};
  const ipv6: ObjectValue = {};
  if (started && netKeys.length > 0) {
    try {
      for (const iface of await waitForInterfaces(ctx, node, vmid)) {
        if (iface.name === "lo") continue;
        for (const a of iface["ip-addresses"] ?? []) {
          const addr = a["ip-address"];
          if (a["ip-address-type"] === "inet" && !(iface.name in ipv4)) ipv4[iface.name] = addr;
          if (a["ip-address-type"] === "inet6" && !(iface.name in ipv6)) ipv6[iface.name] = addr;
        }
      }
    } catch (err) {
      ctx.log("warn", "error waiting for container network interfaces", { error: (err as Error).message });
    }
  }
  out.ipv4 = ipv4;
  out.ipv6 = ipv6;
  out.started = started;
  return { state: out, diagnostics: [] };
}

// ---------------------------------------------------------------- delete

/** containerDelete: stop (shutdown with forceStop) unless stopped, DELETE, then wait until it is gone. */
export async function deleteContainerResource(ctx: OpContext, state: ObjectValue): Promise<Diagnostic[]> {
  const node = str(state, "node_name");
  const id = typeof state.id === "string" ? state.id : "";
  if (!/^\d+$/.test(id)) return [fromErr(new Error(`strconv.Atoi: parsing ${JSON.stringify(id)}: invalid syntax`))];
  const vmid = Number(id);
  const deleteTimeout = typeof state.timeout_delete === "number" ? state.timeout_delete : 60;
  const diagnostics: Diagnostic[] = [];
  let status: { status?: string };
  try {
    status = await getStatus(ctx, node, vmid);
  } catch (err) {
    return [fromErr(err)];
  }
  if (status.status !== "stopped") {
    try {
      diagnostics.push(...warningDiags("Container shutdown", await shutdownContainer(ctx, node, vmid, Math.max(1, deleteTimeout - 5))));
    } catch (err) {
      return [...diagnostics, errorDiag("Container shutdown", err)];
    }
    try {
      await waitForStatus(ctx, node, vmid, "stopped");
    } catch (err) {
      return [...diagnostics, fromErr(err)];
    }
  }
  try {
    diagnostics.push(...warningDiags("Container delete", await deleteContainer(ctx, node, vmid)));
  } catch (err) {
    if (isNotFound(err)) return diagnostics;
    return [...diagnostics, errorDiag("Container delete", err)];
  }
  // Until the status call fails, the container is still there (bpg waits for status "" that never comes).
  await waitForStatus(ctx, node, vmid, "").catch(() => undefined);
  ctx.log("info", "container deleted", { vmid, node });
  return diagnostics;
}

// ---------------------------------------------------------------- import

/** `terraform import … node/vmid`: a state to be completed by the ReadResource that follows. */
export async function importContainer(ctx: OpContext, importId: string, skeleton: ObjectValue): Promise<Outcome> {
  const slash = importId.indexOf("/");
  if (slash < 0) return { state: null, diagnostics: [fromErr(new Error(`unexpected format of ID (${importId}), expected node/id`))] };
  const node = importId.slice(0, slash);
  const id = importId.slice(slash + 1);
  if (!/^\d+$/.test(id)) return { state: null, diagnostics: [fromErr(new Error(`strconv.Atoi: parsing ${JSON.stringify(id)}: invalid syntax`))] };
  const vmid = Number(id);
  let cfg: Record<string, unknown>;
  try {
    cfg = await getConfig(ctx, node, vmid);
  } catch (err) {
    return { state: null, diagnostics: [fromErr(err)] };
  }
  const features = parsePropertyString(typeof cfg.features === "string" ? cfg.features : "", "nesting");
  const state: ObjectValue = {
    ...skeleton,
    id,
    node_name: node,
    vm_id: vmid,
    unprivileged: cfg.unprivileged === 1 || cfg.unprivileged === "1",
    start_on_boot: cfg.onboot === 1 || cfg.onboot === "1",
    template: cfg.template === 1 || cfg.template === "1",
    pool_id: "",
    tags: typeof cfg.tags === "string" ? cfg.tags.split(";").filter((t) => t !== "").sort() : null,
    features: cfg.features ? [{ nesting: features.nesting === "1", keyctl: features.keyctl === "1", fuse: features.fuse === "1", mknod: features.mknod === "1", mount: null }] : [],
    initialization: typeof cfg.hostname === "string" ? [{ hostname: cfg.hostname, entrypoint: "", dns: [], ip_config: [], user_account: [] }] : [],
    cpu: [{ architecture: typeof cfg.arch === "string" ? cfg.arch : "amd64", cores: Number(cfg.cores ?? 1), limit: Number(cfg.cpulimit ?? 0), units: Number(cfg.cpuunits ?? 0) }],
    memory: [{ dedicated: Number(cfg.memory ?? 512), swap: Number(cfg.swap ?? 0) }],
    network_interface: existingInterfaces(cfg),
  };
  return { state, diagnostics: [] };
}
