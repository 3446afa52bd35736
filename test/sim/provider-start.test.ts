// The provider stand-in's start path: precompiled protocol descriptors that match the .proto files
// and convert messages exactly as @grpc/proto-loader did, the shim running the one-file bundle with
// the certificate made at install, and the CPU record per process that the bench reads.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { spawn } from "node:child_process";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { installProviderMirror, PROVIDER_BUNDLE } from "../../sim/provider/install.js";
import { MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE } from "../../sim/provider/handshake.js";
import { loadProtos, protoDir, TFPLUGIN_PROTO } from "../../sim/provider/protos.js";
import { generateServerCert } from "../../sim/provider/tls.js";
import { ProviderMirrorFixture } from "../fixtures/terraform/helpers.js";

const world = new ProviderMirrorFixture("pve-runners-provider-start-");

describe("precompiled plugin protocol descriptors", () => {
  test("plugin-descriptors.ts is what the .proto files generate (else: node sim/provider/proto/generate-descriptors.mjs)", async () => {
    const { descriptorSource } = (await import(join(protoDir(), "descriptors.mjs"))) as { descriptorSource(dir: string): string };
    const generated = await readFile(join(protoDir(), "..", "plugin-descriptors.ts"), "utf8");
    assert.ok(generated === descriptorSource(protoDir()), "sim/provider/plugin-descriptors.ts is stale: regenerate it");
  });

  test("messages encode and decode as proto-loader's definitions did (snake_case, enums by name, int64 as numbers, bytes, defaults)", () => {
    const dir = protoDir();
    const files = [TFPLUGIN_PROTO, "grpc_controller.proto", "grpc_stdio.proto", "grpc_broker.proto", "health.proto"];
    const opts = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [dir] };
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(files.map((f) => join(dir, f)), opts)) as any;
    const theirs = pkg.tfplugin6.Provider.service as grpc.ServiceDefinition;
    const ours = loadProtos().Provider;
    assert.deepEqual(Object.keys(ours).sort(), Object.keys(theirs).sort());
    for (const [name, m] of Object.entries(theirs)) {
      assert.equal(ours[name].path, m.path);
      assert.equal(ours[name].requestStream, m.requestStream);
      assert.equal(ours[name].responseStream, m.responseStream);
      assert.equal(ours[name].originalName, m.originalName);
    }
    const response = {
      provider: { version: 1, block: { version: 2, attributes: [{ name: "api_token", type: Buffer.from('"string"'), optional: true, sensitive: true }], block_types: [{ type_name: "ssh", nesting: "LIST", max_items: 1, block: { attributes: [] } }] } },
      resource_schemas: { proxmox_virtual_environment_container: { version: 0, block: { attributes: [{ name: "id", type: Buffer.from('"string"'), computed: true }] } } },
      diagnostics: [{ severity: "WARNING", summary: "s", detail: "d", attribute: { steps: [{ attribute_name: "a" }, { element_key_int: 3 }] } }],
      server_capabilities: { plan_destroy: true },
    };
    const method = ours.GetProviderSchema;
    const bytes = method.responseSerialize(response);
    assert.deepEqual(bytes, theirs.GetProviderSchema.responseSerialize(response));
    assert.deepEqual(method.responseDeserialize(bytes), theirs.GetProviderSchema.responseDeserialize(bytes));
    const decoded = method.responseDeserialize(bytes) as any;
    assert.equal(decoded.diagnostics[0].severity, "WARNING");
    assert.equal(decoded.provider.block.block_types[0].max_items, 1);
    assert.equal(decoded.diagnostics[0].attribute.steps[1].selector, "element_key_int");
    assert.deepEqual(decoded.provider.block.attributes[0].type, Buffer.from('"string"'));
    assert.equal(decoded.provider.block.attributes[0].computed, false, "defaults present");
  });
});

