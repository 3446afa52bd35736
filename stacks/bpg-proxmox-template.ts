// Typed CDK Terrain bindings for the bpg/proxmox pieces only the template stack uses: the CT image
// download and a container created from an image (rather than cloned). Same style as bpg-proxmox.ts:
// hand-written from bpg's docs (docs/resources/virtual_environment_download_file.md,
// docs/resources/virtual_environment_container.md, v0.111.1), terraform's snake_case names.
import { Construct } from "constructs";
import * as cdktn from "cdktn";
import { BpgResource, Container, type ContainerConfig } from "./bpg-proxmox.js";

const str = cdktn.stringToTerraform;
const num = cdktn.numberToTerraform;
const bool = cdktn.booleanToTerraform;

export type ChecksumAlgorithm = "md5" | "sha1" | "sha224" | "sha256" | "sha384" | "sha512";

export interface DownloadFileConfig extends cdktn.TerraformMetaArguments {
  /** `vztmpl` for CT images, `iso` / `import` for VM images. */
  readonly contentType: "vztmpl" | "iso" | "import";
  readonly datastoreId: string;
  readonly nodeName: string;
  /** http(s) only. */
  readonly url: string;
  readonly checksum?: string;
  readonly checksumAlgorithm?: ChecksumAlgorithm;
  readonly decompressionAlgorithm?: "gz" | "lzo" | "zst" | "bz2";
  /** Derived from the URL when absent. */
  readonly fileName?: string;
  /** bpg default true: replace when the size upstream or in the datastore changed. */
  readonly overwrite?: boolean;
  /** Replace a same-named file that terraform does not manage (else: an error). */
  readonly overwriteUnmanaged?: boolean;
  /** Seconds, bpg default 600. */
  readonly uploadTimeout?: number;
  /** Verify TLS (bpg default true). */
  readonly verify?: boolean;
}

/** `proxmox_virtual_environment_download_file`: PVE's download-url, run by the node itself. */
export class DownloadFile extends BpgResource {
  public static readonly tfResourceType = "proxmox_virtual_environment_download_file";

  /** `ref("id")` is the volume id, e.g. `local:vztmpl/<file>`. */
  constructor(scope: Construct, id: string, private readonly cfg: DownloadFileConfig) {
    super(scope, id, DownloadFile.tfResourceType, cfg);
  }

  protected override synthesizeAttributes(): Record<string, unknown> {
    const c = this.cfg;
    return {
      content_type: str(c.contentType),
      datastore_id: str(c.datastoreId),
      node_name: str(c.nodeName),
      url: str(c.url),
      checksum: str(c.checksum),
      checksum_algorithm: str(c.checksumAlgorithm),
      decompression_algorithm: str(c.decompressionAlgorithm),
      file_name: str(c.fileName),
      overwrite: bool(c.overwrite),
      overwrite_unmanaged: bool(c.overwriteUnmanaged),
      upload_timeout: num(c.uploadTimeout),
      verify: bool(c.verify),
    };
  }
}

export interface ContainerOperatingSystem {
  /** `<datastore>:vztmpl/<file>`, e.g. a DownloadFile's `id`. */
  readonly templateFileId: string;
  readonly type?: "alpine" | "archlinux" | "centos" | "debian" | "devuan" | "fedora" | "gentoo" | "nixos" | "opensuse" | "ubuntu" | "unmanaged";
}
export interface ContainerDisk {
  /** Storage of the root volume (bpg default `local`). */
  readonly datastoreId?: string;
  /** GiB (bpg default 4). */
  readonly size?: number;
}
export interface ImageContainerConfig extends ContainerConfig {
  readonly operatingSystem: ContainerOperatingSystem;
  readonly disk?: ContainerDisk;
  /** Create as a template right away. pve-runners never does: see stacks/template-stack.ts (only `pct template` makes the base volume linked clones need). */
  readonly template?: boolean;
  readonly timeoutUpdate?: number;
}

/**
 * `proxmox_virtual_environment_container` created from a CT image instead of cloned: the runner
 * bindings plus `operating_system`, `disk` and `template`.
 */
export class ImageContainer extends Container {
  private readonly image: ImageContainerConfig;

  constructor(scope: Construct, id: string, cfg: ImageContainerConfig) {
    super(scope, id, cfg);
    this.image = cfg;
  }

  protected override synthesizeAttributes(): Record<string, unknown> {
    const c = this.image;
    return {
      ...super.synthesizeAttributes(),
      operating_system: {
        template_file_id: str(c.operatingSystem.templateFileId),
        type: str(c.operatingSystem.type),
      },
      disk: c.disk && { datastore_id: str(c.disk.datastoreId), size: num(c.disk.size) },
      template: bool(c.template),
      timeout_update: num(c.timeoutUpdate),
    };
  }
}
