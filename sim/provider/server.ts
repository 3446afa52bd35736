// The tfplugin6 Provider service plus go-plugin's companion services (GRPCController, GRPCStdio,
// GRPCBroker) and the grpc health check terraform pings with service name "plugin".
import * as grpc from "@grpc/grpc-js";
import { decodeDynamic, encodeMsgpack, fromJson } from "./codec.js";
import { createContainer, deleteContainerResource, importContainer, readContainer, type Diagnostic } from "./container.js";
import { FIREWALL_OPTIONS, FIREWALL_OPTIONS_SCHEMA, FIREWALL_OPTIONS_TYPE, importFirewallOptions, readFirewallOptions, setFirewallOptions, validateFirewallOptions } from "./firewall-options.js";
import type { Log } from "./log.js";
import { redact } from "./log.js";
import { planBlock, planResourceChange, type PathStep } from "./plan.js";
import { providerSettings, type ProviderSettings } from "./provider-config.js";
import { PveClient } from "./pve-client.js";
import type { OpContext } from "./pve-ops.js";
import { CONTAINER, CONTAINER_SCHEMA, CONTAINER_TYPE, DOWNLOAD_FILE, DOWNLOAD_FILE_SCHEMA, DOWNLOAD_FILE_TYPE, PROVIDER_SCHEMA, PROVIDER_TYPE, schemaToProto } from "./schema.js";
import { createDownloadFile, deleteDownloadFile, readDownloadFile, updateDownloadFile } from "./download-file.js";
import { validateContainer, validateDownloadFile } from "./validate.js";
import { asObject, unknownsToNull, valuesEqual, type BlockSchema, type CtyType, type ObjectValue, type Value } from "./values.js";
import type { Protos } from "./protos.js";

export interface ServerOptions {
  log: Log;
  env: NodeJS.ProcessEnv;
  /** bpg polls every second; tests make it faster (PVE_SIM_PROVIDER_POLL_MS). */
  pollMs: number;
  /** GRPCController.Shutdown: the plugin exits after answering. */
  onShutdown: () => void;
}

type Msg = Record<string, any>;
type Handler = (req: Msg) => Promise<Msg>;

/**
 * What bpg v0.111.1 announces: its main.go serves a tf6muxserver (terraform-plugin-mux v0.23.1, per
 * its go.mod), whose GetMetadata and GetProviderSchema always answer with the mux's
 * serverCapabilities (tf6muxserver/server_capabilities.go): GetProviderSchemaOptional, MoveResourceState,
 * PlanDestroy and GenerateResourceConfig all true. tfplugin6.8, what terraform 1.11 speaks, has no
 * generate_resource_config field (terraform 1.11 drops it unread), so it is not sent.
 * - get_provider_schema_optional: terraform fetches the schema once per run and serves every later
 *   provider start from its cache, instead of a GetProviderSchema call on each start.
 * - plan_destroy: terraform sends destroy plans (proposed_new_state null) to PlanResourceChange; the
 *   mux answers them itself for bpg's SDKv2 resources (planned state null, prior private kept:
 *   tf6muxserver/mux_server_PlanResourceChange.go), as planResourceChange does for every type here.
 */
const CAPABILITIES = { plan_destroy: true, get_provider_schema_optional: true, move_resource_state: true };

interface ProtoDiag {
  severity: "ERROR" | "WARNING";
  summary: string;
  detail: string;
  attribute?: { steps: PathStep[] };
}

const error = (summary: string, detail = ""): ProtoDiag => ({ severity: "ERROR", summary, detail });

/** The resource types the stand-in serves, with their schema and validation. */
interface ResourceKind {
  schema: BlockSchema;
  type: CtyType;
  validate: (config: Value) => Array<{ summary: string; path: PathStep[] }>;
}
const RESOURCES: Record<string, ResourceKind> = {
  [CONTAINER]: { schema: CONTAINER_SCHEMA, type: CONTAINER_TYPE, validate: validateContainer },
  [FIREWALL_OPTIONS]: { schema: FIREWALL_OPTIONS_SCHEMA, type: FIREWALL_OPTIONS_TYPE, validate: validateFirewallOptions },
  [DOWNLOAD_FILE]: { schema: DOWNLOAD_FILE_SCHEMA, type: DOWNLOAD_FILE_TYPE, validate: validateDownloadFile },
};

