// The "internet" the simulated nodes download from: no network here, so download-url and the
// provision script's runner download are served from fixtures. A fixture is either real bytes (the
// digests are computed, so checksum verification is real) or an upstream file the simulator cannot
// hold (a 140 MB CT image), described by the digests its publisher lists. Either way a pinned
// checksum that differs from the fixture fails the download exactly as PVE (or sha256sum) would.
import { createHash } from "node:crypto";

export type DigestAlgorithm = "md5" | "sha1" | "sha224" | "sha256" | "sha384" | "sha512";
export const DIGEST_ALGORITHMS: readonly DigestAlgorithm[] = ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"];

export interface DownloadFixture {
  url: string;
  /** The file's bytes: every digest is computed from them. */
  content?: Buffer;
  /** Without content: the digests the publisher lists (the only ones the simulator can check). */
  digests?: Partial<Record<DigestAlgorithm, string>>;
  /** Without content: the size the server reports (Content-Length). */
  size?: number;
  /** What the server says in Content-Type (query-url-metadata's mimetype). */
  mimetype?: string;
}

/**
 * The upstream files the template build fetches, with their published digests:
 * - Proxmox's Ubuntu 24.04 standard CT image: sha512 from Proxmox's appliance index
 *   (proxmox/pve-manager aplinfo/aplinfo.dat, ubuntu-24.04-standard 24.04-2) — the list `pveam
 *   available` shows. The index gives no size; the one here is nominal.
 * - The GitHub Actions runner v2.336.0 tarballs: sha256 from the release notes of
 *   https://github.com/actions/runner/releases/tag/v2.336.0 (sizes nominal).
 * stacks/template-stack.ts and template/provision.sh pin the same values; test/sim/template-build.test.ts
 * fails when a pin and this list disagree.
 */
export const UPSTREAM_FILES: readonly DownloadFixture[] = [
  {
    url: "http://download.proxmox.com/images/system/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
    digests: { sha512: "45c2978e6b97fe292ada95fe06834276015e5739a594db4de2fdfd830fa0c37942e8ae118fc1e32ffd9154b3f9378b592738b668ea3957db41f2907b86f219de" },
    size: 141_819_206,
    mimetype: "application/zstd",
  },
  {
    url: "https://github.com/actions/runner/releases/download/v2.336.0/actions-runner-linux-x64-2.336.0.tar.gz",
    digests: { sha256: "04cf0be1aff4c3ec3554466c39124ca250e3effd8873bb7e8d68535aa9505d5d" },
    size: 221_000_000,
    mimetype: "application/octet-stream",
  },
  {
    url: "https://github.com/actions/runner/releases/download/v2.336.0/actions-runner-linux-arm64-2.336.0.tar.gz",
    digests: { sha256: "58b758e420b87093fbd4bfddd368074960053e2f1388f01848c82624b90f27d1" },
    size: 216_000_000,
    mimetype: "application/octet-stream",
  },
];

export class Downloads {
  private readonly files = new Map<string, DownloadFixture>();

  constructor(fixtures: readonly DownloadFixture[] = []) {
    for (const f of [...UPSTREAM_FILES, ...fixtures]) this.files.set(f.url, f);
  }

  get(url: string): DownloadFixture | undefined {
    return this.files.get(url);
  }

  size(f: DownloadFixture): number {
    return f.content?.length ?? f.size ?? 0;
  }

  /** The file's digest, or undefined when the fixture cannot tell (no bytes, digest not published). */
  digest(f: DownloadFixture, algorithm: DigestAlgorithm): string | undefined {
    if (f.content) return createHash(algorithm).update(f.content).digest("hex");
    return f.digests?.[algorithm]?.toLowerCase();
  }
}

/** The file name a URL ends in (query-url-metadata without a Content-Disposition). */
export function urlFileName(url: string): string {
  try {
    return decodeURIComponent(new URL(url).pathname.split("/").pop() ?? "");
  } catch {
    return "";
  }
}
