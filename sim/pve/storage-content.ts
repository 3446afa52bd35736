// Storage content and downloads (pve-storage src/PVE/API2/Storage/Content.pm `index` and
// `delete`, src/PVE/API2/Storage/Status.pm `download_url`; pve-manager PVE/API2/Nodes.pm
// `query_url_metadata`; the download itself is pve-common PVE::Tools::download_file_from_url).
// The simulator has no network: the files come from Downloads (sim/pve/downloads.ts), and a
// checksum that differs from the fixture's fails the task with PVE's message.
import { checkNode, nodeDelay, type PveContext } from "./context.js";
import { die, paramError, permError } from "./errors.js";
import { DIGEST_ALGORITHMS, urlFileName, type DigestAlgorithm, type Downloads } from "./downloads.js";
import { BOOL_OPT, NODE, STORAGE_ID, bool, verify, type RawParams } from "./params.js";
import type { Caller } from "./privileges.js";
import { splitVolid, type Storage } from "./state.js";

/** Where a dir storage keeps each content type (PVE::Storage::Plugin get_subdir). */
const SUBDIR: Record<string, string> = { vztmpl: "template/cache", iso: "template/iso", import: "import" };
/** PVE::Storage's VZTMPL_EXT_RE_1 / ISO_EXT_RE_0 / IMPORT_EXT_RE_1 (simplified to the suffixes). */
const EXT: Record<string, RegExp> = {
  vztmpl: /\.tar\.(gz|xz|zst|bz2)$/,
  iso: /\.(iso|img)$/i,
  import: /\.(ova|ovf|qcow2|raw|vmdk|img)$/i,
};

export class StorageContentApi {
  constructor(
    private readonly ctx: PveContext,
    private readonly downloads: Downloads,
  ) {}

  /** ['or', Sys.Audit+Sys.Modify on /, Sys.AccessNetwork on /nodes/{node}]: probing the host's network. */
  private checkNetworkAccess(caller: Caller, node: string): void {
    const { acl } = this.ctx;
    if (acl.has(caller, "/", ["Sys.Audit", "Sys.Modify"]) || acl.has(caller, `/nodes/${node}`, ["Sys.AccessNetwork"])) return;
    throw permError(`/nodes/${node}, Sys.AccessNetwork`);
  }

  /** GET /nodes/{node}/query-url-metadata: what a HEAD of the URL says (file name, size, type). */
  queryUrlMetadata(caller: Caller, raw: RawParams): Record<string, unknown> {
    this.checkNetworkAccess(caller, raw.node);
    checkNode(this.ctx, raw.node);
    const p = verify(raw, { node: NODE, url: { type: "string", pattern: /^https?:\/\/.+/ }, "verify-certificates": BOOL_OPT });
    const f = this.downloads.get(p.url);
    if (!f) throw die("invalid server response: '404 Not Found'");
    return { filename: urlFileName(p.url), size: this.downloads.size(f), mimetype: f.mimetype ?? "application/octet-stream" };
  }

  /** GET /nodes/{node}/storage/{storage}/content: the volumes the caller may see. */
  list(caller: Caller, raw: RawParams): unknown[] {
    this.ctx.acl.checkAny(caller, `/storage/${raw.storage}`, ["Datastore.Audit", "Datastore.AllocateSpace"]);
    const node = checkNode(this.ctx, raw.node);
    const p = verify(raw, { node: NODE, storage: STORAGE_ID, content: { type: "string", optional: true }, vmid: { type: "integer", optional: true } });
    const s = this.ctx.state.storage(node.name, p.storage);
    return [...s.volumes.values()]
      .map((v) => ({ v, content: contentOf(s, v.volname) }))
      .filter(({ content }) => !p.content || content === p.content)
      .filter(({ v }) => !p.vmid || v.owner === Number(p.vmid))
      // Guest volumes only for those who may see the guest (check_volume_access).
      .filter(({ v }) => v.owner === 0 || this.ctx.acl.has(caller, `/vms/${v.owner}`, ["VM.Audit"]))
      .sort((a, b) => a.v.volname.localeCompare(b.v.volname))
      .map(({ v, content }) => ({
        volid: `${s.id}:${v.volname}`,
        content,
        format: content === "vztmpl" ? v.volname.split(".").slice(-2).join(".") : s.type === "dir" ? "raw" : "raw",
        size: v.size,
        ctime: v.ctime ?? 0,
        ...(v.owner ? { vmid: v.owner } : {}),
      }));
  }