export class ProviderServer {
  private settings?: ProviderSettings;
  private client?: PveClient;
  /**
   * StopProvider cancels whatever is in flight, like a cancelled Go context, and later calls get a
   * fresh one (tf6server's stop(): close(stopCh); stopCh = make(chan struct{})). Matters when one
   * process serves many terraform runs (-debug): a Stop from one run cancels every run's calls.
   */
  private stop = new AbortController();
  private readonly openStreams = new Set<grpc.ServerWritableStream<any, any> | grpc.ServerDuplexStream<any, any>>();

  constructor(private readonly opts: ServerOptions) {}

  register(server: grpc.Server, protos: Protos): void {
    server.addService(protos.Provider, this.providerService());
    server.addService(protos.GRPCController, {
      Shutdown: (_call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
        cb(null, {});
        this.opts.log("debug", "shutdown requested by the client");
        setImmediate(() => this.opts.onShutdown());
      },
    });
    // go-plugin streams the plugin's stdout/stderr over this; ours goes to the real stderr, so the stream stays empty.
    server.addService(protos.GRPCStdio, {
      StreamStdio: (call: grpc.ServerWritableStream<Msg, Msg>) => this.holdOpen(call),
    });
    // Terraform never brokers extra connections to a provider; keep the stream open and idle.
    server.addService(protos.GRPCBroker, {
      StartStream: (call: grpc.ServerDuplexStream<Msg, Msg>) => {
        call.on("data", () => undefined);
        this.holdOpen(call);
      },
    });
    const serving = (service: string) => service === "" || service === "plugin";
    server.addService(protos.Health, {
      Check: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
        if (serving(call.request.service)) cb(null, { status: "SERVING" });
        else cb({ code: grpc.status.NOT_FOUND, details: "unknown service" });
      },
      List: (_call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => cb(null, { statuses: { plugin: { status: "SERVING" } } }),
      Watch: (call: grpc.ServerWritableStream<Msg, Msg>) => {
        call.write({ status: serving(call.request.service) ? "SERVING" : "SERVICE_UNKNOWN" });
        this.holdOpen(call);
      },
    });
  }

  /** Ends the streams held open for go-plugin, so the server can shut down. */
  closeStreams(): void {
    for (const s of this.openStreams) s.end();
    this.openStreams.clear();
  }

  private holdOpen(call: grpc.ServerWritableStream<any, any> | grpc.ServerDuplexStream<any, any>): void {
    this.openStreams.add(call);
    call.on("cancelled", () => this.openStreams.delete(call));
    call.on("error", () => this.openStreams.delete(call));
  }

