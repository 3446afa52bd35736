// `proxmox_virtual_environment_download_file` against the PVE API, the way bpg 0.111.1 does it
// (fwprovider/nodes/resource_download_file.go; proxmox/nodes/storage/download_url.go, content.go;
// proxmox/nodes/query_url_metadata.go): create asks query-url-metadata for the file name, POSTs
// download-url and waits for its task (deleting and retrying once with overwrite_unmanaged when the
// file exists), then finds the volume in the storage's content listing for its size; read keeps
// the state only while the volume is listed; delete DELETEs the volume (gone counts as deleted).
import type { Diagnostic, Outcome } from "./container.js";
import { isNotFound, wrap, type Params } from "./pve-client.js";
import { waitForTask, type OpContext } from "./pve-ops.js";
import type { ObjectValue } from "./values.js";

const str = (o: ObjectValue, k: string): string => (typeof o[k] === "string" ? (o[k] as string) : "");
const err = (summary: string, detail: string): Diagnostic => ({ severity: "ERROR", summary, detail });
/** Go's url.PathEscape for a volume id ("local:vztmpl/x" → "local:vztmpl%2Fx"). */
const pathEscape = (s: string) => s.replace(/[^A-Za-z0-9\-_.~$&+:=@]/g, (c) => [...Buffer.from(c, "utf8")].map((b) => "%" + b.toString(16).toUpperCase().padStart(2, "0")).join(""));
const storagePath = (node: string, storage: string, sub: string) => `nodes/${encodeURIComponent(node)}/storage/${encodeURIComponent(storage)}/${sub}`;
const alreadyExists = (e: unknown) => e instanceof Error && e.message.includes("refusing to override existing file");

/** The create, bounded by upload_timeout (bpg: context.WithTimeout(upload_timeout)). */
export async function createDownloadFile(ctx: OpContext, planned: ObjectValue): Promise<Outcome> {
  const node = str(planned, "node_name");
  const storage = str(planned, "datastore_id");
  const plan: ObjectValue = { ...planned };
  const verify = planned.verify !== false;
  let fileName = typeof planned.file_name === "string" ? planned.file_name : undefined;
  let meta: { filename?: string } | null;
  try {
    meta = await ctx.client.request("GET", `nodes/${encodeURIComponent(node)}/query-url-metadata`, { url: str(planned, "url"), "verify-certificates": verify }, ctx.signal);
  } catch (e) {
    const inner = wrap("error fetching metadata from download url, unexpected error in GetQueryURLMetadata", wrap("error retrieving URL metadata", e));
    return { state: null, diagnostics: [err("Error initiating file download", `Could not get file metadata, unexpected error: ${inner.message}`)] };
  }
  fileName ??= meta?.filename ?? "";
  plan.file_name = fileName;
  const body: Params = {
    node,
    storage,
    content: str(planned, "content_type"),
    checksum: typeof planned.checksum === "string" ? planned.checksum : undefined,
    "checksum-algorithm": typeof planned.checksum_algorithm === "string" ? planned.checksum_algorithm : undefined,
    compression: typeof planned.decompression_algorithm === "string" ? planned.decompression_algorithm : undefined,
    filename: fileName,
    url: str(planned, "url"),
    "verify-certificates": verify,
  };
  const diagnostics: Diagnostic[] = [];
  const download = async () => {
    let upid: string | null;
    try {
      upid = await ctx.client.request<string | null>("POST", storagePath(node, storage, "download-url"), body, ctx.signal);
    } catch (e) {
      throw wrap("error download file by URL", e);
    }
    if (!upid) throw new Error("the server did not include a data object in the response");
    try {
      await waitForTask(ctx, upid);
    } catch (taskErr) {
      const e = wrap(`error download file to datastore ${storage}: failed waiting for url download`, taskErr);
      // tasks.DeleteTask (DELETE /nodes/{node}/tasks/{upid}), whatever the outcome of the wait.
      try {
        await ctx.client.request("DELETE", `nodes/${encodeURIComponent(upid.split(":")[1] ?? node)}/tasks/${pathEscape(upid)}`);
      } catch (deleteErr) {
        throw new Error(`${e.message} \n ${(deleteErr as Error).message}`, { cause: taskErr });
      }
      throw e;
    }
  };
  try {
    try {
      await download();
    } catch (e) {
      if (!(alreadyExists(e) && planned.overwrite_unmanaged === true)) throw e;
      const fileId = `${str(planned, "content_type")}/${fileName}`;
      try {
        await deleteVolume(ctx, node, storage, fileId);
      } catch (delErr) {
        if (!isNotFound(delErr)) diagnostics.push(err("Error deleting file from datastore", `Could not delete file '${fileId}', unexpected error: ${(delErr as Error).message}`));
      }
      await download();
    }
  } catch (e) {
    if (alreadyExists(e)) {
      return {
        state: null,
        diagnostics: [...diagnostics, err("File already exists in the datastore, it was created outside of Terraform or is managed by another resource.", `File already exists in the datastore: '${fileName}', error: ${(e as Error).message}`)],
      };
    }
    return { state: null, diagnostics: [...diagnostics, err("Error downloading file from url", `Could not download file '${fileName}', unexpected error: ${(e as Error).message}`)] };
  }
  plan.id = `${storage}:${str(planned, "content_type")}/${fileName}`;
  const size = await listedSize(ctx, plan).catch((e: Error) => e);
  if (size instanceof Error) {
    plan.size = null;
    return { state: plan, diagnostics: [...diagnostics, err("Error when reading file from datastore", size.message)] };
  }
  plan.size = size;
  return { state: plan, diagnostics };
}