  /** DELETE /nodes/{node}/storage/{storage}/content/{volume}: a task (imgdel). */
  delete(caller: Caller, raw: RawParams): string {
    const node = checkNode(this.ctx, raw.node);
    const p = verify(raw, { node: NODE, storage: { ...STORAGE_ID, optional: true }, volume: { type: "string" }, delay: { type: "integer", optional: true } });
    const [sid, volname] = p.volume.includes(":") ? splitVolid(p.volume) : [p.storage ?? "", p.volume];
    if (!sid) throw die(`unable to parse volume ID '${p.volume}'`);
    const s = this.ctx.state.storage(node.name, sid);
    const v = s.volumes.get(volname);
    // Templates, ISOs and imports need Datastore.Allocate; guest volumes go through the guest.
    if (!v || v.owner === 0) this.ctx.acl.check(caller, `/storage/${sid}`, ["Datastore.Allocate"]);
    else this.ctx.acl.check(caller, `/vms/${v.owner}`, ["VM.Config.Disk"]);
    if (!v) throw die(`volume '${sid}:${volname}' does not exist`);
    if (v.owner !== 0) throw die(`unable to delete '${sid}:${volname}' - volume is used by CT ${v.owner}`);
    return this.ctx.tasks.spawn(node, "imgdel", `${sid}:${volname}`, caller.userid, async (log) => {
      await nodeDelay(this.ctx, node, this.ctx.latency.config);
      s.volumes.delete(volname);
      log.print(`Removed volume '${sid}:${volname}'`);
    });
  }

  /** POST /nodes/{node}/storage/{storage}/download-url: a `download` task. */
  downloadUrl(caller: Caller, raw: RawParams): string {
    const { ctx } = this;
    ctx.acl.check(caller, `/storage/${raw.storage}`, ["Datastore.AllocateTemplate"]);
    this.checkNetworkAccess(caller, raw.node);
    const node = checkNode(ctx, raw.node);
    const p = verify(raw, {
      node: NODE,
      storage: STORAGE_ID,
      url: { type: "string", pattern: /^https?:\/\/.+/ },
      content: { type: "string", enum: ["iso", "vztmpl", "import"] },
      filename: { type: "string", maxLength: 255 },
      checksum: { type: "string", optional: true },
      "checksum-algorithm": { type: "string", optional: true, enum: DIGEST_ALGORITHMS },
      compression: { type: "string", optional: true, enum: ["zst", "gz", "lzo", "bz2"] },
      "verify-certificates": BOOL_OPT,
    });
    if (p.checksum !== undefined && p["checksum-algorithm"] === undefined) throw paramError({ checksum: "parameter 'checksum-algorithm' is required" });
    if (p["checksum-algorithm"] !== undefined && p.checksum === undefined) throw paramError({ "checksum-algorithm": "parameter 'checksum' is required" });
    const s = ctx.state.storage(node.name, p.storage);
    if (!s.content.includes(p.content)) throw die(`storage '${p.storage}' is not configured for content-type '${p.content}'`);
    if (p.filename.includes("/") || !EXT[p.content].test(p.filename)) throw die("invalid filename or wrong extension");
    const volname = `${p.content}/${p.filename}`;
    const path = `/var/lib/vz/${SUBDIR[p.content]}/${p.filename}`;
    if (s.volumes.has(volname)) throw die(`refusing to override existing file '${path}'`);
    void bool(p["verify-certificates"], true);

    return ctx.tasks.spawn(node, "download", p.filename, caller.userid, async (log) => {
      log.print(`downloading ${p.url} to ${path}`);
      await nodeDelay(ctx, node, ctx.latency.download);
      const f = this.downloads.get(p.url);
      if (!f) throw die(`download failed: 404 Not Found`);
      log.print(`download of '${p.url}' to '${path}' finished`);
      const algorithm = p["checksum-algorithm"] as DigestAlgorithm | undefined;
      if (algorithm && p.checksum !== undefined) {
        log.print("calculating checksum...");
        const got = this.downloads.digest(f, algorithm);
        if (got === undefined) throw die(`pve-sim: the fixture for '${p.url}' has no ${algorithm} digest to compare with`);
        const expected = p.checksum.toLowerCase();
        if (got !== expected) throw die(`checksum mismatch: got '${got}' != expect '${expected}'`);
        log.print("OK, checksum verified");
      }
      if (s.volumes.has(volname)) throw die(`refusing to override existing file '${path}'`);
      s.volumes.set(volname, { volname, owner: 0, size: this.downloads.size(f), ctime: Math.floor(Date.now() / 1000) });
    });
  }
}

/** A volume's content type from its name and storage. */
function contentOf(s: Storage, volname: string): string {
  const dir = volname.split("/")[0];
  if (dir === "vztmpl" || dir === "iso" || dir === "import") return dir;
  return s.content.includes("rootdir") ? "rootdir" : "images";
}