  private providerService(): grpc.UntypedServiceImplementation {
    const handlers: Record<string, Handler> = {
      GetMetadata: async () => ({ server_capabilities: CAPABILITIES, diagnostics: [], data_sources: [], resources: Object.keys(RESOURCES).map((type_name) => ({ type_name })), functions: [], ephemeral_resources: [] }),
      GetProviderSchema: async () => ({
        provider: schemaToProto(PROVIDER_SCHEMA),
        resource_schemas: Object.fromEntries(Object.entries(RESOURCES).map(([name, r]) => [name, schemaToProto(r.schema)])),
        data_source_schemas: {},
        functions: {},
        ephemeral_resource_schemas: {},
        diagnostics: [],
        server_capabilities: CAPABILITIES,
      }),
      ValidateProviderConfig: async (req) => {
        decodeDynamic(PROVIDER_TYPE, req.config); // a malformed value fails here, as a type error would
        return { diagnostics: [] };
      },
      ValidateResourceConfig: async (req) => {
        const kind = this.kind(req.type_name);
        const diags = kind.validate(decodeDynamic(kind.type, req.config));
        return { diagnostics: diags.map((d) => ({ ...error(d.summary), attribute: { steps: d.path } })) };
      },
      ValidateDataResourceConfig: async (req) => ({ diagnostics: [error(`unknown data source type ${JSON.stringify(req.type_name)}`, "The provider stand-in has no data sources.")] }),
      ValidateEphemeralResourceConfig: async (req) => ({ diagnostics: [error(`unknown ephemeral resource type ${JSON.stringify(req.type_name)}`)] }),
      UpgradeResourceState: async (req) => {
        const { type } = this.kind(req.type_name);
        const raw = req.raw_state ?? {};
        if (!raw.json || raw.json.length === 0) {
          if (raw.flatmap && Object.keys(raw.flatmap).length > 0) return { diagnostics: [error("legacy flatmap state is not supported by the provider stand-in")] };
          return { upgraded_state: { msgpack: encodeMsgpack(type, null) }, diagnostics: [] };
        }
        // Schema version 0 throughout: upgrading is re-reading the JSON with today's schema.
        const value = fromJson(type, JSON.parse(Buffer.from(raw.json).toString("utf8")));
        return { upgraded_state: { msgpack: encodeMsgpack(type, value) }, diagnostics: [] };
      },
      ConfigureProvider: async (req) => {
        const { settings, diagnostics } = providerSettings(decodeDynamic(PROVIDER_TYPE, req.config), this.opts.env);
        // The same settings again (every run attached to one -debug process configures it): the
        // client stays. Other settings: a new client for later calls; calls in flight keep theirs,
        // as Go keeps the old client alive for whoever still holds it.
        if (settings && !sameSettings(this.settings, settings)) {
          this.settings = settings;
          this.client = new PveClient({ endpoint: settings.endpoint, insecure: settings.insecure, auth: settings.auth, log: this.opts.log });
          if (settings.endpoint.startsWith("http:")) this.opts.log("warn", "plain-http endpoint accepted (bpg would refuse it; the PVE simulator serves http)", { endpoint: settings.endpoint });
          this.opts.log("debug", "provider configured", { endpoint: settings.endpoint, insecure: settings.insecure, auth: settings.auth.kind, terraform_version: req.terraform_version });
        }
        return { diagnostics };
      },
      ReadResource: async (req) => {
        const { type } = this.kind(req.type_name);
        const current = asObject(decodeDynamic(type, req.current_state));
        if (!current) return { new_state: { msgpack: encodeMsgpack(type, null) }, diagnostics: [], private: req.private };
        const read = { [FIREWALL_OPTIONS]: readFirewallOptions, [DOWNLOAD_FILE]: readDownloadFile }[req.type_name as string] ?? readContainer;
        const out = await read(this.ctx(undefined), current);
        return { new_state: { msgpack: encodeMsgpack(type, out.state) }, diagnostics: this.diags(out.diagnostics), private: req.private };
      },
      PlanResourceChange: async (req) => {
        const { schema, type } = this.kind(req.type_name);
        const prior = decodeDynamic(type, req.prior_state);
        const proposed = decodeDynamic(type, req.proposed_new_state);
        const config = decodeDynamic(type, req.config);
        const { planned, requiresReplace } = planResourceChange(schema, prior, proposed, config);
        // bpg's firewall options have no ForceNew attribute: their changes are updates in place.
        // download_file replaces only for its RequiresReplace attributes; the container for any change.
        const replace =
          req.type_name === FIREWALL_OPTIONS
            ? []
            : req.type_name === DOWNLOAD_FILE
              ? requiresReplace.filter((steps) => "attribute_name" in steps[0] && schema.attributes[steps[0].attribute_name]?.forceNew === true)
              : requiresReplace;
        return { planned_state: { msgpack: encodeMsgpack(type, planned) }, requires_replace: replace.map((steps) => ({ steps })), planned_private: req.prior_private, diagnostics: [] };
      },
      ApplyResourceChange: async (req) => {
        if (req.type_name === FIREWALL_OPTIONS) return this.applyFirewallOptions(req);
        if (req.type_name === DOWNLOAD_FILE) return this.applyDownloadFile(req);
        this.checkType(req.type_name);
        const prior = asObject(decodeDynamic(CONTAINER_TYPE, req.prior_state));
        const planned = asObject(decodeDynamic(CONTAINER_TYPE, req.planned_state));
        const encode = (v: Value) => ({ msgpack: encodeMsgpack(CONTAINER_TYPE, v) });
        if (!planned) {
          if (!prior) return { new_state: encode(null), diagnostics: [] };
          const diags = await deleteContainerResource(this.ctx(prior, "timeout_delete", 60), prior);
          const failed = diags.some((d) => d.severity === "ERROR");
          // A failed delete keeps the object in state, as SDKv2 does.
          return { new_state: encode(failed ? prior : null), diagnostics: this.diags(diags), private: req.planned_private };
        }
        if (!prior) {
          const out = await createContainer(this.ctx(planned, "timeout_clone", 1800), planned);
          return { new_state: encode(out.state), diagnostics: this.diags(out.diagnostics), private: req.planned_private };
        }
        // Every change is planned as a replacement, so an in-place update only arrives with nothing to do.
        if (valuesEqual(prior, planned)) return { new_state: encode(planned), diagnostics: [], private: req.planned_private };
        return { new_state: encode(prior), diagnostics: [error("in-place update is not supported by the provider stand-in", "The stand-in plans every change as a replacement; this update should not have been planned.")] };
      },
      ImportResourceState: async (req) => {
        const { schema, type } = this.kind(req.type_name);
        const skeleton = unknownsToNull(planBlock(schema, {}, null)) as ObjectValue;
        if (req.type_name === DOWNLOAD_FILE) return { imported_resources: [], diagnostics: [error("Resource Import Not Implemented", "This resource does not support import.")] };
        const importer = req.type_name === FIREWALL_OPTIONS ? importFirewallOptions : importContainer;
        const out = await importer(this.ctx(undefined), String(req.id), skeleton);
        return {
          imported_resources: out.state ? [{ type_name: req.type_name, state: { msgpack: encodeMsgpack(type, out.state) }, private: Buffer.alloc(0) }] : [],
          diagnostics: this.diags(out.diagnostics),
        };
      },
      MoveResourceState: async () => ({ diagnostics: [error("moving resource state is not supported by the provider stand-in")] }),
      ReadDataSource: async (req) => ({ diagnostics: [error(`unknown data source type ${JSON.stringify(req.type_name)}`)] }),
      OpenEphemeralResource: async () => ({ diagnostics: [error("the provider stand-in has no ephemeral resources")] }),
      RenewEphemeralResource: async () => ({ diagnostics: [error("the provider stand-in has no ephemeral resources")] }),
      CloseEphemeralResource: async () => ({ diagnostics: [] }),
      GetFunctions: async () => ({ functions: {}, diagnostics: [] }),
      CallFunction: async (req) => ({ error: { text: `unknown function ${JSON.stringify(req.name)}` } }),
      StopProvider: async () => {
        this.opts.log("info", "stop requested: cancelling operations in flight");
        const stopping = this.stop;
        this.stop = new AbortController();
        stopping.abort(new Error("context canceled"));
        return { Error: "" };
      },
    };
    const impl: grpc.UntypedServiceImplementation = {};
    for (const [name, fn] of Object.entries(handlers)) {
      impl[name] = (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
        fn(call.request).then(
          (res) => cb(null, res),
          (err: Error) => {
            const message = this.scrub(err.message);
            this.opts.log("error", `${name} failed`, { error: message });
            // Most responses carry diagnostics: an error there reads better in terraform than a gRPC status.
            if (name === "CallFunction") cb({ code: grpc.status.INTERNAL, details: message });
            else cb(null, { diagnostics: [error(`provider stand-in: ${name} failed`, message)] });
          },
        );
      };
    }
    return impl;
  }