/** Starts the installed shim as terraform does; resolves with its handshake line, its stderr and its exit. */
function startShim(env: NodeJS.ProcessEnv, executable = world.mirror.executable) {
  const child = spawn(executable, [], { env: { PATH: process.env.PATH, [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr.on("data", (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const line = new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`no handshake line; stderr: ${err}`)), 20_000);
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
      if (!out.includes("\n")) return;
      clearTimeout(timer);
      resolve(out.slice(0, out.indexOf("\n")));
    });
  });
  return { child, line, exited, stderr: () => err };
}

describe("the installed shim", () => {
  test("runs the one-file bundle with a code cache and answers every start with the certificate made at install", async () => {
    const script = await readFile(world.mirror.executable, "utf8");
    // node runs the executable itself (no /bin/sh in between): the loader, naming the install's certificate.
    assert.ok(script.startsWith(`#!${process.execPath} --use-openssl-ca\n`), script.split("\n")[0]);
    assert.ok(script.includes(`/${PROVIDER_BUNDLE}"`), "the loader runs the bundle");
    assert.ok(script.includes(`process.env.PVE_SIM_PROVIDER_CERT_FILE = ${JSON.stringify(join(world.root, "tf", "provider-server-cert.json"))};`));
    const made = JSON.parse(await readFile(join(world.root, "tf", "provider-server-cert.json"), "utf8")) as { certPem: string };
    // The handshake carries the certificate's DER, unpadded base64: the PEM's body.
    const der = new X509Certificate(made.certPem).raw.toString("base64").replace(/=+$/, "");
    const clientCert = generateServerCert();
    const fields: string[] = [];
    for (let i = 0; i < 2; i++) {
      const p = startShim({ PLUGIN_CLIENT_CERT: clientCert.certPem });
      fields.push((await p.line).split("|")[5]);
      p.child.kill("SIGKILL");
      await p.exited;
    }
    assert.deepEqual(fields, [der, der]);
    // SIGKILLed starts write no code cache; the next test's clean exit does.
  });

  test("PVE_SIM_PROVIDER_CPU_LOG: one line per process at exit, with its tag and CPU time", async () => {
    const log = join(world.root, "cpu.log");
    const p = startShim({ PVE_SIM_PROVIDER_CPU_LOG: log, PVE_SIM_PROVIDER_CPU_TAG: "1234 apply" });
    const m = /^1\|6\|tcp\|(127\.0\.0\.1:\d+)\|grpc\|$/.exec(await p.line);
    assert.ok(m, "plain gRPC without PLUGIN_CLIENT_CERT");
    const Controller = grpc.makeGenericClientConstructor(loadProtos().GRPCController, "GRPCController");
    const controller = new Controller(m[1], grpc.credentials.createInsecure()) as any;
    await new Promise<void>((resolve, reject) => controller.Shutdown({}, (err: Error | null) => (err ? reject(err) : resolve())));
    controller.close();
    assert.equal(await p.exited, 0);
    const lines = (await readFile(log, "utf8")).trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines.length, 1);
    assert.equal(lines[0].pid, p.child.pid, "the shim execs node: the provider is the process terraform started");
    assert.equal(lines[0].tag, "1234 apply");
    assert.ok(lines[0].userMs > 0 && lines[0].systemMs >= 0, JSON.stringify(lines[0]));
    assert.ok((await stat(join(world.root, "tf", "provider-code-cache"))).size > 0, "the first clean exit wrote the code cache");
  });

  test('under a package.json with "type": "module" (where node refuses the name\'s ".1" extension) a /bin/sh wrapper runs the loader', async () => {
    const scope = join(world.root, "esm-scope");
    await mkdir(scope);
    await writeFile(join(scope, "package.json"), '{ "type": "module" }\n');
    const esm = await installProviderMirror(join(scope, "tf"));
    const script = await readFile(esm.executable, "utf8");
    assert.match(script, /^#!\/bin\/sh\n[^]*PVE_SIM_PROVIDER_CERT_FILE='[^']+' exec '[^']+' '--use-openssl-ca' '[^']+\/provider-start\.cjs' "\$@"/);
    const p = startShim({}, esm.executable);
    assert.match(await p.line, /^1\|6\|tcp\|127\.0\.0\.1:\d+\|grpc\|$/);
    p.child.kill("SIGKILL");
    await p.exited;
  });
});
