// The provider stand-in as a go-plugin process: magic cookie, handshake line, AutoMTLS, the
// health/controller services, the schema over gRPC; then real terraform installing it from the
// filesystem mirror and planning a runner stack (no API calls are needed for either).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { terraformPlatform } from "../../sim/provider/install.js";
import { MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE } from "../../sim/provider/handshake.js";
import { loadProtos } from "../../sim/provider/protos.js";
import { generateServerCert } from "../../sim/provider/tls.js";
import { decodeMsgpack, encodeMsgpack, fromJson } from "../../sim/provider/codec.js";
import { isUnknown, type ObjectValue } from "../../sim/provider/values.js";
import { CONTAINER, CONTAINER_TYPE, DOWNLOAD_FILE } from "../../sim/provider/schema.js";
import { FIREWALL_OPTIONS } from "../../sim/provider/firewall-options.js";
import { synthRunnerStack } from "../../stacks/runner-stack.js";
import { runnerStackSpec } from "../fixtures/runner-stack-spec.js";
import { ProviderMirrorFixture } from "../fixtures/terraform/helpers.js";
import { BPG_PROXMOX_VERSION } from "../../stacks/bpg-proxmox.js";

const run = promisify(execFile);
const world = new ProviderMirrorFixture("pve-runners-provider-");