  private checkType(typeName: string): void {
    if (typeName !== CONTAINER) throw new Error(`unknown resource type ${JSON.stringify(typeName)}`);
  }

  private kind(typeName: string): ResourceKind {
    const kind = RESOURCES[typeName];
    if (!kind) throw new Error(`unknown resource type ${JSON.stringify(typeName)}`);
    return kind;
  }

  /** Create and update are optionsSet; delete only drops the resource from state (optionsDelete). */
  private async applyFirewallOptions(req: Msg): Promise<Msg> {
    const prior = asObject(decodeDynamic(FIREWALL_OPTIONS_TYPE, req.prior_state));
    const planned = asObject(decodeDynamic(FIREWALL_OPTIONS_TYPE, req.planned_state));
    const encode = (v: Value) => ({ msgpack: encodeMsgpack(FIREWALL_OPTIONS_TYPE, v) });
    if (!planned) return { new_state: encode(null), diagnostics: [], private: req.planned_private };
    const out = await setFirewallOptions(this.ctx(planned), planned);
    const failed = out.diagnostics.some((d) => d.severity === "ERROR");
    // A failed create leaves nothing (no id was set); a failed update keeps the prior state.
    const state = failed ? prior : out.state;
    return { new_state: encode(state), diagnostics: this.diags(out.diagnostics), private: req.planned_private };
  }

