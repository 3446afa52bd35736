// Loads the plugin protocol definitions (terraform's tfplugin6.8, go-plugin's controller, stdio and
// broker services, grpc health) at runtime. tsc does not copy .proto files into dist/, so the
// compiled module looks for them in the source tree as well as next to itself.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

export const TFPLUGIN_PROTO = "tfplugin6.8.proto";
const FILES = [TFPLUGIN_PROTO, "grpc_controller.proto", "grpc_stdio.proto", "grpc_broker.proto", "health.proto"];

/** sim/provider/proto under tsx; from dist/sim/provider/ it is ../../../sim/provider/proto. */
export function protoDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, "proto"), join(here, "..", "..", "..", "sim", "provider", "proto")];
  const found = candidates.find((d) => existsSync(join(d, TFPLUGIN_PROTO)));
  if (!found) throw new Error(`plugin protocol definitions not found (looked in ${candidates.join(", ")})`);
  return found;
}

export interface Protos {
  Provider: grpc.ServiceDefinition;
  GRPCController: grpc.ServiceDefinition;
  GRPCStdio: grpc.ServiceDefinition;
  GRPCBroker: grpc.ServiceDefinition;
  Health: grpc.ServiceDefinition;
}

let cached: Protos | undefined;

export function loadProtos(): Protos {
  if (cached) return cached;
  const dir = protoDir();
  const def = protoLoader.loadSync(
    FILES.map((f) => join(dir, f)),
    // keepCase: messages keep the proto's snake_case field names; int64 as JS numbers; enums by name.
    { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [dir] },
  );
  const pkg = grpc.loadPackageDefinition(def) as any;
  cached = {
    Provider: pkg.tfplugin6.Provider.service,
    GRPCController: pkg.plugin.GRPCController.service,
    GRPCStdio: pkg.plugin.GRPCStdio.service,
    GRPCBroker: pkg.plugin.GRPCBroker.service,
    Health: pkg.grpc.health.v1.Health.service,
  };
  return cached;
}