interface Started {
  child: ChildProcess;
  line: string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts the plugin as terraform would, and waits for its handshake line. */
function startPlugin(env: NodeJS.ProcessEnv): Promise<Started> {
  const child = spawn(world.mirror.executable, [], { env: { PATH: process.env.PATH, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no handshake line; stderr: ${err}`)), 10_000);
    child.stdout!.on("data", (c: Buffer) => {
      out += c.toString();
      const nl = out.indexOf("\n");
      if (nl >= 0) {
        clearTimeout(timer);
        resolve({ child, line: out.slice(0, nl), stderr: () => err, exited });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      if (!out.includes("\n")) resolve({ child, line: "", stderr: () => err, exited: Promise.resolve(code) });
    });
  });
}

type Unary = (req: object, cb: (err: grpc.ServiceError | null, res: any) => void) => void;
function clients(address: string, creds: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}) {
  const p = loadProtos();
  const make = (def: grpc.ServiceDefinition, name: string) => new (grpc.makeGenericClientConstructor(def, name))(address, creds, options) as unknown as Record<string, Unary> & grpc.Client;
  return { provider: make(p.Provider, "Provider"), health: make(p.Health, "Health"), controller: make(p.GRPCController, "GRPCController") };
}
const call = (c: Record<string, Unary>, method: string, req: object = {}) =>
  new Promise<any>((resolve, reject) => c[method].call(c, req, (err, res) => (err ? reject(err) : resolve(res))));

describe("provider stand-in as a go-plugin", () => {
  test("without terraform's magic cookie it says it is a plugin and exits 1", async () => {
    const p = await startPlugin({});
    assert.equal(await p.exited, 1);
    assert.equal(p.line, "");
    assert.match(p.stderr(), /This binary is a plugin\. These are not meant to be executed directly\./);
  });

  test("handshake, health, schema and Shutdown over plain gRPC (no PLUGIN_CLIENT_CERT)", async () => {
    const p = await startPlugin({ [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE, PLUGIN_PROTOCOL_VERSIONS: "5,6" });
    const m = /^1\|6\|tcp\|(127\.0\.0\.1:\d+)\|grpc\|$/.exec(p.line);
    assert.ok(m, `handshake line: ${p.line}`);
    const c = clients(m[1], grpc.credentials.createInsecure());
    assert.deepEqual(await call(c.health, "Check", { service: "plugin" }), { status: "SERVING" });
    await assert.rejects(call(c.health, "Check", { service: "nope" }), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);

    const schema = await call(c.provider, "GetProviderSchema");
    const res = schema.resource_schemas[CONTAINER];
    const attr = (name: string) => res.block.attributes.find((a: { name: string }) => a.name === name);
    assert.equal(attr("node_name").required, true);
    assert.deepEqual(JSON.parse(Buffer.from(attr("tags").type).toString()), ["list", "string"]);
    assert.equal(attr("started").optional && attr("started").computed, true, "a defaulted attribute is Optional+Computed");
    const nic = res.block.block_types.find((b: { type_name: string }) => b.type_name === "network_interface");
    assert.equal(nic.nesting, "LIST");
    assert.equal(Number(nic.max_items), 10);
    assert.equal(schema.provider.block.attributes.find((a: { name: string }) => a.name === "api_token").sensitive, true);
    const meta = await call(c.provider, "GetMetadata");
    assert.deepEqual(meta.resources, [{ type_name: CONTAINER }, { type_name: FIREWALL_OPTIONS }, { type_name: DOWNLOAD_FILE }]);
    // bpg's download_file (plugin framework): size and id computed, upload_timeout defaulted.
    const dl = schema.resource_schemas[DOWNLOAD_FILE];
    const dlAttr = (name: string) => dl.block.attributes.find((a: { name: string }) => a.name === name);
    assert.equal(dlAttr("url").required, true);
    assert.equal(dlAttr("size").computed && !dlAttr("size").optional, true);
    assert.equal(dlAttr("file_name").optional && dlAttr("file_name").computed, true);
    assert.equal(dlAttr("upload_timeout").computed, true, "defaulted");
    // bpg's firewall options: exactly one of vm_id/container_id, bpg's defaults (DROP in, ACCEPT out).
    const fw = schema.resource_schemas[FIREWALL_OPTIONS];
    const fwAttr = (name: string) => fw.block.attributes.find((a: { name: string }) => a.name === name);
    assert.equal(fwAttr("node_name").required, true);
    assert.equal(fwAttr("container_id").optional && !fwAttr("container_id").computed, true);
    assert.equal(fwAttr("input_policy").computed, true, "defaulted");

    // A planned create over the wire: defaults filled in, unknowns back as msgpack extensions.
    const config = { msgpack: encodeMsgpack(CONTAINER_TYPE, fromJson(CONTAINER_TYPE, { node_name: "pve", clone: [{ vm_id: 9000 }] })) };
    const plan = await call(c.provider, "PlanResourceChange", { type_name: CONTAINER, prior_state: { msgpack: Buffer.from([0xc0]) }, proposed_new_state: config, config });
    assert.deepEqual(plan.diagnostics, []);
    const planned = decodeMsgpack(CONTAINER_TYPE, plan.planned_state.msgpack) as ObjectValue;
    assert.ok(isUnknown(planned.id) && isUnknown(planned.vm_id));
    assert.equal(planned.started, true);
    assert.equal((planned.clone as ObjectValue[])[0].full, true);

    await call(c.controller, "Shutdown");
    assert.equal(await p.exited, 0);
    for (const x of Object.values(c)) x.close();
  });

  test("announces bpg's server capabilities (its tf6muxserver's) and answers a destroy plan as the mux does", async () => {
    const p = await startPlugin({ [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE, PLUGIN_PROTOCOL_VERSIONS: "6" });
    const c = clients(p.line.split("|")[3], grpc.credentials.createInsecure());
    try {
      // terraform-plugin-mux v0.23.1 tf6muxserver/server_capabilities.go (generate_resource_config is not in tfplugin6.8).
      const bpg = { plan_destroy: true, get_provider_schema_optional: true, move_resource_state: true };
      assert.deepEqual((await call(c.provider, "GetMetadata")).server_capabilities, bpg);
      assert.deepEqual((await call(c.provider, "GetProviderSchema")).server_capabilities, bpg);
      // plan_destroy: terraform now sends destroy plans; the answer is a null plan keeping the prior private state.
      const prior = { msgpack: encodeMsgpack(CONTAINER_TYPE, fromJson(CONTAINER_TYPE, { id: "101", node_name: "pve", vm_id: 101 })) };
      const nul = { msgpack: Buffer.from([0xc0]) };
      const plan = await call(c.provider, "PlanResourceChange", { type_name: CONTAINER, prior_state: prior, proposed_new_state: nul, config: nul, prior_private: Buffer.from("p") });
      assert.deepEqual(plan.diagnostics, []);
      assert.equal(decodeMsgpack(CONTAINER_TYPE, plan.planned_state.msgpack), null);
      assert.deepEqual(plan.requires_replace, []);
      assert.deepEqual(plan.planned_private, Buffer.from("p"));
      await call(c.controller, "Shutdown");
      assert.equal(await p.exited, 0);
    } finally {
      p.child.kill("SIGKILL"); // a failed assertion must not leave the plugin serving
      for (const x of Object.values(c)) x.close();
    }
  });

  test("AutoMTLS: a self-signed localhost certificate in the handshake, client certificate required", async () => {
    const clientCert = generateServerCert(); // go-plugin's client cert has the same shape
    const p = await startPlugin({ [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE, PLUGIN_CLIENT_CERT: clientCert.certPem });
    const m = /^1\|6\|tcp\|(127\.0\.0\.1:\d+)\|grpc\|([A-Za-z0-9+/]+)$/.exec(p.line);
    assert.ok(m, `handshake line: ${p.line}`);
    const der = Buffer.from(m[2], "base64");
    const cert = new X509Certificate(der);
    assert.equal(cert.subjectAltName, "DNS:localhost");
    assert.equal(cert.ca, true);
    assert.ok(cert.verify(cert.publicKey), "self-signed");
    const serverPem = cert.toString();
    const opts = { "grpc.ssl_target_name_override": "localhost" };

    const ok = clients(m[1], grpc.credentials.createSsl(Buffer.from(serverPem), Buffer.from(clientCert.keyPem), Buffer.from(clientCert.certPem)), opts);
    assert.deepEqual(await call(ok.health, "Check", { service: "plugin" }), { status: "SERVING" });

    const anonymous = clients(m[1], grpc.credentials.createSsl(Buffer.from(serverPem)), opts);
    await assert.rejects(call(anonymous.health, "Check", { service: "plugin" }), (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE);
    const stranger = generateServerCert();
    const wrong = clients(m[1], grpc.credentials.createSsl(Buffer.from(serverPem), Buffer.from(stranger.keyPem), Buffer.from(stranger.certPem)), opts);
    await assert.rejects(call(wrong.health, "Check", { service: "plugin" }), (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE);

    await call(ok.controller, "Shutdown");
    assert.equal(await p.exited, 0);
    for (const c of [ok, anonymous, wrong]) for (const x of Object.values(c)) x.close();
  });
});

describe("terraform with the stand-in from the filesystem mirror", () => {
  const env = () => ({
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TF_CLI_CONFIG_FILE: world.mirror.cliConfigFile,
    TF_IN_AUTOMATION: "1",
    CHECKPOINT_DISABLE: "1",
    PROXMOX_VE_API_TOKEN: "pve-runners@pve!listener=8c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
  });
  const tf = (cwd: string, ...args: string[]) => run("terraform", args, { cwd, env: env() });

  test("the mirror layout and CLI config are what terraform expects", async () => {
    assert.match(world.mirror.executable, new RegExp(`/mirror/registry\\.terraform\\.io/bpg/proxmox/${BPG_PROXMOX_VERSION.replace(/\./g, "\\.")}/${terraformPlatform()}/terraform-provider-proxmox_v${BPG_PROXMOX_VERSION.replace(/\./g, "\\.")}$`));
    assert.equal(((await stat(world.mirror.executable)).mode & 0o111) !== 0, true);
    const rc = await readFile(world.mirror.cliConfigFile, "utf8");
    assert.match(rc, /filesystem_mirror \{\s+path\s+= ".*\/mirror"\s+include = \["registry\.terraform\.io\/bpg\/proxmox"\]/);
    assert.match(rc, /direct \{\s+exclude = \["registry\.terraform\.io\/bpg\/proxmox"\]/);
    assert.equal(terraformPlatform("linux", "arm64"), "linux_arm64");
  });

  test("init installs it, validate accepts the synthesized runner stack and rejects a typo, plan shows bpg's defaults", async () => {
    const { workingDir, file } = synthRunnerStack(join(world.root, "synth"), runnerStackSpec({ runnerName: "runner-7", endpoint: "https://127.0.0.1:8006/" }));
    const init = await tf(workingDir, "init", "-input=false", "-no-color");
    assert.match(init.stdout, /Installing bpg\/proxmox v0\.111\.1/);
    assert.match(await readFile(join(workingDir, ".terraform.lock.hcl"), "utf8"), /provider "registry\.terraform\.io\/bpg\/proxmox"[\s\S]*version\s+= "0\.111\.1"/);
    assert.match((await tf(workingDir, "validate", "-no-color")).stdout, /The configuration is valid/);

    const plan = await tf(workingDir, "plan", "-input=false", "-json", "-out=tfplan");
    assert.match(plan.stdout, /"type":"planned_change"/);
    const shown = JSON.parse((await tf(workingDir, "show", "-json", "tfplan")).stdout);
    const change = shown.resource_changes[0].change;
    assert.deepEqual(change.actions, ["create"]);
    assert.equal(change.after.started, true);
    assert.equal(change.after.start_on_boot, false);
    assert.equal(change.after.timeout_clone, 1800);
    assert.equal(change.after.clone[0].full, false);
    assert.equal(change.after.network_interface[0].bridge, "vmbr1");
    assert.equal(change.after.network_interface[0].enabled, true);
    assert.equal(change.after_unknown.vm_id, true);
    assert.equal(change.after_unknown.network_interface[0].mac_address, true);
    assert.equal(change.after_sensitive.api_token, undefined);

    const stack = JSON.parse(await readFile(file, "utf8"));
    stack.resource.proxmox_virtual_environment_container.runner.network_interface[0].vlan = 30;
    await writeFile(file, JSON.stringify(stack));
    const bad = await tf(workingDir, "validate", "-json").catch((e: { stdout: string }) => e);
    assert.match(bad.stdout, /Extraneous JSON object property/);
    assert.match(bad.stdout, /No argument or block type is named \\"vlan\\"/);
  });

  test("the provider's own validation reaches terraform as attribute diagnostics", async () => {
    const { workingDir } = synthRunnerStack(
      join(world.root, "invalid"),
      runnerStackSpec({ runnerName: "runner-8", labelSet: "x", endpoint: "https://127.0.0.1:8006/", vlan: undefined, pool: undefined, cores: 500, swapMb: 0 }),
    );
    await tf(workingDir, "init", "-input=false", "-no-color");
    const out = await tf(workingDir, "validate", "-json").catch((e: { stdout: string }) => e);
    const doc = JSON.parse(out.stdout);
    assert.equal(doc.valid, false);
    assert.match(doc.diagnostics[0].summary, /expected cpu\.0\.cores to be in the range \(1 - 128\), got 500/);
  });
});