  /** Create (bounded by upload_timeout), in-place update, delete. A failed create leaves nothing. */
  private async applyDownloadFile(req: Msg): Promise<Msg> {
    const prior = asObject(decodeDynamic(DOWNLOAD_FILE_TYPE, req.prior_state));
    const planned = asObject(decodeDynamic(DOWNLOAD_FILE_TYPE, req.planned_state));
    const encode = (v: Value) => ({ msgpack: encodeMsgpack(DOWNLOAD_FILE_TYPE, v) });
    if (!planned) {
      if (!prior) return { new_state: encode(null), diagnostics: [] };
      const diags = await deleteDownloadFile(this.ctx(prior), prior);
      const failed = diags.some((d) => d.severity === "ERROR");
      return { new_state: encode(failed ? prior : null), diagnostics: this.diags(diags) };
    }
    const out = prior ? await updateDownloadFile(this.ctx(planned), planned) : await createDownloadFile(this.ctx(planned, "upload_timeout", 600), planned);
    const failed = out.diagnostics.some((d) => d.severity === "ERROR");
    const state = failed ? (prior ?? out.state) : out.state;
    return { new_state: encode(state ? unknownsToNull(state) : null), diagnostics: this.diags(out.diagnostics), private: req.planned_private };
  }

  /** Context for one operation: the stop signal, plus the resource's own timeout attribute if given. */
  private ctx(state: ObjectValue | undefined, timeoutAttr?: string, defaultSec?: number): OpContext {
    if (!this.client) throw new Error("the provider is not configured (ConfigureProvider was not called or failed)");
    const signals = [this.stop.signal];
    if (timeoutAttr && defaultSec) {
      const sec = typeof state?.[timeoutAttr] === "number" ? (state[timeoutAttr] as number) : defaultSec;
      signals.push(AbortSignal.timeout(sec * 1000));
    }
    return { client: this.client, signal: AbortSignal.any(signals), pollMs: this.opts.pollMs, log: this.opts.log };
  }

  private scrub(text: string): string {
    return redact(text, [...(this.settings?.secrets ?? []), this.opts.env.PROXMOX_VE_API_TOKEN, this.opts.env.PROXMOX_VE_PASSWORD]);
  }

  private diags(ds: Diagnostic[]): ProtoDiag[] {
    return ds.map((d) => ({ severity: d.severity, summary: this.scrub(d.summary), detail: this.scrub(d.detail) }));
  }
}

function sameSettings(a: ProviderSettings | undefined, b: ProviderSettings): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}