/** read: the size the storage lists for the volume; the resource is gone when it is not listed. */
export async function readDownloadFile(ctx: OpContext, state: ObjectValue): Promise<Outcome> {
  const size = await listedSize(ctx, state).catch((e: Error) => e);
  if (size instanceof Error) {
    if (size.message.includes("failed to authenticate")) return { state, diagnostics: [err("Failed to authenticate", size.message)] };
    return { state: null, diagnostics: [{ severity: "WARNING", summary: "The file does not exist in datastore and resource must be recreated.", detail: size.message }] };
  }
  return { state: { ...state, size }, diagnostics: [] };
}

/** Update: nothing to send; the state becomes the plan with the listed size. */
export async function updateDownloadFile(ctx: OpContext, planned: ObjectValue): Promise<Outcome> {
  const size = await listedSize(ctx, planned).catch((e: Error) => e);
  if (size instanceof Error) return { state: null, diagnostics: [err("Error when reading file from datastore", size.message)] };
  return { state: { ...planned, size }, diagnostics: [] };
}

export async function deleteDownloadFile(ctx: OpContext, state: ObjectValue): Promise<Diagnostic[]> {
  const id = str(state, "id");
  try {
    await deleteVolume(ctx, str(state, "node_name"), str(state, "datastore_id"), id);
  } catch (e) {
    if (isNotFound(e)) return [];
    if ((e as Error).message.includes("unable to parse")) {
      return [{ severity: "WARNING", summary: "Datastore file does not exists", detail: `Could not delete datastore file '${id}', it does not exist or has been deleted outside of Terraform.` }];
    }
    return [err("Error deleting datastore file", `Could not delete datastore file '${id}', unexpected error: ${(e as Error).message}`)];
  }
  return [];
}

async function deleteVolume(ctx: OpContext, node: string, storage: string, volumeId: string): Promise<void> {
  try {
    await ctx.client.request("DELETE", storagePath(node, storage, `content/${pathEscape(volumeId)}`), undefined, ctx.signal);
  } catch (e) {
    throw wrap(`error deleting file ${volumeId} from datastore ${storage}`, e);
  }
}

async function listedSize(ctx: OpContext, model: ObjectValue): Promise<number> {
  const node = str(model, "node_name");
  const storage = str(model, "datastore_id");
  let files: Array<{ volid?: string; size?: number }> | null;
  try {
    files = await ctx.client.request("GET", storagePath(node, storage, "content"), undefined, ctx.signal);
  } catch (e) {
    throw wrap(`unexpected error when listing datastore files`, wrap(`error listing files from datastore ${storage}`, e));
  }
  const f = (files ?? []).find((x) => x.volid === str(model, "id"));
  if (!f) throw new Error("file does not exists in datastore");
  return Number(f.size ?? 0);
}
