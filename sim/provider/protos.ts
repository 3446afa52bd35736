// The plugin protocol's gRPC services (terraform's tfplugin6.8, go-plugin's controller, stdio and
// broker services, grpc health) from precompiled descriptors (plugin-descriptors.ts, generated from
// the .proto files in proto/). terraform starts a provider 4-5 times per apply: parsing the .proto
// text with @grpc/proto-loader cost ~0.2 CPU-s per start, which measured the stand-in, not us.
// Messages convert as proto-loader did with { keepCase, longs: Number, enums: String, defaults,
// oneofs }; each message type's encoder and decoder is generated on its first use (protobufjs).
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs/light.js";
import { PLUGIN_DESCRIPTORS } from "./plugin-descriptors.js";

export const TFPLUGIN_PROTO = "tfplugin6.8.proto";

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

/** What proto-loader's options made of a message: snake_case names, int64 as numbers, enums by name, defaults present. */
const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true, oneofs: true };

let cached: Protos | undefined;

export function loadProtos(): Protos {
  if (cached) return cached;
  const root = protobuf.Root.fromJSON(PLUGIN_DESCRIPTORS as protobuf.INamespace);
  cached = {
    Provider: serviceDefinition(root, "tfplugin6.Provider"),
    GRPCController: serviceDefinition(root, "plugin.GRPCController"),
    GRPCStdio: serviceDefinition(root, "plugin.GRPCStdio"),
    GRPCBroker: serviceDefinition(root, "plugin.GRPCBroker"),
    Health: serviceDefinition(root, "grpc.health.v1.Health"),
  };
  return cached;
}

/** grpc-js' ServiceDefinition for one service, shaped like proto-loader's (path, streams, (de)serializers, originalName). */
function serviceDefinition(root: protobuf.Root, fullName: string): grpc.ServiceDefinition {
  const service = root.lookupService(fullName);
  const def: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const method of service.methodsArray) {
    method.resolve();
    const req = method.resolvedRequestType!;
    const res = method.resolvedResponseType!;
    def[method.name] = {
      path: `/${fullName}/${method.name}`,
      requestStream: !!method.requestStream,
      responseStream: !!method.responseStream,
      requestSerialize: serializer(req),
      requestDeserialize: deserializer(req),
      responseSerialize: serializer(res),
      responseDeserialize: deserializer(res),
      // proto-loader's camelCase alias: grpc-js accepts either name for a handler or client method.
      originalName: method.name.charAt(0).toLowerCase() + method.name.slice(1),
    };
  }
  return def as grpc.ServiceDefinition;
}

function serializer(type: protobuf.Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    const bytes = type.encode(type.fromObject(value)).finish();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer(type: protobuf.Type): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), TO_OBJECT);
}
