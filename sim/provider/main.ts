// Entry point of the terraform provider stand-in (terraform-provider-proxmox_v0.111.1 in the
// filesystem mirror execs this). It serves terraform's plugin protocol 6 over gRPC on 127.0.0.1,
// with go-plugin's handshake and AutoMTLS, and drives the PVE API the way bpg/proxmox does.
import { appendFileSync, readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { clientAcceptsV6, handshakeLine, hasMagicCookie, NOT_A_COMMAND } from "./handshake.js";
import { stderrLog } from "./log.js";
import { loadProtos } from "./protos.js";
import { ProviderServer } from "./server.js";
import type { ServerCert } from "./tls.js";
import { isDebugFlag, serveDebug } from "./debug-serve.js";

const DEFAULT_POLL_MS = 1000;

async function main(): Promise<void> {
  const env = process.env;
  // bpg's main.go: `-debug` serves through tf6server.WithManagedDebug (see debug-serve.ts).
  const debug = isDebugFlag(process.argv.slice(2));
  // go-plugin checks the magic cookie only when not serving in test (debug) mode (server.go Serve).
  if (!debug && !hasMagicCookie(env)) {
    process.stderr.write(NOT_A_COMMAND);
    process.exit(1);
  }
  const log = stderrLog();
  recordCpuAtExit(env);
  if (!debug && !clientAcceptsV6(env)) log("warn", "the client did not offer plugin protocol 6; answering with 6 anyway", { offered: env.PLUGIN_PROTOCOL_VERSIONS });

  const pollMs = Number.parseInt(env.PVE_SIM_PROVIDER_POLL_MS ?? "", 10);
  const server = new grpc.Server({ "grpc.max_receive_message_length": 256 << 20, "grpc.max_send_message_length": 256 << 20 });
  let grpcServer: grpc.Server | undefined = server;
  const provider = new ProviderServer({
    log,
    env,
    pollMs: Number.isFinite(pollMs) && pollMs > 0 ? pollMs : DEFAULT_POLL_MS,
    onShutdown: () => exit(0),
  });
  provider.register(server, loadProtos());
  if (debug) {
    await serveDebug(server, log, () => exit(0));
    return;
  }

  let creds: grpc.ServerCredentials;
  let certField = "";
  const clientCert = env.PLUGIN_CLIENT_CERT;
  if (clientCert) {
    const cert = await serverCert(env);
    creds = grpc.ServerCredentials.createSsl(Buffer.from(clientCert), [{ private_key: Buffer.from(cert.keyPem), cert_chain: Buffer.from(cert.certPem) }], true);
    certField = cert.handshakeField;
  } else {
    creds = grpc.ServerCredentials.createInsecure();
  }

  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", creds, (err, p) => (err ? reject(err) : resolve(p))));
  // The one line on stdout; everything else goes to stderr.
  process.stdout.write(handshakeLine(`127.0.0.1:${port}`, certField));
  log("debug", "plugin address", { network: "tcp", address: `127.0.0.1:${port}`, tls: clientCert ? "auto-mtls" : "none" });

  // go-plugin servers eat interrupts: terraform handles Ctrl-C and stops us through StopProvider.
  process.on("SIGINT", () => log("debug", "ignoring SIGINT; terraform stops providers itself"));
  // A go plugin dies with its client's kill; if terraform itself was SIGKILLed, do not linger.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) exit(0);
  }, 1000).unref();
  // Keep running until Shutdown (the gRPC server holds the event loop).

  function exit(code: number): void {
    provider.closeStreams();
    const s = grpcServer;
    grpcServer = undefined;
    if (!s) return;
    s.tryShutdown(() => process.exit(code));
    setTimeout(() => process.exit(code), 500).unref();
  }
}

/**
 * The AutoMTLS server certificate: the one sim/provider/install.ts made for this mirror when the
 * shim names it (PVE_SIM_PROVIDER_CERT_FILE), else a fresh one as go-plugin makes per start. Making
 * one loads node-forge, a fifth of a start's CPU; terraform only pins whatever the handshake sends.
 */
async function serverCert(env: NodeJS.ProcessEnv): Promise<ServerCert> {
  const file = env.PVE_SIM_PROVIDER_CERT_FILE;
  if (file) {
    const { certPem, keyPem } = JSON.parse(readFileSync(file, "utf8")) as Pick<ServerCert, "certPem" | "keyPem">;
    // The DER is the PEM's base64 body; go-plugin reads it unpadded (RawStdEncoding).
    const handshakeField = certPem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "").replace(/=+$/, "");
    return { certPem, keyPem, handshakeField };
  }
  const { generateServerCert } = await import("./tls.js");
  return generateServerCert();
}

/**
 * PVE_SIM_PROVIDER_CPU_LOG: at exit, one JSON line with this process's CPU time (user + system,
 * from its start, as getrusage counts it) and PVE_SIM_PROVIDER_CPU_TAG (set by whoever started
 * terraform, e.g. bench/run-cost.ts's wrapper). A provider killed by SIGKILL writes nothing.
 */
function recordCpuAtExit(env: NodeJS.ProcessEnv): void {
  const file = env.PVE_SIM_PROVIDER_CPU_LOG;
  if (!file) return;
  process.on("exit", () => {
    const cpu = process.cpuUsage();
    const line = { pid: process.pid, ppid: process.ppid, tag: env.PVE_SIM_PROVIDER_CPU_TAG ?? "", userMs: cpu.user / 1000, systemMs: cpu.system / 1000 };
    try {
      appendFileSync(file, JSON.stringify(line) + "\n");
    } catch {
      // a measurement aid: never fail the provider over it
    }
  });
}

main().catch((err: Error) => {
  process.stderr.write(`terraform provider stand-in failed to start: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
